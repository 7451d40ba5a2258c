//! A development driver: copies databases between two servers through the
//! plugin's own Session/Reader/Writer implementation, the way the host does
//! (split, snapshot, parallel lanes, verify), without the FFI layer.
//!
//! `cargo run -p dbferry-mysql --example copy -- SRC_PORT DST_PORT PASSWORD PARTS LANES DB...`
//! Environment: `DBFERRY_DROP=1` drops existing target tables, `DBFERRY_BATCH`
//! sets the batch size, `DBFERRY_USER` the account (default root).

use std::sync::Mutex;
use std::time::Instant;

use dbferry_mysql::{MysqlEngine, MysqlSession};
use dbferry_plugin_abi::plugin::{Engine, Reader, Session, Writer};
use dbferry_plugin_abi::protocol::{
    Consistency, DigestRequest, ExistingTables, FinishRequest, KeyRange, PluginError, PrepareRequest, ReadRequest,
    SessionConfig, SplitRequest, TableSchema, VerifyMode, WriteRequest,
};

fn config(port: u16, password: &str) -> SessionConfig {
    SessionConfig {
        instance_id: format!("dev-{port}"),
        host: "127.0.0.1".into(),
        port,
        user: std::env::var("DBFERRY_USER").unwrap_or_else(|_| "root".into()),
        password: password.into(),
        max_connections: 16,
        options: Default::default(),
    }
}

fn copy_chunk(
    source: &MysqlSession,
    target: &MysqlSession,
    database: &str,
    table: &TableSchema,
    range: KeyRange,
    batch_bytes: u64,
) -> Result<(u64, u64), PluginError> {
    let mut writer = target.open_writer(WriteRequest {
        database: database.into(),
        table: table.clone(),
        range: range.clone(),
        redo: true,
    })?;
    let mut reader = source.open_reader(ReadRequest {
        database: database.into(),
        table: table.clone(),
        range,
        batch_bytes,
        formats: Vec::new(),
    })?;
    let (mut rows, mut bytes) = (0, 0);
    loop {
        match reader.next_batch() {
            Ok(Some((batch, n))) => {
                if batch.is_empty() && n == 0 {
                    continue;
                }
                rows += n;
                bytes += batch.len() as u64;
                if let Err(e) = writer.write(batch, n) {
                    writer.abort();
                    return Err(e);
                }
            }
            Ok(None) => break,
            Err(e) => {
                writer.abort();
                return Err(e);
            }
        }
    }
    let summary = writer.commit()?;
    assert_eq!(summary.rows, rows, "rows accepted");
    Ok((rows, bytes))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        return Err("usage: SRC_PORT DST_PORT PASSWORD PARTS LANES DB...".into());
    }
    let (src_port, dst_port, password) = (args[0].parse()?, args[1].parse()?, args[2].clone());
    let parts: u32 = args[3].parse()?;
    let lanes: usize = args[4].parse()?;
    let batch_bytes = std::env::var("DBFERRY_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1 << 20);
    let existing = if std::env::var("DBFERRY_DROP").is_ok() {
        ExistingTables::Drop
    } else {
        ExistingTables::Fail
    };
    let source = MysqlEngine::connect(config(src_port, &password))?;
    let target = MysqlEngine::connect(config(dst_port, &password))?;
    println!("source: {:?}", source.probe()?.databases);
    if std::env::var("DBFERRY_CANCEL").is_ok() {
        return cancel_paths(&source, &target, &args[5]);
    }
    let started = Instant::now();
    let mut schemas = Vec::new();
    for database in &args[5..] {
        let schema = source.describe_database(database)?;
        let outcome = target.prepare_target(PrepareRequest {
            database: database.clone(),
            schema: schema.clone(),
            existing_tables: existing,
            resume: false,
            inline_index_max_bytes: 0,
            parallelism: lanes as u32,
        })?;
        println!(
            "{database}: created {} dropped {}",
            outcome.created.len(),
            outcome.dropped.len()
        );
        schemas.push(schema);
    }
    let snapshot = source.begin_snapshot(lanes as u32)?;
    println!("snapshot: {snapshot:?}");
    let mut chunks = Vec::new();
    for schema in &schemas {
        for table in &schema.tables {
            let columns = table.key.clone().unwrap_or_default();
            let points = if snapshot.consistency == Consistency::Global && table.key.is_some() {
                source.split_points(SplitRequest {
                    database: schema.database.clone(),
                    table: table.clone(),
                    parts,
                })?
            } else {
                Vec::new()
            };
            let mut lower = None;
            for upper in points.into_iter().map(Some).chain(std::iter::once(None)) {
                chunks.push((
                    schema.database.clone(),
                    table.clone(),
                    KeyRange {
                        columns: columns.clone(),
                        lower: lower.clone(),
                        upper: upper.clone(),
                    },
                ));
                lower = upper;
            }
        }
    }
    println!("{} chunks", chunks.len());
    let work = Mutex::new(chunks);
    let totals = Mutex::new((0u64, 0u64));
    let failure = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..lanes {
            s.spawn(|| loop {
                let next = work.lock().map(|mut w| w.pop()).ok().flatten();
                let Some((database, table, range)) = next else { break };
                match copy_chunk(&source, &target, &database, &table, range, batch_bytes) {
                    Ok((r, b)) => {
                        if let Ok(mut t) = totals.lock() {
                            t.0 += r;
                            t.1 += b;
                        }
                    }
                    Err(e) => {
                        eprintln!("{database}.{}: {e:?}", table.name);
                        if let Ok(mut f) = failure.lock() {
                            *f = Some(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner()? {
        return Err(Box::new(e));
    }
    let (rows, bytes) = totals.into_inner()?;
    let copy_secs = started.elapsed().as_secs_f64();
    println!("copied {rows} rows, {bytes} bytes in {copy_secs:.2}s");
    for schema in &schemas {
        let outcome = target.finish_target(FinishRequest {
            database: schema.database.clone(),
            schema: schema.clone(),
            resume: false,
            parallelism: lanes as u32,
        })?;
        println!(
            "{}: finish created {:?} warnings {:?}",
            schema.database, outcome.created, outcome.warnings
        );
    }
    println!("total with schema {:.2}s", started.elapsed().as_secs_f64());
    let mut mismatches = 0;
    for schema in &schemas {
        for table in &schema.tables {
            let request = |in_snapshot| DigestRequest {
                database: schema.database.clone(),
                table: table.clone(),
                mode: VerifyMode::Checksum,
                in_snapshot,
            };
            let a = source.table_digest(request(true))?;
            let b = target.table_digest(request(false))?;
            let ok = a == b;
            if !ok {
                mismatches += 1;
            }
            println!(
                "  {}.{} {} {:?} {:?}",
                schema.database,
                table.name,
                if ok { "OK" } else { "MISMATCH" },
                a,
                b
            );
        }
    }
    source.end_snapshot()?;
    if mismatches > 0 {
        return Err(format!("{mismatches} tables differ").into());
    }
    Ok(())
}

/// Stops a reader mid-stream and aborts a writer mid-load, then checks that
/// both sessions still work and the aborted chunk left nothing behind.
fn cancel_paths(
    source: &MysqlSession,
    target: &MysqlSession,
    database: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let schema = source.describe_database(database)?;
    let table = schema
        .tables
        .iter()
        .max_by_key(|t| t.estimated_rows)
        .ok_or("no tables")?
        .clone();
    let before = target.table_digest(DigestRequest {
        database: database.into(),
        table: table.clone(),
        mode: VerifyMode::Checksum,
        in_snapshot: false,
    })?;
    for round in 0..20 {
        let range = KeyRange::whole(table.key.clone().unwrap_or_default());
        let mut reader = source.open_reader(ReadRequest {
            database: database.into(),
            table: table.clone(),
            range: range.clone(),
            batch_bytes: 64 << 10,
            formats: Vec::new(),
        })?;
        let mut writer = target.open_writer(WriteRequest {
            database: database.into(),
            table: table.clone(),
            range,
            redo: true,
        })?;
        let mut got = 0;
        while got < 3 {
            if let Some((batch, rows)) = reader.next_batch()? {
                if rows > 0 {
                    got += 1;
                    writer.write(batch, rows)?;
                }
            }
        }
        drop(reader);
        writer.abort();
        println!("round {round}: dropped a reader and aborted a writer mid-stream");
    }
    let after = target.table_digest(DigestRequest {
        database: database.into(),
        table: table.clone(),
        mode: VerifyMode::Checksum,
        in_snapshot: false,
    })?;
    println!("target {}.{} before {before:?} after {after:?}", database, table.name);
    assert_eq!(before, after, "an aborted chunk left rows behind");
    source.probe()?;
    target.probe()?;
    println!("sessions still healthy");
    Ok(())
}
