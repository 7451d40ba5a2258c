//! The wire reader against mysql_async, on a real MariaDB server: both read
//! the same snapshot of a table of awkward values (every byte value, NULL
//! next to empty and `\N` text, a 20 MiB value that spans two protocol
//! packets) and must produce byte-identical `LOAD DATA` input. The two
//! decoders share nothing but the escaping, so a framing or length bug in
//! either shows up as a difference.

use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::{Reader, Session};
use dbferry_plugin_abi::protocol::{ErrorKind, KeyRange, PluginError, ReadRequest, SessionConfig};
use dbferry_testkit::MariaDb;

fn config(server: &MariaDb, prefer_socket: bool) -> SessionConfig {
    let mut options = serde_json::Map::new();
    if prefer_socket {
        // A socket rules the wire client out, so this session reads with mysql_async.
        options.insert("prefer_socket".into(), true.into());
        options.insert("socket".into(), server.socket().to_string_lossy().into_owned().into());
    }
    SessionConfig {
        options,
        ..server.session_config("wire", 4)
    }
}

/// Reads table `t` of `wire_src` whole; returns whether the wire reader
/// served it, the rows and the encoded bytes.
fn read_all(server: &MariaDb, prefer_socket: bool) -> Result<(bool, u64, Vec<u8>), PluginError> {
    let session = MysqlSession::connect(&config(server, prefer_socket))?;
    let schema = session.describe_database("wire_src")?;
    let table = schema
        .tables
        .into_iter()
        .find(|t| t.name == "t")
        .ok_or_else(|| PluginError::new(ErrorKind::NotFound, "table t was not described"))?;
    session.begin_snapshot(2)?;
    let wire = session.reads_over_wire();
    let mut reader = session.open_reader(ReadRequest {
        database: "wire_src".into(),
        range: KeyRange::whole(vec!["id".into()]),
        table,
        batch_bytes: 1 << 20,
        formats: Vec::new(),
    })?;
    let (mut rows, mut bytes) = (0, Vec::new());
    while let Some((batch, n)) = reader.next_batch()? {
        rows += n;
        bytes.extend_from_slice(&batch);
    }
    drop(reader);
    session.end_snapshot()?;
    Ok((wire, rows, bytes))
}

#[test]
fn the_wire_reader_encodes_exactly_what_mysql_async_does() -> Result<(), PluginError> {
    let server = MariaDb::start();
    server.exec(
        "CREATE DATABASE wire_src; USE wire_src; \
         CREATE TABLE t (id INT PRIMARY KEY, b LONGBLOB, s VARCHAR(50), d DATETIME(6), n DECIMAL(30,10), f DOUBLE) DEFAULT CHARSET=utf8mb4; \
         INSERT INTO t VALUES \
           (1, (SELECT GROUP_CONCAT(CHAR(seq) SEPARATOR '') FROM seq_0_to_255), '\\\\N', '2024-02-29 23:59:59.999999', -12345678901234567890.0123456789, -0.5), \
           (2, NULL, '', NULL, NULL, NULL), \
           (3, '', 'NULL', '0000-00-00 00:00:00', 0, 1e308), \
           (4, 'tab\\there\\nnewline\\\\back', 'ü😀', '1000-01-01 00:00:00', 1, 2.5e-300), \
           (5, REPEAT('x', 20 << 20), 'big', NULL, NULL, NULL); \
         INSERT INTO t SELECT seq + 10, MD5(seq), seq, NULL, seq, seq / 7 FROM seq_1_to_5000;",
    );
    let (wire, wire_rows, wire_bytes) = read_all(&server, false)?;
    let (driver_wire, driver_rows, driver_bytes) = read_all(&server, true)?;
    assert!(
        wire,
        "a TCP login with mysql_native_password must read over the wire client"
    );
    assert!(!driver_wire, "a socket session must read with mysql_async");
    assert_eq!(wire_rows, 5005);
    assert_eq!(wire_rows, driver_rows);
    assert!(wire_bytes.len() > 20 << 20, "the 20 MiB value is missing");
    assert!(wire_bytes == driver_bytes, "the wire and mysql_async encodings differ");
    Ok(())
}
