//! A whole table written for the first time loads in autocommit, against
//! real MariaDB and MySQL servers (started by `dbferry-testkit`): a load whose checks
//! fail, or that is aborted, still leaves the table empty (whether its one
//! batch was held back until commit or its batches streamed), the writer
//! connection it hands back still redoes ranges in a transaction, and a
//! load that failed before its rows were asked for leaves none of them for
//! the next load on that connection.

use bytes::Bytes;
use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::{Reader, Session, Writer};
use dbferry_plugin_abi::protocol::{
    ChunkStats, ExistingTables, KeyRange, KeyValue, PluginError, PrepareRequest, ReadRequest, TableSchema,
    WriteGroupRequest, WriteRequest,
};
use dbferry_testkit::Flavour;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `{prefix}_src.t` with 3 rows, its empty copy created in `{prefix}_dst`
/// (one writer connection, so every chunk reuses the same one), the table's
/// schema and its rows as one batch.
fn setup(flavour: Flavour, prefix: &str) -> Result<(MysqlSession, TableSchema, Bytes), Box<dyn std::error::Error>> {
    let server = flavour.shared();
    let (src, dst) = (format!("{prefix}_src"), format!("{prefix}_dst"));
    server.exec(&format!(
        "CREATE DATABASE {src}; CREATE DATABASE {dst};
         CREATE TABLE {src}.t (id INT PRIMARY KEY, v VARCHAR(10) NOT NULL, UNIQUE KEY v (v));
         INSERT INTO {src}.t VALUES (1, 'a'), (2, 'b'), (3, 'c');"
    ));
    let session = MysqlSession::connect(&server.session_config("whole-table-load", 2))?;
    let schema = session.describe_database(&src)?;
    session.prepare_target(PrepareRequest {
        database: dst,
        schema: schema.clone(),
        existing_tables: ExistingTables::Fail,
        resume: false,
        inline_index_max_bytes: u64::MAX,
        parallelism: 1,
    })?;
    let table = schema.tables.into_iter().next().ok_or("no table described")?;
    let mut reader = session.open_reader(ReadRequest {
        database: src,
        range: KeyRange::whole(table.key.clone().unwrap_or_default()),
        table: table.clone(),
        batch_bytes: 1 << 20,
        formats: Vec::new(),
    })?;
    let (batch, rows) = reader.next_batch()?.ok_or("no batch read")?;
    assert_eq!(rows, 3);
    assert!(reader.next_batch()?.is_none());
    Ok((session, table, batch))
}

fn whole(prefix: &str, table: &TableSchema) -> WriteRequest {
    WriteRequest {
        database: format!("{prefix}_dst"),
        range: KeyRange::whole(table.key.clone().unwrap_or_default()),
        table: table.clone(),
        redo: false,
    }
}

/// Writes the 3-row `batch` claiming `rows` rows: as one batch, which the
/// writer holds back and loads at commit on the caller's thread, or
/// (`streamed`) as two, the second of which starts the load on its task.
fn write(writer: &mut impl Writer, batch: &Bytes, rows: u64, streamed: bool) -> Result<(), PluginError> {
    if !streamed {
        return writer.write(batch.clone(), rows);
    }
    let first_line = batch.iter().position(|&b| b == b'\n').map_or(batch.len(), |i| i + 1);
    writer.write(batch.slice(..first_line), 1)?;
    writer.write(batch.slice(first_line..), rows - 1)
}

fn count(flavour: Flavour, prefix: &str) -> Option<String> {
    flavour.shared().scalar(&format!("SELECT COUNT(*) FROM {prefix}_dst.t"))
}

dbferry_testkit::on_both_flavours! {
fn a_whole_table_load_whose_row_count_is_wrong_leaves_the_table_empty(flavour: Flavour) -> TestResult {
    for (prefix, streamed) in [("wrong_count", false), ("wrong_count_streamed", true)] {
        let (session, table, batch) = setup(flavour, prefix)?;
        let mut writer = session.open_writer(whole(prefix, &table))?;
        write(&mut writer, &batch, 4, streamed)?;
        let refused = writer.commit().err().ok_or("a short load was committed")?;
        assert!(refused.message.contains("accepted 3 rows"), "{}", refused.message);
        assert_eq!(count(flavour, prefix).as_deref(), Some("0"), "{prefix}");
    }
    Ok(())
}

fn an_aborted_whole_table_load_leaves_the_table_empty(flavour: Flavour) -> TestResult {
    for (prefix, streamed) in [("aborted", false), ("aborted_streamed", true)] {
        let (session, table, batch) = setup(flavour, prefix)?;
        let mut writer = session.open_writer(whole(prefix, &table))?;
        write(&mut writer, &batch, 3, streamed)?;
        writer.abort();
        assert_eq!(count(flavour, prefix).as_deref(), Some("0"), "{prefix}");
        // The connection went back clean: the next load on it succeeds.
        let mut writer = session.open_writer(whole(prefix, &table))?;
        write(&mut writer, &batch, 3, streamed)?;
        assert_eq!(writer.commit()?.rows, 3);
        assert_eq!(count(flavour, prefix).as_deref(), Some("3"), "{prefix}");
    }
    Ok(())
}

fn after_a_whole_table_load_its_connection_redoes_a_range_in_a_transaction(flavour: Flavour) -> TestResult {
    let (session, table, batch) = setup(flavour, "then_split")?;
    let mut writer = session.open_writer(whole("then_split", &table))?;
    writer.write(batch.clone(), 3)?;
    assert_eq!(writer.commit()?.rows, 3);
    assert_eq!(count(flavour, "then_split").as_deref(), Some("3"));

    // A redone chunk over ids (0, 3] on the same connection: it replaces the
    // rows in a transaction, so the unique key sees no duplicate.
    let mut range = KeyRange::whole(table.key.clone().unwrap_or_default());
    range.lower = Some(vec![KeyValue::Int(0)]);
    range.upper = Some(vec![KeyValue::Int(3)]);
    let mut writer = session.open_writer(WriteRequest {
        range,
        redo: true,
        ..whole("then_split", &table)
    })?;
    writer.write(batch, 3)?;
    assert_eq!(writer.commit()?.rows, 3);
    assert_eq!(count(flavour, "then_split").as_deref(), Some("3"));
    Ok(())
}

fn a_load_that_failed_before_its_data_was_asked_for_leaves_no_data_behind_for_the_next_load(flavour: Flavour) -> TestResult {
    let (session, table, batch) = setup(flavour, "stale_infile")?;
    let server = flavour.shared();
    // `broken` lacks the column `v` that the load names, so its `LOAD DATA`
    // fails before the server asks for the data: the writer's one-shot
    // infile handler, holding rows 7 to 9, is never used.
    server.exec("CREATE TABLE stale_infile_dst.broken (id INT PRIMARY KEY)");
    let broken = TableSchema {
        name: "broken".into(),
        ..table.clone()
    };
    let mut writer = session.open_writer(whole("stale_infile", &broken))?;
    let _ = write(&mut writer, &Bytes::from_static(b"7\tx\n8\ty\n9\tz\n"), 3, true);
    writer.abort();

    // The next load on the writer connection (a group's, served by the
    // pool's handler) must load its own rows, not the aborted ones.
    let written = session.write_group(
        WriteGroupRequest {
            chunks: vec![whole("stale_infile", &table)],
            parts: vec![ChunkStats {
                bytes: batch.len() as u64,
                rows: 3,
            }],
        },
        batch,
    )?;
    assert_eq!(written.chunks.len(), 1);
    assert_eq!(
        server
            .scalar("SELECT GROUP_CONCAT(id ORDER BY id) FROM stale_infile_dst.t")
            .as_deref(),
        Some("1,2,3")
    );
    Ok(())
}
}
