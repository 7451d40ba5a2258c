//! Table digests asked for several tables at once, against a real MariaDB
//! server: one answer per table in the order asked, each the same as the
//! table's own digest, inside a snapshot (over the wire client and over
//! mysql_async) and outside it; a missing table fails the request by name.

use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::Session;
use dbferry_plugin_abi::protocol::{Digest, DigestsRequest, PluginError, SessionConfig, TableSchema, VerifyMode};
use dbferry_testkit::MariaDb;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn session(server: &MariaDb, prefer_socket: bool) -> Result<MysqlSession, PluginError> {
    let mut options = serde_json::Map::new();
    if prefer_socket {
        // A socket rules the wire client out: the snapshot reads with mysql_async.
        options.insert("prefer_socket".into(), true.into());
        options.insert("socket".into(), server.socket().to_string_lossy().into_owned().into());
    }
    Ok(MysqlSession::connect(&SessionConfig {
        options,
        ..server.session_config("digests", 3)
    })?)
}

fn digests(
    session: &MysqlSession,
    tables: &[TableSchema],
    mode: VerifyMode,
    in_snapshot: bool,
) -> Result<Vec<Digest>, PluginError> {
    session.table_digests(DigestsRequest {
        database: "dg".into(),
        tables: tables.to_vec(),
        mode,
        in_snapshot,
    })
}

#[test]
fn several_tables_digested_at_once_match_their_own_digests_in_the_order_asked() -> TestResult {
    let server = MariaDb::start();
    server.exec(
        "CREATE DATABASE dg; USE dg;
         CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10));
         CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(10));
         CREATE TABLE c (id INT PRIMARY KEY, v VARCHAR(10), f FLOAT);
         CREATE TABLE d (id INT PRIMARY KEY, v VARCHAR(10));
         INSERT INTO a VALUES (1, 'x'), (2, NULL), (3, '');
         INSERT INTO c VALUES (1, 'x', 0.5), (2, 'y', NULL), (3, NULL, -1), (4, 'z', 2), (5, '', 3);
         INSERT INTO d SELECT * FROM a;",
    );
    for prefer_socket in [false, true] {
        let session = session(&server, prefer_socket)?;
        let mut tables = session.describe_database("dg")?.tables;
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);

        let counted = digests(&session, &tables, VerifyMode::Count, false)?;
        let rows: Vec<u64> = counted.iter().map(|d| d.rows).collect();
        assert_eq!(rows, [3, 0, 5, 3]);
        assert!(counted.iter().all(|d| d.checksum.is_none()));

        let summed = digests(&session, &tables, VerifyMode::Checksum, false)?;
        for (table, digest) in tables.iter().zip(&summed) {
            let own = digests(&session, std::slice::from_ref(table), VerifyMode::Checksum, false)?;
            assert_eq!(own, std::slice::from_ref(digest), "{}", table.name);
        }
        assert_eq!(summed[0].checksum, summed[3].checksum, "a and d hold the same rows");
        assert_ne!(summed[0].checksum, summed[2].checksum);

        session.begin_snapshot(2)?;
        assert_eq!(session.reads_over_wire(), !prefer_socket);
        assert_eq!(digests(&session, &tables, VerifyMode::Checksum, true)?, summed);
        tables.reverse();
        let reversed = digests(&session, &tables, VerifyMode::Count, true)?;
        assert_eq!(reversed.iter().map(|d| d.rows).collect::<Vec<_>>(), [3, 5, 0, 3]);
        session.end_snapshot()?;

        let mut missing = tables[1].clone();
        missing.name = "gone".into();
        tables.insert(2, missing);
        let error = digests(&session, &tables, VerifyMode::Count, false)
            .err()
            .ok_or("a missing table must fail the request")?;
        assert!(error.message.contains("gone"), "{}", error.message);
    }
    Ok(())
}
