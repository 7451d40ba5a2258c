//! The engine against two real Babelfish servers the testkit starts: the
//! plugin driven as the host drives it, Babelfish -> Babelfish, every
//! comparison made by PostgreSQL on each side (row hashes over the
//! PostgreSQL port), independently of dbferry and of TDS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dbferry_plugin_abi::plugin::{Reader, Session, Writer};
use dbferry_plugin_abi::protocol::Detail;
use dbferry_plugin_abi::protocol::TableSchema;
use dbferry_plugin_abi::protocol::{
    DatabaseSchema, DigestRequest, ExistingTables, FinishRequest, KeyRange, PrepareRequest, ReadRequest,
    TableIndexesRequest, VerifyMode, WriteRequest,
};
use dbferry_sqlserver::detail::{DatabaseDetail, TableDetail, XmlCollection};
use dbferry_sqlserver::types::ColumnDetail;
use dbferry_sqlserver::write_path::ChunkWriter;
use dbferry_sqlserver::SqlServerSession;
use dbferry_testkit::Babelfish;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// This test's turn on the shared servers: Babelfish 4.3 fails a `CREATE
/// DATABASE` run while another is under way ("tuple concurrently
/// updated"), and every test here creates databases.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How rows travel: read over TDS and written by TDS bulk load; read over
/// TDS and written by `COPY` through the target's PostgreSQL port
/// (`postgres_port`); or, both ports named, read out by `COPY` as well and
/// passed on as text (`ReadRequest::formats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Bulk,
    Copy,
    CopyBoth,
}

const EVERY_LOAD: [Load; 3] = [Load::Bulk, Load::Copy, Load::CopyBoth];

fn sessions(a: &Babelfish, b: &Babelfish, load: Load) -> (SqlServerSession, SqlServerSession) {
    let mut source_config = a.session_config("src", 4);
    if load == Load::CopyBoth {
        source_config.options.insert("postgres_port".into(), a.pg_port().into());
    }
    let source = SqlServerSession::connect(&source_config).expect("connect source");
    let mut config = b.session_config("dst", 4);
    if load != Load::Bulk {
        config.options.insert("postgres_port".into(), b.pg_port().into());
    }
    let target = SqlServerSession::connect(&config).expect("connect target");
    (source, target)
}

/// What the host passes readers: the target's extra batch formats.
fn formats(target: &SqlServerSession, load: Load) -> Vec<String> {
    let formats = target.probe().expect("probe").batch_formats;
    assert_eq!(formats.is_empty(), load == Load::Bulk, "{load:?}: {formats:?}");
    if load == Load::CopyBoth {
        formats
    } else {
        Vec::new()
    }
}

/// Whether a chunk's first batch came the way `load` should bring it: by
/// `COPY` text under `CopyBoth` for every table `COPY` carries whose values
/// are bounded, else in the plugin's own format.
fn check_read_path(batch: &[u8], table: &TableSchema, load: Load) {
    let detail = TableDetail::from_json(&table.detail).expect("detail");
    let bounded = detail.copied().all(|c| {
        c.base != "sql_variant" && c.max_length >= 0 && !matches!(c.base.as_str(), "text" | "ntext" | "image" | "xml")
    });
    assert_eq!(
        batch.starts_with(b"DFP1"),
        load == Load::CopyBoth && bounded,
        "the read path of {}",
        table.name
    );
}

/// Whether a writer is the one `load` should give `table`: under `Copy`,
/// every table without a sql_variant column (which only T-SQL rebuilds)
/// goes by `COPY`.
fn check_path(writer: &ChunkWriter, table: &TableSchema, load: Load) {
    let detail = TableDetail::from_json(&table.detail).expect("detail");
    let copyable = detail.copied().all(|c| c.base != "sql_variant");
    let copying = matches!(writer, ChunkWriter::Copy(_));
    assert_eq!(
        copying,
        load != Load::Bulk && copyable,
        "the write path of {}",
        table.name
    );
}

/// Copies every table the way the host does (whole-table chunks), checks
/// count and checksum digests, finishes the target; returns the longest
/// batch read, in bytes.
fn copy(
    source: &SqlServerSession,
    target: &SqlServerSession,
    target_server: &Babelfish,
    schema: &DatabaseSchema,
    dst: &str,
    batch_bytes: u64,
    load: Load,
) -> usize {
    let mut longest = 0;
    let formats = formats(target, load);
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
    for (position, table) in schema.tables.iter().enumerate() {
        let key = table.key.clone().unwrap_or_default();
        let mut reader = source
            .open_reader(ReadRequest {
                database: schema.database.clone(),
                table: table.clone(),
                range: KeyRange::whole(key.clone()),
                batch_bytes,
                formats: formats.clone(),
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
        check_path(&writer, table, load);
        let mut total = 0;
        while let Some((batch, rows)) = reader.next_batch().expect("batch") {
            if total == 0 {
                check_read_path(&batch, table, load);
            }
            total += rows;
            longest = longest.max(batch.len());
            writer
                .write(batch, rows)
                .unwrap_or_else(|e| panic!("write {}: {e:?}", table.name));
        }
        let summary = writer
            .commit()
            .unwrap_or_else(|e| panic!("commit {}: {e:?}", table.name));
        assert_eq!(summary.rows, total, "{}", table.name);
        // Every other table gets its indexes as soon as it is copied, as
        // the host asks during the copy; the finish adds the rest. A keyed
        // table has none before (the target's tables are created bare) and
        // its key after.
        if position % 2 == 0 {
            let indexes = || {
                let (schema_name, name) = table.name.split_once('.').unwrap_or(("dbo", &table.name));
                target_server.pg(&format!(
                    "SELECT count(*) FROM pg_catalog.pg_indexes WHERE schemaname = '{}' AND lower(tablename) = lower('{name}')",
                    target_server.pg_schema(dst, schema_name)
                ))
            };
            assert_eq!(indexes(), "0", "{} before its indexes are added", table.name);
            target
                .add_table_indexes(TableIndexesRequest {
                    database: dst.into(),
                    table: table.clone(),
                })
                .unwrap_or_else(|e| panic!("indexes of {}: {e:?}", table.name));
            if table.key.is_some() {
                assert_ne!(indexes(), "0", "{} after its indexes are added", table.name);
            }
        }
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
    longest
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
    for load in EVERY_LOAD {
        b.drop_database(dst);
        let (source, target) = sessions(a, b, load);
        let schema = source.describe_database(src).expect("describe");
        copy(&source, &target, b, &schema, dst, 1 << 20, load);
        for table in ["t", "heap"] {
            assert_eq!(
                a.row_hash(src, "dbo", table),
                b.row_hash(dst, "dbo", table),
                "{load:?}: {table}"
            );
        }
    }
}

/// Babelfish 4.3 fails a `CREATE DATABASE` issued while another runs
/// ("tuple concurrently updated"). Six targets prepared at once, as six
/// imports into one server (or anyone's `CREATE DATABASE` beside one)
/// would, each create their database all the same.
#[test]
fn concurrent_database_creations_on_one_babelfish_all_succeed() {
    let Some((a, b)) = Babelfish::for_test("sqlserver::concurrent_database_creations_on_one_babelfish_all_succeed")
    else {
        return;
    };
    let _turn = turn();
    let src = "bf_concurrent";
    a.drop_database(src);
    a.tsql(&format!("CREATE DATABASE {src}"));
    a.tsql(&format!("USE {src}; CREATE TABLE dbo.t (id int NOT NULL PRIMARY KEY)"));
    let source = SqlServerSession::connect(&a.session_config("src", 2)).expect("connect source");
    let schema = source.describe_database(src).expect("describe");
    let targets: Vec<String> = (0..6).map(|i| format!("bf_concurrent_{i}")).collect();
    for dst in &targets {
        b.drop_database(dst);
    }
    let barrier = std::sync::Barrier::new(targets.len());
    std::thread::scope(|s| {
        for dst in &targets {
            let (schema, barrier) = (&schema, &barrier);
            s.spawn(move || {
                let target = SqlServerSession::connect(&b.session_config("dst", 2)).expect("connect target");
                barrier.wait();
                target
                    .prepare_target(PrepareRequest {
                        database: dst.clone(),
                        schema: schema.clone(),
                        existing_tables: ExistingTables::Fail,
                        resume: false,
                        inline_index_max_bytes: 0,
                        parallelism: 1,
                    })
                    .unwrap_or_else(|e| panic!("preparing {dst}: {e:?}"));
            });
        }
    });
    for dst in &targets {
        let found = b.tsql_scalar(&format!("SELECT COUNT(*) FROM sys.databases WHERE name = '{dst}'"));
        assert_eq!(found.as_deref(), Some("1"), "{dst} exists");
        b.drop_database(dst);
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
    // Either side of the size read in pieces (4 MiB), through PostgreSQL:
    // text past the BMP across several pieces, and every byte value.
    let every_byte = |n: u64| {
        format!(
            "(SELECT string_agg(decode(lpad(to_hex(g % 256), 2, '0'), 'hex'), ''::bytea) \
             FROM generate_series(1, {n}) g)::sys.bbf_varbinary"
        )
    };
    a.pg(&format!(
        "INSERT INTO {schema}.big (id, n, b) VALUES (9, repeat('😀ab', 1500000), {}), \
         (10, repeat('é', 2097152), {})",
        every_byte((4 << 20) + 1),
        every_byte(4 << 20),
        schema = a.pg_schema(src, "dbo")
    ));
    for load in EVERY_LOAD {
        b.drop_database(dst);
        let (source, target) = sessions(a, b, load);
        let schema = source.describe_database(src).expect("describe");
        let longest = copy(&source, &target, b, &schema, dst, 1 << 20, load);
        assert_eq!(a.row_hash(src, "dbo", "big"), b.row_hash(dst, "dbo", "big"), "{load:?}");
        // Whole, the 64 MiB values would make batches of 64 MiB and more.
        assert!(
            longest < 16 << 20,
            "{load:?}: a batch of {longest} bytes: values over 4 MiB were not read in pieces"
        );
    }
}

/// Every type Babelfish 4.3 supports (README names the list), at its
/// limits, with NULLs and non-ASCII text; identity with gaps, a negative
/// increment and a reseeded current value; a keyless table; views on
/// views, a function, a procedure and triggers (one disabled).
#[test]
fn babelfish_to_babelfish_keeps_every_type_identity_and_module() {
    let Some((a, b)) = Babelfish::for_test("sqlserver::babelfish_to_babelfish_keeps_every_type_identity_and_module")
    else {
        return;
    };
    let _turn = turn();
    for load in EVERY_LOAD {
        every_type_identity_and_module(a, b, load);
    }
}

/// One round of the test above, from a fresh source (its checks insert rows).
fn every_type_identity_and_module(a: &Babelfish, b: &Babelfish, load: Load) {
    let (src, dst) = ("bf_types", "bf_types_copy");
    a.drop_database(src);
    b.drop_database(dst);
    a.tsql(&format!("CREATE DATABASE {src}"));
    let setup = [
        "CREATE SCHEMA sales",
        "CREATE TABLE sales.all_types (
            id int IDENTITY(1000, 7) NOT NULL CONSTRAINT pk_all_types PRIMARY KEY,
            c_bit bit, c_tiny tinyint, c_small smallint, c_int int, c_big bigint,
            c_dec decimal(38,10), c_num numeric(5,0), c_money money, c_smallmoney smallmoney,
            c_real real, c_float float,
            c_date date, c_time time(6), c_time0 time(0), c_dt datetime, c_dt2 datetime2(6), c_dto datetimeoffset(6),
            c_dt2_3 datetime2(3), c_sdt smalldatetime,
            c_char char(10), c_varchar varchar(50), c_vmax varchar(max),
            c_nchar nchar(5), c_nvarchar nvarchar(100), c_nvmax nvarchar(max),
            c_text text, c_ntext ntext, c_image image,
            c_bin binary(4), c_varbin varbinary(100), c_vbmax varbinary(max),
            c_guid uniqueidentifier, c_xml xml,
            c_def int CONSTRAINT df_all_def DEFAULT (42)
        )",
        // sql_variant apart: only T-SQL rebuilds it, so this table is
        // written over TDS whichever way the others go.
        "CREATE TABLE dbo.variants (id int NOT NULL PRIMARY KEY, v sql_variant NULL)",
        "INSERT INTO dbo.variants VALUES (1, CAST(CAST(12.50 AS decimal(10,2)) AS sql_variant)), \
         (2, CAST(N'unicode ✓' AS sql_variant)), (3, NULL)",
        "INSERT INTO sales.all_types (c_bit, c_tiny, c_small, c_int, c_big, c_dec, c_num, c_money, c_smallmoney,
            c_real, c_float, c_date, c_time, c_time0, c_dt, c_dt2, c_dto, c_dt2_3, c_sdt, c_char, c_varchar, c_vmax,
            c_nchar, c_nvarchar, c_nvmax, c_text, c_ntext, c_image, c_bin, c_varbin, c_vbmax, c_guid, c_xml)
         VALUES
           (1, 255, -32768, -2147483648, 9223372036854775807, 1234567890123456789012345678.0123456789, -99999,
            922337203685477.5807, -214748.3648, 3.4E+38, 2.2250738585072014E-308,
            '0001-01-01', '23:59:59.999999', '23:59:59', '1753-01-01T00:00:00.003', '9999-12-31T23:59:59.999999',
            '2024-02-29T12:34:56.123456-14:00', '2024-01-01T01:02:03.456', '2079-06-06T23:59:00',
            'pad', 'plain ascii', REPLICATE(CAST('x' AS varchar(max)), 30000), N'ünï', N'日本語 ] '' \"',
            REPLICATE(CAST(N'€' AS nvarchar(max)), 30000), 'legacy text', N'legacy ntext ✓', 0xDEADBEEF,
            0x00FF, 0x, 0x0102, NEWID(), N'<r a=\"1\"><b>t</b></r>'),
           (0, 0, 0, 0, 0, 0, 0, 0, 0, -0.0, -1.5, '9999-12-31', '00:00:00', '00:00:00', '9999-12-31T23:59:59.997',
            '0001-01-01', '0001-01-01T00:00:00+00:00', NULL, '1900-01-01', '', '', '', N'', N'', N'', '', N'', 0x,
            0x00000000, 0x00, 0x, '00000000-0000-0000-0000-000000000000', N''),
           (-1, NULL, NULL, NULL, -9223372036854775808, -0.0000000001, 99999, -922337203685477.5808, 214748.3647,
            -1.17549435E-38, 1.7976931348623157E+308, '2000-02-29', '12:00:00.000001', NULL, NULL,
            '2000-01-01T00:00:00.000001', '9999-12-31T23:59:59.999999+14:00', NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        "INSERT INTO sales.all_types (c_int) VALUES (NULL)",
        // Gaps and a deleted tail: the values and the current value survive.
        "DELETE FROM sales.all_types WHERE c_int = 0",
        "INSERT INTO sales.all_types (c_int) VALUES (99)",
        "DELETE FROM sales.all_types WHERE c_int = 99",
        // The bounded types again, in a table without (max) values, which
        // a Babelfish source with `postgres_port` reads out by `COPY`.
        "CREATE TABLE sales.bounded_types (id int NOT NULL PRIMARY KEY,
            c_bit bit, c_tiny tinyint, c_small smallint, c_int int, c_big bigint,
            c_dec decimal(38,10), c_num numeric(5,0), c_money money, c_smallmoney smallmoney,
            c_real real, c_float float,
            c_date date, c_time time(6), c_time0 time(0), c_dt datetime, c_dt2 datetime2(6), c_dto datetimeoffset(6),
            c_dt2_3 datetime2(3), c_sdt smalldatetime,
            c_char char(10), c_varchar varchar(50), c_nchar nchar(5), c_nvarchar nvarchar(100),
            c_bin binary(4), c_varbin varbinary(100), c_guid uniqueidentifier, c_def int)",
        "INSERT INTO sales.bounded_types SELECT id, c_bit, c_tiny, c_small, c_int, c_big, c_dec, c_num, c_money,
            c_smallmoney, c_real, c_float, c_date, c_time, c_time0, c_dt, c_dt2, c_dto, c_dt2_3, c_sdt,
            c_char, c_varchar, c_nchar, c_nvarchar, c_bin, c_varbin, c_guid, c_def FROM sales.all_types",
        "CREATE TABLE dbo.neg (id bigint IDENTITY(-1, -1) NOT NULL PRIMARY KEY, v nvarchar(10) NULL)",
        "CREATE INDEX ix_bounded_date ON sales.bounded_types (c_date DESC, c_int)",
        "CREATE UNIQUE INDEX ux_neg_v ON dbo.neg (v)",
        "INSERT INTO dbo.neg (v) VALUES (N'a'), (N'b'), (N'c')",
        "DELETE FROM dbo.neg WHERE v = N'c'",
        "CREATE TABLE dbo.unused_identity (id int IDENTITY(5, 5) NOT NULL PRIMARY KEY, v int NULL)",
        "CREATE TABLE dbo.heap (a int NULL, b nvarchar(10) NULL)",
        "INSERT INTO dbo.heap VALUES (1, N'a'), (1, N'a'), (NULL, NULL)",
        "CREATE FUNCTION dbo.twice (@x int) RETURNS bigint AS BEGIN RETURN CAST(@x AS bigint) * 2 END",
        "CREATE VIEW dbo.v_base AS SELECT id, dbo.twice(c_int) AS t2 FROM sales.all_types",
        "CREATE VIEW dbo.v_top AS SELECT id FROM dbo.v_base WHERE t2 IS NOT NULL",
        "CREATE PROCEDURE dbo.p_count AS SELECT COUNT(*) FROM dbo.v_top",
        "CREATE TRIGGER dbo.tr_neg ON dbo.neg AFTER INSERT AS SET NOCOUNT ON",
        "CREATE TRIGGER dbo.tr_neg_off ON dbo.neg AFTER DELETE AS SET NOCOUNT ON",
        "DISABLE TRIGGER dbo.tr_neg_off ON dbo.neg",
    ];
    for batch in setup {
        a.tsql(&format!(
            "USE {src}; EXECUTE sp_executesql N'{}'",
            batch.replace('\'', "''")
        ));
    }
    let (source, target) = sessions(a, b, load);
    let schema = source.describe_database(src).expect("describe");
    if load == Load::CopyBoth {
        // Described through the PostgreSQL port, as over TDS.
        let (tds, _) = sessions(a, b, Load::Bulk);
        let over_tds = tds.describe_database(src).expect("describe over TDS");
        assert_eq!(
            serde_json::to_value(&schema).expect("json"),
            serde_json::to_value(&over_tds).expect("json"),
            "the schema described through the PostgreSQL port"
        );
        // Sizes left out: other tests' databases grow meanwhile. The TLS
        // version of the TDS sessions is read from `pg_stat_ssl` when the
        // port opens, and asked over TDS without it.
        let facts = |session: &SqlServerSession| {
            let info = session.probe().expect("probe");
            let tls_version = info.transport.as_ref().and_then(|t| t.tls_version.clone());
            assert!(tls_version.is_some(), "a TLS version: {:?}", info.transport);
            let databases: Vec<_> = info
                .databases
                .iter()
                .map(|d| (d.name.clone(), d.online, d.has_objects))
                .collect();
            (
                info.product,
                info.version,
                info.edition,
                databases,
                info.missing_privileges,
                tls_version,
            )
        };
        assert_eq!(facts(&source), facts(&tds), "the probe through the PostgreSQL port");
    }
    let heap = schema.tables.iter().find(|t| t.name == "dbo.heap").expect("heap");
    assert_eq!(heap.key, None, "a keyless table has no chunk key");
    copy(&source, &target, b, &schema, dst, 1 << 20, load);

    // Babelfish pads an nchar literal to n bytes of UTF-8 (N'ünï' stays 5
    // bytes in nchar(5)) but a converted value to n characters, as the copy
    // writes it: PostgreSQL's text of the row shows the padding, so char
    // columns compare without trailing spaces, as T-SQL compares them.
    let trimmed = |server: &Babelfish, db: &str, table: &str| {
        server.pg(&format!(
            "SELECT count(*) || ':' || md5(coalesce(string_agg(h, '' ORDER BY h), '')) FROM \
             (SELECT md5((to_jsonb(t) || jsonb_build_object('c_char', rtrim(t.c_char), 'c_nchar', rtrim(t.c_nchar)))::text) AS h \
              FROM {}.{table} AS t) AS rows",
            server.pg_schema(db, "sales")
        ))
    };
    for table in ["all_types", "bounded_types"] {
        assert_eq!(
            trimmed(a, src, table),
            trimmed(b, dst, table),
            "{load:?}: sales.{table} as PostgreSQL sees it"
        );
    }
    let nchar = "SELECT string_agg(coalesce(octet_length(c_nchar), -1)::text, ',' ORDER BY id) FROM ";
    assert_eq!(
        (
            a.pg(&format!("{nchar}{}.all_types", a.pg_schema(src, "sales"))),
            b.pg(&format!("{nchar}{}.all_types", b.pg_schema(dst, "sales")))
        ),
        ("5,-1,-1".to_string(), "7,-1,-1".to_string()),
        "{load:?}: nchar padding as Babelfish stores it"
    );
    for (schema_name, table) in [
        ("dbo", "neg"),
        ("dbo", "unused_identity"),
        ("dbo", "heap"),
        ("dbo", "variants"),
    ] {
        assert_eq!(
            a.row_hash(src, schema_name, table),
            b.row_hash(dst, schema_name, table),
            "{load:?}: {schema_name}.{table} as PostgreSQL sees it"
        );
    }
    // Keys and indexes, as PostgreSQL defines them, are the same on both
    // sides, whether added during the copy or by the finish (Babelfish
    // names a T-SQL index in PostgreSQL after it, its table and a hash
    // that differs between databases: the hash is left out).
    let indexes = |server: &Babelfish, db: &str| {
        ["sales", "dbo"]
            .iter()
            .map(|schema_name| {
                let pg_schema = server.pg_schema(db, schema_name);
                server
                    .pg(&format!(
                        "SELECT string_agg(regexp_replace(replace(indexdef, '{pg_schema}.', ''), '[0-9a-f]{{32,}} ON ', ' ON '), \
                         E'\\n' ORDER BY indexname) \
                         FROM pg_catalog.pg_indexes WHERE schemaname = '{pg_schema}'"
                    ))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let on_target = indexes(b, dst);
    assert_eq!(
        indexes(a, src),
        on_target,
        "{load:?}: indexes as PostgreSQL defines them"
    );
    for name in ["pk_all_types", "ix_bounded_date", "ux_neg_v"] {
        assert!(on_target.contains(name), "{load:?}: {name} in {on_target}");
    }
    // The next identity value is the same on both sides.
    for (table, column) in [
        ("sales.all_types", "id"),
        ("dbo.neg", "id"),
        ("dbo.unused_identity", "id"),
    ] {
        let next = |server: &Babelfish, db: &str| {
            let insert = if table == "sales.all_types" {
                format!("INSERT INTO {table} (c_int) VALUES (7)")
            } else {
                format!("INSERT INTO {table} (v) VALUES (NULL)")
            };
            server.tsql_scalar(&format!(
                "USE {db}; {insert}; SELECT CAST(MAX(ABS({column})) AS nvarchar(40)) FROM {table}"
            ))
        };
        assert_eq!(next(a, src), next(b, dst), "{load:?}: next identity of {table}");
    }
    // Modules exist and work: the views on views answer the same.
    let answer = |server: &Babelfish, db: &str| {
        server.tsql(&format!(
            "USE {db}; SELECT (SELECT COUNT(*) FROM dbo.v_top), \
             (SELECT COUNT(*) FROM sys.triggers WHERE name = 'tr_neg' AND is_disabled = 0), \
             (SELECT COUNT(*) FROM sys.triggers WHERE name = 'tr_neg_off' AND is_disabled = 1), \
             (SELECT COUNT(*) FROM sys.procedures WHERE name = 'p_count'), \
             (SELECT COUNT(*) FROM sys.objects WHERE name = 'twice')"
        ))
    };
    assert_eq!(answer(a, src), answer(b, dst));
    assert_eq!(answer(b, dst), vec![vec!["2", "1", "1", "1", "1"]]);
}

/// A source holding what Babelfish cannot (a SQL Server database with
/// hierarchyid, geography and an XML schema collection; Babelfish itself
/// cannot make one, so a described Babelfish database gets them in its
/// detail) is refused by the Babelfish target with the whole list, before
/// the destination database is created.
#[test]
fn babelfish_target_refuses_what_it_cannot_hold_before_writing() {
    let Some((a, b)) = Babelfish::for_test("sqlserver::babelfish_target_refuses_what_it_cannot_hold_before_writing")
    else {
        return;
    };
    let _turn = turn();
    let (src, dst) = ("bf_refuse", "bf_refuse_copy");
    a.drop_database(src);
    b.drop_database(dst);
    a.tsql(&format!("CREATE DATABASE {src}"));
    a.tsql(&format!(
        "USE {src}; CREATE TABLE dbo.places (id int NOT NULL PRIMARY KEY, name nvarchar(20) NULL)"
    ));
    let (source, target) = sessions(a, b, Load::Bulk);
    let mut schema = source.describe_database(src).expect("describe");
    let table = schema
        .tables
        .iter_mut()
        .find(|t| t.name == "dbo.places")
        .expect("places");
    let mut detail = TableDetail::from_json(&table.detail).expect("table detail");
    detail
        .columns
        .push(ColumnDetail::plain("node", "hierarchyid", 892, 0, 0));
    detail.columns.push(ColumnDetail::plain("area", "geography", -1, 0, 0));
    table.detail = Detail::encode(&detail).expect("encode");
    let mut database = DatabaseDetail::from_json(&schema.detail).expect("database detail");
    database.xml_collections.push(XmlCollection {
        schema: "dbo".into(),
        name: "orders".into(),
        definition: "<xsd:schema xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"/>".into(),
    });
    schema.detail = Detail::encode(&database).expect("encode");
    let refused = target
        .prepare_target(PrepareRequest {
            database: dst.into(),
            schema,
            existing_tables: ExistingTables::Fail,
            resume: false,
            inline_index_max_bytes: 0,
            parallelism: 2,
        })
        .expect_err("Babelfish cannot hold these");
    let message = format!("{refused:?}");
    for named in [
        "[dbo].[places].[node]: type hierarchyid",
        "[dbo].[places].[area]: type geography",
        "XML schema collection [dbo].[orders]",
    ] {
        assert!(message.contains(named), "{named} missing from {message}");
    }
    assert!(!b.database_exists(dst), "nothing may be created on the target");
}

/// A rowversion column can exist on a Babelfish source (behind its escape
/// hatch), and a Babelfish target would not take it without one: the
/// target's precheck names it, with nothing created, while the rest of the
/// source is held.
#[test]
fn babelfish_target_names_at_precheck_what_it_cannot_hold() {
    let Some((a, b)) = Babelfish::for_test("sqlserver::babelfish_target_names_at_precheck_what_it_cannot_hold") else {
        return;
    };
    let _turn = turn();
    let (src, dst) = ("bf_unheld", "bf_unheld_copy");
    a.drop_database(src);
    b.drop_database(dst);
    a.tsql(&format!("CREATE DATABASE {src}"));
    // The escape hatch is refused at parse time within one batch, so it is
    // set for the server around the CREATE and set back at once.
    a.tsql("EXEC sp_babelfish_configure 'escape_hatch_rowversion', 'ignore', 'server'");
    let created = a.try_tsql(&format!(
        "USE {src}; CREATE TABLE dbo.versioned (id int NOT NULL PRIMARY KEY, v rowversion)"
    ));
    a.tsql("EXEC sp_babelfish_configure 'escape_hatch_rowversion', 'strict', 'server'");
    created.expect("a rowversion column behind the escape hatch");
    a.tsql(&format!(
        "USE {src}; CREATE TABLE dbo.plain (id int NOT NULL PRIMARY KEY, s nvarchar(10) NULL)"
    ));
    let (source, target) = sessions(a, b, Load::Bulk);
    let schema = source.describe_database(src).expect("describe");
    let request = |schema: DatabaseSchema| PrepareRequest {
        database: dst.into(),
        schema,
        existing_tables: ExistingTables::Fail,
        resume: false,
        inline_index_max_bytes: 0,
        parallelism: 2,
    };
    let unheld = target.check_target(request(schema.clone())).expect("check");
    assert_eq!(
        unheld,
        ["[dbo].[versioned].[v]: type rowversion (needs babelfishpg_tsql.escape_hatch_rowversion)"]
    );
    assert!(!b.database_exists(dst), "the check creates nothing");
    let mut held = schema;
    held.tables.retain(|t| !t.name.contains("versioned"));
    assert_eq!(target.check_target(request(held)).expect("check"), Vec::<String>::new());
}

/// `tls = "on"` checks the server's certificate and host name against the
/// CA file `tls_ca` names: the CA that signed it logs in, another CA, no CA
/// (the system roots) and the server's own certificate as a CA do not, each
/// refused as the contract's `IncorrectDBInstanceTls.Unverified`.
#[test]
fn tls_on_verifies_the_server_against_the_ca_file() {
    let Some((a, _)) = Babelfish::for_test("sqlserver::tls_on_verifies_the_server_against_the_ca_file") else {
        return;
    };
    let connect = |ca: Option<&std::path::Path>| {
        let mut config = a.session_config("tls-on", 1);
        config.options.insert("tls".into(), "on".into());
        if let Some(ca) = ca {
            config.options.insert("tls_ca".into(), ca.display().to_string().into());
        }
        <dbferry_sqlserver::SqlServerEngine as dbferry_plugin_abi::plugin::Engine>::connect(config).map(|s| s.flavour())
    };
    assert_eq!(
        connect(Some(&a.ca_certificate())).expect("the signing CA is trusted"),
        dbferry_sqlserver::flavour::Flavour::Babelfish
    );
    let other = dbferry_testkit::TestCerts::make(&["127.0.0.1"]);
    for (what, ca) in [
        ("another CA", Some(other.ca())),
        ("the system roots", None),
        ("the server's own certificate", Some(a.certificate())),
    ] {
        let error = connect(ca.as_deref())
            .err()
            .unwrap_or_else(|| panic!("{what} must not verify the server"));
        assert_eq!(
            error.code.as_deref(),
            Some("IncorrectDBInstanceTls.Unverified"),
            "{what}: {error:?}"
        );
        assert!(error.message.contains("certificate"), "{what}: {}", error.message);
    }
}

/// Each `tls` mode against what a server offers, asked before any login
/// (TDS PRELOGIN): a server that requires encryption refuses `off` as the
/// contract's `IncorrectDBInstanceTls.Required`, and encrypts a login with
/// no `tls` key; a server without TLS refuses every mode that requires it as
/// `IncorrectDBInstanceTls.NotOffered`, and serves `off` and no key in
/// plaintext. PostgreSQL's `pg_stat_ssl` says, independently of dbferry,
/// whether each TDS session is encrypted.
#[test]
fn tls_modes_meet_a_server_that_requires_tls_and_one_that_offers_none() {
    let test = "sqlserver::tls_modes_meet_a_server_that_requires_tls_and_one_that_offers_none";
    let (requiring, plain) = std::thread::scope(|s| {
        let requiring = s.spawn(|| Babelfish::private_for_test(test, &["babelfishpg_tds.tds_ssl_encrypt=on"]));
        let plain = Babelfish::private_for_test(test, &["ssl=off"]);
        (requiring.join().expect("starting the requiring server"), plain)
    });
    let (Some(requiring), Some(plain)) = (requiring, plain) else {
        return;
    };
    let connect = |server: &Babelfish, tls: Option<&str>| {
        let mut config = server.session_config("rm-tls", 2);
        config.options.remove("tls");
        if let Some(tls) = tls {
            config.options.insert("tls".into(), tls.into());
        }
        SqlServerSession::connect(&config)
            .map_err(dbferry_plugin_abi::protocol::PluginError::from)
            .and_then(|session| {
                let transport = session.probe()?.transport.expect("a transport once connected");
                Ok((session, transport))
            })
    };
    // Whether the server's TDS sessions other than the harness's are encrypted.
    let encrypted_sessions = |server: &Babelfish| {
        server.pg("SELECT string_agg(s.ssl::text, ',' ORDER BY s.pid) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'dbferry'")
    };
    let refusal = |server: &Babelfish, tls: &str| match connect(server, Some(tls)) {
        Ok(_) => panic!("tls = {tls:?} connected to a server it must refuse"),
        Err(e) => (e.code.unwrap_or_default(), e.message),
    };

    let (code, message) = refusal(&requiring, "off");
    assert_eq!(code, "IncorrectDBInstanceTls.Required", "{message}");
    assert!(
        message.contains("rm-tls") && message.contains("requires encryption"),
        "{message}"
    );
    let (session, transport) = connect(&requiring, None).expect("no tls key on a server that requires TLS");
    assert!(transport.encrypted && transport.mode == "preferred", "{transport:?}");
    // The version PostgreSQL reports for the session, read on its own port.
    let version = requiring.pg("SELECT string_agg(DISTINCT s.version, ',') FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'dbferry'");
    assert!(version.starts_with("TLSv1."), "{version}");
    assert_eq!(
        transport.tls_version.as_deref(),
        Some(version.as_str()),
        "{transport:?}"
    );
    assert_eq!(encrypted_sessions(&requiring), "true", "the server's view");
    drop(session);

    for tls in ["trust", "verify-ca", "on"] {
        let (code, message) = refusal(&plain, tls);
        assert_eq!(code, "IncorrectDBInstanceTls.NotOffered", "{tls}: {message}");
        assert!(message.contains("offers none"), "{tls}: {message}");
    }
    for tls in [None, Some("off")] {
        let (session, transport) =
            connect(&plain, tls).unwrap_or_else(|e| panic!("{tls:?} on a plaintext server: {e:?}"));
        assert!(
            !transport.encrypted && transport.verified == "none",
            "{tls:?}: {transport:?}"
        );
        assert_eq!(transport.tls_version, None, "{tls:?}");
        assert_eq!(encrypted_sessions(&plain), "false", "{tls:?}: the server's view");
        drop(session);
    }
}

/// A digest that waits on a lock (here an ACCESS EXCLUSIVE lock taken on
/// the PostgreSQL port) ends within a second or two of an interrupt, and
/// the server really stops it: PostgreSQL shows no session still waiting
/// on the lock, although the lock is held for seconds more.
#[test]
fn a_digest_waiting_on_a_lock_ends_when_interrupted_and_the_server_stops_it() {
    let Some((a, _b)) =
        Babelfish::for_test("sqlserver::a_digest_waiting_on_a_lock_ends_when_interrupted_and_the_server_stops_it")
    else {
        return;
    };
    let db = "bf_interrupt";
    {
        let _turn = turn();
        a.drop_database(db);
        a.tsql(&format!("CREATE DATABASE {db}"));
    }
    a.tsql(&format!(
        "USE {db}; CREATE TABLE dbo.t (id int NOT NULL PRIMARY KEY, v nvarchar(10) NULL); \
         INSERT INTO dbo.t VALUES (1, N'a'), (2, NULL)"
    ));
    // A checksum runs over TDS; with `postgres_port`, a count runs through
    // the PostgreSQL port and is cancelled there.
    for (port, mode) in [(false, VerifyMode::Checksum), (true, VerifyMode::Count)] {
        interrupted_digest(a, db, port, mode);
    }
}

/// One round of the test above: a digest in `mode` waits on a lock until
/// it is interrupted.
fn interrupted_digest(a: &Babelfish, db: &str, port: bool, mode: VerifyMode) {
    let mut config = a.session_config("src", 4);
    if port {
        config.options.insert("postgres_port".into(), a.pg_port().into());
    }
    let session = SqlServerSession::connect(&config).expect("connect");
    let table = session.describe_database(db).expect("describe").tables.remove(0);
    let relation = format!("{}.t", a.pg_schema(db, "dbo"));
    let waiting_on_the_lock = || {
        a.pg(&format!(
            "SELECT COUNT(*) FROM pg_locks WHERE relation = '{relation}'::regclass AND NOT granted"
        ))
        .parse::<u32>()
        .unwrap_or(0)
    };
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            a.pg(&format!(
                "BEGIN; LOCK TABLE {relation} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT;"
            ))
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while a
            .pg(&format!(
                "SELECT COUNT(*) FROM pg_locks WHERE relation = '{relation}'::regclass AND mode = 'AccessExclusiveLock' AND granted"
            ))
            != "1"
        {
            assert!(Instant::now() < deadline, "the lock was taken");
            std::thread::sleep(Duration::from_millis(50));
        }
        let digest = scope.spawn(|| {
            session.table_digest(DigestRequest {
                database: db.into(),
                table: table.clone(),
                mode,
                in_snapshot: false,
            })
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while waiting_on_the_lock() == 0 {
            assert!(Instant::now() < deadline, "the digest came to wait on the lock");
            std::thread::sleep(Duration::from_millis(50));
        }
        let interrupted = Instant::now();
        session.interrupt().expect("interrupt");
        let outcome = digest.join().expect("digest thread");
        let took = interrupted.elapsed();
        let error = outcome.expect_err("an interrupted digest fails");
        assert!(error.message.contains("interrupted"), "{mode:?}: {error:?}");
        assert!(
            took < Duration::from_secs(3),
            "the digest ended {took:?} after the interrupt"
        );
        assert_eq!(waiting_on_the_lock(), 0, "the server stopped the digest's query");
        assert!(
            !holder.is_finished(),
            "the lock is still held: nothing else released the digest"
        );
        holder.join().expect("lock holder");
    });
    // The session goes on: the next digest (unlocked now) answers.
    let digest = session
        .table_digest(DigestRequest {
            database: db.into(),
            table,
            mode: VerifyMode::Count,
            in_snapshot: false,
        })
        .expect("a digest after the interrupt");
    assert_eq!(digest.rows, 2, "{mode:?}");
}
