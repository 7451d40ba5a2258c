//! Small tables copied as a group, against real MariaDB and MySQL servers
//! (started by `dbferry-testkit`): one query reads them all, over mysql_async and over
//! the wire client of a global snapshot; a read that reaches its byte cap
//! stops at a table boundary and leaves the connection usable; one query of
//! loads writes them all, and each table gets its own outcome: loaded, a
//! warning that sends it back to be written alone, an error, or not run.

use bytes::Bytes;
use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::Session;
use dbferry_plugin_abi::protocol::{
    ExistingTables, GroupRead, KeyRange, PrepareRequest, ReadGroupRequest, ReadRequest, TableSchema, WriteGroupRequest,
    WriteRequest,
};
use dbferry_testkit::Flavour;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Rows per table of the source, in table-name order.
const ROWS: [(&str, u64); 6] = [("a", 3), ("b", 2), ("c", 2), ("d", 0), ("e", 1), ("f", 1)];

/// `{prefix}_src` with the tables of [`ROWS`], their empty copies created
/// in `{prefix}_dst`, and their schemas in name order.
fn setup(flavour: Flavour, prefix: &str) -> Result<(MysqlSession, Vec<TableSchema>), Box<dyn std::error::Error>> {
    let server = flavour.shared();
    let src = format!("{prefix}_src");
    let mut sql = format!("CREATE DATABASE {src}; CREATE DATABASE {prefix}_dst;");
    for (table, rows) in ROWS {
        sql.push_str(&format!(
            "CREATE TABLE {src}.{table} (id INT PRIMARY KEY, v VARCHAR(10) NOT NULL, b BLOB);"
        ));
        for id in 1..=rows {
            sql.push_str(&format!(
                "INSERT INTO {src}.{table} VALUES ({id}, 'long{id}', x'00095c0a{id:02x}');"
            ));
        }
    }
    server.exec(&sql);
    let session = MysqlSession::connect(&server.session_config("group-copy", 4))?;
    let schema = session.describe_database(&src)?;
    session.prepare_target(PrepareRequest {
        database: format!("{prefix}_dst"),
        schema: schema.clone(),
        existing_tables: ExistingTables::Fail,
        resume: false,
        inline_index_max_bytes: u64::MAX,
        parallelism: 1,
    })?;
    let mut tables = schema.tables;
    tables.sort_by(|x, y| x.name.cmp(&y.name));
    Ok((session, tables))
}

fn read_request(prefix: &str, tables: &[TableSchema], max_bytes: u64) -> ReadGroupRequest {
    ReadGroupRequest {
        chunks: tables
            .iter()
            .map(|table| ReadRequest {
                database: format!("{prefix}_src"),
                range: KeyRange::whole(table.key.clone().unwrap_or_default()),
                table: table.clone(),
                batch_bytes: 1 << 20,
                formats: Vec::new(),
            })
            .collect(),
        max_bytes,
    }
}

/// Reads the whole group, then again with a cap that only the first table
/// fits under, then the whole group once more on the same connections.
fn reads_whole_and_capped(
    session: &MysqlSession,
    prefix: &str,
    tables: &[TableSchema],
) -> Result<(Bytes, GroupRead), Box<dyn std::error::Error>> {
    let (data, read) = session.read_group(read_request(prefix, tables, 1 << 20))?;
    let rows: Vec<u64> = read.parts.iter().map(|p| p.rows).collect();
    assert_eq!(rows, ROWS.map(|(_, rows)| rows).to_vec());
    assert_eq!(read.parts.iter().map(|p| p.bytes).sum::<u64>(), data.len() as u64);
    assert_eq!(read.parts[3].bytes, 0, "an empty table has an empty payload");

    let first = read.parts[0].bytes;
    let (capped, capped_read) = session.read_group(read_request(prefix, tables, first + 1))?;
    assert_eq!(
        capped_read.parts,
        read.parts[..1].to_vec(),
        "the cap ends the group after a"
    );
    assert_eq!(capped, data.slice(..first as usize));

    let (again, again_read) = session.read_group(read_request(prefix, tables, 1 << 20))?;
    assert_eq!((again, again_read.parts), (data.clone(), read.parts.clone()));
    Ok((data, read))
}

dbferry_testkit::on_both_flavours! {
fn a_group_reads_in_one_query_with_and_without_a_global_snapshot(flavour: Flavour) -> TestResult {
    let (session, tables) = setup(flavour, "grp_read")?;
    assert!(!session.reads_over_wire());
    let (driver, _) = reads_whole_and_capped(&session, "grp_read", &tables)?;
    session.begin_snapshot(1)?;
    assert!(
        session.reads_over_wire(),
        "the snapshot's reader speaks the wire protocol"
    );
    let (wire, _) = reads_whole_and_capped(&session, "grp_read", &tables)?;
    session.end_snapshot()?;
    assert_eq!(wire, driver, "both clients encode the same bytes");
    Ok(())
}

fn each_table_of_a_group_write_gets_its_own_outcome(flavour: Flavour) -> TestResult {
    let (session, tables) = setup(flavour, "grp_write")?;
    let (data, read) = session.read_group(read_request("grp_write", &tables, 1 << 20))?;
    // b now truncates its values (a warning under LOCAL); e is gone, so its
    // load fails and ends the query before f.
    let server = flavour.shared();
    server.exec("ALTER TABLE grp_write_dst.b MODIFY v VARCHAR(1) NOT NULL; DROP TABLE grp_write_dst.e;");
    let written = session.write_group(
        WriteGroupRequest {
            chunks: tables
                .iter()
                .map(|table| WriteRequest {
                    database: "grp_write_dst".into(),
                    range: KeyRange::whole(table.key.clone().unwrap_or_default()),
                    table: table.clone(),
                    redo: false,
                })
                .collect(),
            parts: read.parts.clone(),
        },
        data,
    )?;
    let outcomes: Vec<Result<u64, String>> = written.chunks.into_iter().map(|o| o.map_err(|e| e.message)).collect();
    assert_eq!(outcomes[0], Ok(3));
    assert!(
        matches!(&outcomes[1], Err(m) if m.contains("`b`") && m.contains("warning")),
        "{outcomes:?}"
    );
    assert_eq!((outcomes[2].clone(), outcomes[3].clone()), (Ok(2), Ok(0)));
    assert!(
        matches!(&outcomes[4], Err(m) if m.contains("`e`") && m.contains("1146")),
        "{outcomes:?}"
    );
    assert!(matches!(&outcomes[5], Err(m) if m.contains("not run")), "{outcomes:?}");

    for table in ["a", "c", "d"] {
        assert_eq!(
            server.checksum_table("grp_write_dst", table),
            server.checksum_table("grp_write_src", table),
            "{table} arrived unchanged"
        );
    }
    assert_eq!(
        server.scalar("SELECT COUNT(*) FROM grp_write_dst.f").as_deref(),
        Some("0")
    );

    // The payloads left no trace: a write naming a file it did not offer fails.
    let refused = session.write_group(
        WriteGroupRequest {
            chunks: Vec::new(),
            parts: vec![dbferry_plugin_abi::protocol::ChunkStats { bytes: 1, rows: 1 }],
        },
        Bytes::from_static(b"x"),
    );
    assert!(refused.is_err(), "parts without chunks are refused");
    Ok(())
}
}
