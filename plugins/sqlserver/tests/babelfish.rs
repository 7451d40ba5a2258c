//! The engine against two real Babelfish servers the testkit starts: the
//! plugin driven as the host drives it, Babelfish -> Babelfish, every
//! comparison made by PostgreSQL on each side (row hashes over the
//! PostgreSQL port), independently of dbferry and of TDS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dbferry_plugin_abi::plugin::{Reader, Session, Writer};
use dbferry_plugin_abi::protocol::{
    DatabaseSchema, DigestRequest, ExistingTables, FinishRequest, KeyRange, PrepareRequest, ReadRequest, VerifyMode,
    WriteRequest,
};
use dbferry_sqlserver::SqlServerSession;
use dbferry_testkit::Babelfish;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// This test's turn on the shared servers: Babelfish 4.3 fails a `CREATE
/// DATABASE` run while another is under way ("tuple concurrently
/// updated"), and every test here creates databases.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sessions(a: &Babelfish, b: &Babelfish) -> (SqlServerSession, SqlServerSession) {
    let source = SqlServerSession::connect(&a.session_config("src", 4)).expect("connect source");
    let target = SqlServerSession::connect(&b.session_config("dst", 4)).expect("connect target");
    (source, target)
}

/// Copies every table the way the host does (whole-table chunks), checks
/// count and checksum digests, finishes the target.
fn copy(source: &SqlServerSession, target: &SqlServerSession, schema: &DatabaseSchema, dst: &str, batch_bytes: u64) {
    target
        .prepare_target(PrepareRequest {
            database: dst.into(),
            schema: schema.clone(),
            existing_tables: ExistingTables::Fail,
            resume: false,
            inline_index_max_bytes: 0,
            parallelism: 2,
        })
        .expect("prepare");
    source.begin_snapshot(2).expect("snapshot");
    for table in &schema.tables {
        let key = table.key.clone().unwrap_or_default();
        let mut reader = source
            .open_reader(ReadRequest {
                database: schema.database.clone(),
                table: table.clone(),
                range: KeyRange::whole(key.clone()),
                batch_bytes,
            })
            .expect("reader");
        let mut writer = target
            .open_writer(WriteRequest {
                database: dst.into(),
                table: table.clone(),
                range: KeyRange::whole(key),
                redo: false,
            })
            .expect("writer");
        let mut total = 0;
        while let Some((batch, rows)) = reader.next_batch().expect("batch") {
            total += rows;
            writer
                .write(batch, rows)
                .unwrap_or_else(|e| panic!("write {}: {e:?}", table.name));
        }
        let summary = writer
            .commit()
            .unwrap_or_else(|e| panic!("commit {}: {e:?}", table.name));
        assert_eq!(summary.rows, total, "{}", table.name);
        for mode in [VerifyMode::Count, VerifyMode::Checksum] {
            let digest = |s: &SqlServerSession, db: &str| {
                s.table_digest(DigestRequest {
                    database: db.into(),
                    table: table.clone(),
                    mode,
                    in_snapshot: false,
                })
                .unwrap_or_else(|e| panic!("digest {mode:?} of {}: {e:?}", table.name))
            };
            assert_eq!(
                digest(source, &schema.database),
                digest(target, dst),
                "{mode:?} of {}",
                table.name
            );
        }
    }
    source.end_snapshot().expect("end snapshot");
    let finished = target
        .finish_target(FinishRequest {
            database: dst.into(),
            schema: schema.clone(),
            resume: false,
            parallelism: 2,
        })
        .expect("finish");
    assert!(
        finished.warnings.iter().all(|w| !w.contains("could not be created")),
        "{:?}",
        finished.warnings
    );
}

#[test]
fn babelfish_to_babelfish_copies_simple_tables_renamed() {
    let Some((a, b)) = Babelfish::for_test("sqlserver::babelfish_to_babelfish_copies_simple_tables_renamed") else {
        return;
    };
    let _turn = turn();
    let (src, dst) = ("bf_simple", "bf_simple_renamed");
    a.drop_database(src);
    b.drop_database(dst);
    a.tsql(&format!("CREATE DATABASE {src}"));
    a.tsql(&format!(
        "USE {src}; CREATE TABLE dbo.t (id int NOT NULL PRIMARY KEY, name nvarchar(40) NULL, born date NULL, n bigint NULL)"
    ));
    a.tsql(&format!(
        "USE {src}; INSERT INTO dbo.t VALUES (1, N'Zoë 日本', '2001-02-03', 9223372036854775807), (2, NULL, NULL, NULL), (3, N'', '0001-01-01', -1)"
    ));
    a.tsql(&format!(
        "USE {src}; CREATE TABLE dbo.heap (a int NULL, b varchar(10) NULL)"
    ));
    a.tsql(&format!(
        "USE {src}; INSERT INTO dbo.heap VALUES (1, 'a'), (1, 'a'), (NULL, NULL)"
    ));
    let (source, target) = sessions(a, b);
    let schema = source.describe_database(src).expect("describe");
    copy(&source, &target, &schema, dst, 1 << 20);
    for table in ["t", "heap"] {
        assert_eq!(a.row_hash(src, "dbo", table), b.row_hash(dst, "dbo", table), "{table}");
    }
}

/// `(max)` values past what a bulk load carries (65,535 bytes), up to 64 MiB,
/// between ordinary rows: a row holding one is staged by a parameterised
/// insert, the rows around it by bulk load, all in one chunk.
#[test]
fn babelfish_to_babelfish_copies_64_mib_max_values() {
    let Some((a, b)) = Babelfish::for_test("sqlserver::babelfish_to_babelfish_copies_64_mib_max_values") else {
        return;
    };
    let _turn = turn();
    let (src, dst) = ("bf_max", "bf_max_copy");
    a.drop_database(src);
    b.drop_database(dst);
    a.tsql(&format!("CREATE DATABASE {src}"));
    a.tsql(&format!(
        "USE {src}; CREATE TABLE dbo.big (id int NOT NULL PRIMARY KEY, v varchar(max) NULL, \
         n nvarchar(max) NULL, b varbinary(max) NULL, note nvarchar(20) NULL)"
    ));
    const MIB64: u64 = 64 << 20;
    // Each row: id, length in bytes of v, of n (UTF-16), of b. Lengths
    // straddle the bulk limit; 64 MiB is the size.
    let rows: [(u32, u64, u64, u64); 7] = [
        (1, 10, 10, 10),
        (2, 65_535, 65_534, 65_535),
        (3, 65_536, 65_536, 65_536),
        (4, 0, 0, 0),
        (5, MIB64, 0, 0),
        (6, 0, MIB64, 0),
        (7, 0, 0, MIB64),
    ];
    for (id, v, n, bytes) in rows {
        // varchar: 'é' is one byte in the database's code page; nvarchar:
        // '日' and 'ë' are one UTF-16 unit each; varbinary: every byte value.
        let v = format!("LEFT(REPLICATE(CAST('abcdé-' AS varchar(max)), {}), {v})", v / 6 + 1);
        let n = format!(
            "LEFT(REPLICATE(CAST(N'Zoë日本-' AS nvarchar(max)), {}), {})",
            n / 12 + 1,
            n / 2
        );
        let b = format!(
            "CAST(LEFT(REPLICATE(CAST('0123456789' AS varchar(max)), {}), {bytes}) AS varbinary(max))",
            bytes / 10 + 1
        );
        a.tsql(&format!(
            "USE {src}; INSERT INTO dbo.big VALUES ({id}, {v}, {n}, {b}, N'row {id}')"
        ));
    }
    a.tsql(&format!(
        "USE {src}; INSERT INTO dbo.big VALUES (8, NULL, NULL, NULL, NULL)"
    ));
    let lengths = a.pg(&format!(
        // Characters of v are bytes in its code page, of n two bytes in UTF-16.
        "SELECT string_agg(id || ':' || coalesce(char_length(v::text), -1) || ':' || \
         coalesce(char_length(n::text), -1) || ':' || coalesce(octet_length(b::bytea), -1), ' ' ORDER BY id) \
         FROM {}.big",
        a.pg_schema(src, "dbo")
    ));
    assert!(lengths.contains("5:67108864:"), "{lengths}");
    assert!(lengths.contains("6:0:33554432:0"), "{lengths}");
    assert!(lengths.contains("7:0:0:67108864"), "{lengths}");
    let (source, target) = sessions(a, b);
    let schema = source.describe_database(src).expect("describe");
    copy(&source, &target, &schema, dst, 1 << 20);
    assert_eq!(a.row_hash(src, "dbo", "big"), b.row_hash(dst, "dbo", "big"));
}
