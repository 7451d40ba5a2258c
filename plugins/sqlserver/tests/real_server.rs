//! The real-server suite: runs only when `DBFERRY_MSSQL_URL` is set, e.g.
//! `sqlserver://sa:Passw0rd!@127.0.0.1:1433` (optionally `?tls=trust`), against
//! SQL Server 2019 or 2022. It drives the plugin exactly as the host does
//! (probe, describe, prepare, read/write chunks, digests, finish) and then
//! checks the copy value by value.
//!
//! Without the variable every test prints a loud SKIPPED line to stderr and
//! passes; `real_server_suite_requires_DBFERRY_MSSQL_URL` makes the skip
//! visible in the test list.
//!
//! The server must be able to create and drop databases named
//! `dbferry_it_*`. The backup test writes to `DBFERRY_MSSQL_BACKUP_DIR`
//! (a directory on the *server*, default `/var/opt/mssql/data`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use dbferry_plugin_abi::plugin::{Reader, Session, Writer};
use dbferry_plugin_abi::protocol::{
    BackupRestoreRequest, BackupStep, DatabaseSchema, DigestRequest, ExistingTables, FinishRequest, KeyRange,
    ObjectKind, PrepareRequest, ReadRequest, SessionConfig, SplitRequest, VerifyMode, WriteRequest,
};
use dbferry_sqlserver::cell::{string, text};
use dbferry_sqlserver::conn::{exec, rows, runtime, Pool};
use dbferry_sqlserver::detail::TableDetail;
use dbferry_sqlserver::SqlServerSession;

const SKIP: &str = "SKIPPED: DBFERRY_MSSQL_URL is not set; the SQL Server suite needs a real SQL Server 2019/2022 \
                    (e.g. DBFERRY_MSSQL_URL='sqlserver://sa:Passw0rd!@127.0.0.1:1433?tls=trust')";

const SRC: &str = "dbferry_it_src";
const DST: &str = "dbferry_it_renamed]dst";
const RESTORED: &str = "dbferry_it_restored";

/// The session config from `DBFERRY_MSSQL_URL`, `None` when unset.
fn config() -> Option<SessionConfig> {
    let url = std::env::var("DBFERRY_MSSQL_URL").ok().filter(|u| !u.is_empty())?;
    let rest = url.strip_prefix("sqlserver://").unwrap_or(&url);
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (auth, addr) = rest
        .rsplit_once('@')
        .expect("DBFERRY_MSSQL_URL needs user:password@host:port");
    let (user, password) = auth.split_once(':').expect("DBFERRY_MSSQL_URL needs user:password");
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "1433"));
    let mut options = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some((k, v)) = pair.split_once('=') {
            options.insert(k.to_string(), v.into());
        }
    }
    Some(SessionConfig {
        instance_id: "it".into(),
        host: host.into(),
        port: port.trim_end_matches('/').parse().expect("port"),
        user: user.into(),
        password: password.into(),
        max_connections: 6,
        options,
    })
}

/// Says loudly that the suite did not run. Written to the stderr handle
/// itself, not through `eprintln!`, so the test harness does not capture it.
fn skipped() {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n{SKIP}\n");
}

macro_rules! require_server {
    () => {
        match config() {
            Some(c) => c,
            None => {
                skipped();
                return;
            }
        }
    };
}

fn sql(pool: &Arc<Pool>, batch: &str) {
    runtime()
        .unwrap()
        .block_on(async {
            let mut lease = pool.get().await?;
            exec(lease.conn()?, batch).await?;
            lease.release();
            Ok::<_, dbferry_sqlserver::error::Error>(())
        })
        .unwrap_or_else(|e| panic!("{e}\n--- in ---\n{batch}"));
}

fn query(pool: &Arc<Pool>, batch: &str) -> Vec<tiberius::Row> {
    runtime()
        .unwrap()
        .block_on(async {
            let mut lease = pool.get().await?;
            let out = rows(lease.conn()?, batch).await?;
            lease.release();
            Ok::<_, dbferry_sqlserver::error::Error>(out)
        })
        .unwrap_or_else(|e| panic!("{e}\n--- in ---\n{batch}"))
}

fn scalar(pool: &Arc<Pool>, batch: &str) -> String {
    query(pool, batch).first().map(|r| string(r, 0)).unwrap_or_default()
}

fn q(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// Whether the server is Babelfish, which refuses any batch holding
/// `ALTER DATABASE` when it parses it (even inside an untaken `IF`).
fn is_babelfish(pool: &Arc<Pool>) -> bool {
    scalar(pool, dbferry_sqlserver::flavour::DETECT_SQL) == "1"
}

/// Drops `db` if it exists: on SQL Server after closing other sessions
/// (`SINGLE_USER`), on Babelfish (no `ALTER DATABASE`) plainly.
fn drop_db(pool: &Arc<Pool>, db: &str) {
    let close_sessions = if is_babelfish(pool) {
        String::new()
    } else {
        format!("ALTER DATABASE {} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; ", q(db))
    };
    sql(
        pool,
        &format!(
            "USE master; IF DB_ID(N'{0}') IS NOT NULL BEGIN {close_sessions}DROP DATABASE {1}; END",
            db.replace('\'', "''"),
            q(db)
        ),
    );
}

/// A source database with every type, identity, sequences and every object kind.
fn create_source(pool: &Arc<Pool>) {
    drop_db(pool, SRC);
    sql(pool, &format!("CREATE DATABASE {SRC} COLLATE Latin1_General_CI_AS"));
    if !is_babelfish(pool) {
        sql(pool, &format!("ALTER DATABASE {SRC} SET ALLOW_SNAPSHOT_ISOLATION ON"));
    }
    let setup = [
        "CREATE SCHEMA [sa]]les]",
        "CREATE TYPE dbo.Phone FROM varchar(20) NOT NULL",
        "CREATE XML SCHEMA COLLECTION dbo.xc AS N'<xsd:schema xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><xsd:element name=\"a\" type=\"xsd:int\"/></xsd:schema>'",
        "CREATE SEQUENCE dbo.seq AS bigint START WITH 100 INCREMENT BY 10",
        "CREATE TABLE [sa]]les].[all types] (
            id int IDENTITY(1000, 7) NOT NULL CONSTRAINT [PK all]] types] PRIMARY KEY CLUSTERED,
            c_bit bit, c_tiny tinyint, c_small smallint, c_int int, c_big bigint,
            c_dec decimal(38,10), c_num numeric(5,0), c_money money, c_smallmoney smallmoney,
            c_real real, c_float float,
            c_date date, c_time time(7), c_dt datetime, c_dt2 datetime2(7), c_dto datetimeoffset(7),
            c_dt2_3 datetime2(3), c_sdt smalldatetime,
            c_char char(10), c_varchar varchar(50) COLLATE Cyrillic_General_CI_AS, c_vmax varchar(max),
            c_nchar nchar(5), c_nvarchar nvarchar(100), c_nvmax nvarchar(max),
            c_text text, c_ntext ntext, c_image image,
            c_bin binary(4), c_varbin varbinary(100), c_vbmax varbinary(max),
            c_guid uniqueidentifier, c_xml xml, c_xml_typed xml(CONTENT dbo.xc), c_rv rowversion,
            c_variant sql_variant, c_hier hierarchyid, c_geom geometry, c_geog geography,
            c_phone dbo.Phone,
            c_comp AS (c_int * 2), c_comp_p AS (c_int + 1) PERSISTED,
            c_def int CONSTRAINT [DF_all_def] DEFAULT (42),
            c_seq bigint CONSTRAINT [DF_all_seq] DEFAULT (NEXT VALUE FOR dbo.seq)
        )",
        "INSERT INTO [sa]]les].[all types] (c_bit, c_tiny, c_small, c_int, c_big, c_dec, c_num, c_money, c_smallmoney,
            c_real, c_float, c_date, c_time, c_dt, c_dt2, c_dto, c_dt2_3, c_sdt, c_char, c_varchar, c_vmax, c_nchar,
            c_nvarchar, c_nvmax, c_text, c_ntext, c_image, c_bin, c_varbin, c_vbmax, c_guid, c_xml, c_xml_typed,
            c_variant, c_hier, c_geom, c_geog, c_phone)
         VALUES
           (1, 255, -32768, -2147483648, 9223372036854775807, 1234567890123456789012345678.0123456789, -99999,
            922337203685477.5807, -214748.3648, 3.4E+38, 2.2250738585072014E-308,
            '0001-01-01', '23:59:59.9999999', '1753-01-01T00:00:00.003', '9999-12-31T23:59:59.9999999',
            '2024-02-29T12:34:56.1234567-14:00', '2024-01-01T01:02:03.456', '2079-06-06T23:59:00',
            N'pad', N'Привет мир', REPLICATE(CAST('x' AS varchar(max)), 100000), N'ünï', N'日本語 ] '' \"',
            REPLICATE(CAST(N'€' AS nvarchar(max)), 70000), 'legacy text', N'legacy ntext ✓', 0xDEADBEEF,
            0x00FF, 0x, 0x0102, NEWID(), N'<r a=\"1\"><b>t</b></r>', N'<a>5</a>',
            CAST(CAST(12.50 AS decimal(10,2)) AS sql_variant), hierarchyid::Parse('/1/2/3/'),
            geometry::STGeomFromText('POLYGON((0 0, 3 0, 3 3, 0 3, 0 0))', 0),
            geography::Point(47.65, -122.34, 4326), '555-0100'),
           (0, 0, 0, 0, 0, 0, 0, 0, 0, -0.0, -1.5, '9999-12-31', '00:00:00', '9999-12-31T23:59:59.997',
            '0001-01-01', '0001-01-01T00:00:00+14:00', NULL, '1900-01-01', '', '', '', N'', N'', N'', '', N'', 0x,
            0x00000000, 0x00, 0x, '00000000-0000-0000-0000-000000000000', N'', NULL,
            CAST(N'unicode ✓' AS sql_variant), hierarchyid::GetRoot(), NULL, NULL, '')",
        "INSERT INTO [sa]]les].[all types] (c_int, c_variant, c_phone) VALUES
            (1, CAST(CAST(1.5 AS float) AS sql_variant), 'a'), (2, CAST(CAST('2020-01-01T01:02:03.1234567' AS datetime2(7)) AS sql_variant), 'b'),
            (3, CAST(0x0102 AS sql_variant), 'c'), (4, CAST(CAST(9 AS bigint) AS sql_variant), 'd'),
            (5, CAST(CAST(1.25 AS money) AS sql_variant), 'e'), (6, CAST(NEWID() AS sql_variant), 'f'),
            (7, CAST(CAST('plain' AS varchar(10)) AS sql_variant), 'g'), (NULL, NULL, 'h')",
        // Gaps and a deleted tail: identity values must survive and the current value too.
        "DELETE FROM [sa]]les].[all types] WHERE c_int IN (2, 4)",
        "INSERT INTO [sa]]les].[all types] (c_int, c_phone) VALUES (99, 'tail')",
        "DELETE FROM [sa]]les].[all types] WHERE c_int = 99",
        "CREATE TABLE dbo.parent (pid int NOT NULL CONSTRAINT PK_parent PRIMARY KEY NONCLUSTERED, code nvarchar(10) NOT NULL,
            CONSTRAINT UQ_parent_code UNIQUE (code))",
        "CREATE CLUSTERED INDEX CIX_parent_code ON dbo.parent (code DESC)",
        "CREATE TABLE dbo.child (cid bigint IDENTITY(-1, -1) NOT NULL PRIMARY KEY, pid int NULL, qty int NOT NULL,
            note varchar(20) NULL,
            CONSTRAINT FK_child_parent FOREIGN KEY (pid) REFERENCES dbo.parent (pid) ON DELETE CASCADE,
            CONSTRAINT CK_child_qty CHECK (qty >= 0))",
        "CREATE NONCLUSTERED INDEX IX_child_note ON dbo.child (note) INCLUDE (qty) WHERE note IS NOT NULL",
        "CREATE TABLE dbo.heap (a int NULL, b nvarchar(10) NULL)",
        "CREATE TABLE dbo.empty_identity (id int IDENTITY(5, 5) NOT NULL PRIMARY KEY, v int)",
        "INSERT INTO dbo.parent VALUES (1, N'one'), (2, N'two')",
        "INSERT INTO dbo.child (pid, qty, note) VALUES (1, 3, 'x'), (2, 0, NULL), (NULL, 7, 'y')",
        "INSERT INTO dbo.heap VALUES (1, N'a'), (1, N'a'), (NULL, NULL)",
        "SELECT NEXT VALUE FOR dbo.seq",
    ];
    for batch in setup {
        exec_in(pool, SRC, batch);
    }
    let modules = [
        "CREATE FUNCTION dbo.twice (@x int) RETURNS int AS BEGIN RETURN @x * 2 END",
        "CREATE VIEW [sa]]les].v_child AS SELECT c.cid, dbo.twice(c.qty) AS q2 FROM dbo.child c",
        "CREATE PROCEDURE dbo.p_count AS SELECT COUNT(*) FROM [sa]]les].v_child",
        "CREATE TRIGGER dbo.tr_child ON dbo.child AFTER INSERT AS SET NOCOUNT ON",
        "CREATE TRIGGER dbo.tr_child_off ON dbo.child AFTER DELETE AS SET NOCOUNT ON",
        "DISABLE TRIGGER dbo.tr_child_off ON dbo.child",
    ];
    for batch in modules {
        exec_in(pool, SRC, batch);
    }
}

/// Runs `batch` as its own batch inside `db` (CREATE SCHEMA, VIEW and the
/// like must be alone in their batch).
fn exec_in(pool: &Arc<Pool>, db: &str, batch: &str) {
    runtime()
        .unwrap()
        .block_on(async {
            let mut lease = pool.get().await?;
            let c = lease.conn()?;
            exec(c, &format!("USE {}", q(db))).await?;
            exec(c, batch).await?;
            exec(c, "USE master").await?;
            lease.release();
            Ok::<_, dbferry_sqlserver::error::Error>(())
        })
        .unwrap_or_else(|e| panic!("{e}\n--- in ---\n{batch}"));
}

/// Copies every table of `schema` the way the host does: one whole-table
/// chunk each (per-table consistency), then digests, then finish.
fn logical_copy(source: &SqlServerSession, target: &SqlServerSession, schema: &DatabaseSchema, dst: &str) {
    let prepared = target
        .prepare_target(PrepareRequest {
            database: dst.into(),
            schema: schema.clone(),
            existing_tables: ExistingTables::Fail,
            resume: false,
            inline_index_max_bytes: 0,
            parallelism: 4,
        })
        .expect("prepare");
    assert!(prepared
        .created
        .iter()
        .any(|o| o.kind == ObjectKind::Database && o.name == dst));
    let snapshot = source.begin_snapshot(4).expect("snapshot");
    assert!(snapshot.warning.is_some());
    for table in &schema.tables {
        let key = table.key.clone().unwrap_or_default();
        let mut reader = source
            .open_reader(ReadRequest {
                database: schema.database.clone(),
                table: table.clone(),
                range: KeyRange::whole(key.clone()),
                batch_bytes: 1 << 20,
                formats: Vec::new(),
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
            writer.write(batch, rows).expect("write");
        }
        let summary = writer.commit().expect("commit");
        assert_eq!(summary.rows, total, "{}", table.name);
        for mode in [VerifyMode::Count, VerifyMode::Checksum] {
            let digest = |s: &SqlServerSession, db: &str| {
                s.table_digest(DigestRequest {
                    database: db.into(),
                    table: table.clone(),
                    mode,
                    in_snapshot: false,
                })
                .expect("digest")
            };
            assert_eq!(digest(source, &schema.database), digest(target, dst), "{}", table.name);
        }
    }
    source.end_snapshot().expect("end snapshot");
    let finished = target
        .finish_target(FinishRequest {
            database: dst.into(),
            schema: schema.clone(),
            resume: false,
            parallelism: 4,
        })
        .expect("finish");
    assert!(
        finished.warnings.iter().all(|w| !w.contains("could not be created")),
        "{:?}",
        finished.warnings
    );
}

/// Every copied column of every table equals its source, compared row by
/// row through the plugin's own per-column byte form.
fn assert_same_data(pool: &Arc<Pool>, schema: &DatabaseSchema, dst: &str) {
    for table in &schema.tables {
        let detail = TableDetail::from_json(&table.detail).expect("detail");
        let key: Vec<String> = match &table.key {
            Some(k) => k.iter().map(|c| q(c)).collect(),
            None => vec!["(SELECT NULL)".into()],
        };
        for column in detail.copied() {
            let bytes = dbferry_sqlserver::digest::column_bytes(column);
            let side = |db: &str| {
                format!(
                    "SELECT {}, HASHBYTES('SHA2_256', {bytes}) AS h, COUNT_BIG(*) OVER (PARTITION BY HASHBYTES('SHA2_256', {bytes})) AS n FROM {}",
                    key.join(", "),
                    detail.three_part(db)
                )
            };
            let diff = format!(
                "SELECT COUNT(*) FROM (({} EXCEPT {}) UNION ALL ({} EXCEPT {})) AS d",
                side(&schema.database),
                side(dst),
                side(dst),
                side(&schema.database)
            );
            assert_eq!(
                scalar(pool, &diff),
                "0",
                "column {} of {} differs",
                column.name,
                table.name
            );
        }
    }
}

fn in_db(pool: &Arc<Pool>, db: &str, batch: &str) -> String {
    scalar(pool, &format!("USE {}; {batch}", q(db)))
}

/// Identity values, current identity values and sequences match the source.
fn assert_identity_and_sequences(pool: &Arc<Pool>, dst: &str) {
    for table in ["[sa]]les].[all types]", "dbo.child", "dbo.empty_identity"] {
        let current = |db: &str| {
            in_db(
                pool,
                db,
                &format!(
                    "SELECT CAST(IDENT_CURRENT(N'{}') AS nvarchar(40))",
                    table.replace('\'', "''")
                ),
            )
        };
        assert_eq!(current(SRC), current(dst), "IDENT_CURRENT of {table}");
        let ids = |db: &str| {
            let column = if table.contains("child") { "cid" } else { "id" };
            let batch = format!(
                "USE {}; SELECT STRING_AGG(CAST({column} AS nvarchar(max)), ',') WITHIN GROUP (ORDER BY {column}) FROM {table}",
                q(db)
            );
            query(pool, &batch).first().and_then(|r| text(r, 0))
        };
        assert_eq!(ids(SRC), ids(dst), "identity values of {table}");
    }
    // The next row gets the same identity on both sides.
    for db in [SRC, dst] {
        in_db(
            pool,
            db,
            "INSERT INTO dbo.empty_identity (v) VALUES (1); INSERT INTO dbo.child (qty) VALUES (1); SELECT 1",
        );
    }
    for (table, column) in [("dbo.empty_identity", "id"), ("dbo.child", "cid")] {
        let last = |db: &str| {
            in_db(
                pool,
                db,
                &format!("SELECT CAST(MAX(ABS({column})) AS nvarchar(40)) FROM {table}"),
            )
        };
        assert_eq!(last(SRC), last(dst), "next identity of {table}");
    }
    let next = |db: &str| in_db(pool, db, "SELECT CAST(NEXT VALUE FOR dbo.seq AS nvarchar(40))");
    assert_eq!(
        next(SRC),
        next(dst),
        "sequence dbo.seq continues where the source stands"
    );
}

/// Every object kind exists on the target with its properties.
fn assert_objects(pool: &Arc<Pool>, dst: &str) {
    let count = |batch: &str| in_db(pool, dst, batch);
    let checks = [
        ("SELECT COUNT(*) FROM sys.schemas WHERE name = N'sa]les'", "1"),
        ("SELECT COUNT(*) FROM sys.types WHERE name = N'Phone' AND is_user_defined = 1", "1"),
        ("SELECT COUNT(*) FROM sys.xml_schema_collections WHERE name = N'xc'", "1"),
        ("SELECT COUNT(*) FROM sys.sequences WHERE name = N'seq'", "1"),
        ("SELECT COUNT(*) FROM sys.key_constraints WHERE name IN (N'PK all] types', N'PK_parent', N'UQ_parent_code')", "3"),
        ("SELECT COUNT(*) FROM sys.indexes WHERE name = N'CIX_parent_code' AND type = 1", "1"),
        ("SELECT COUNT(*) FROM sys.indexes WHERE name = N'PK_parent' AND type = 2", "1"),
        ("SELECT COUNT(*) FROM sys.indexes WHERE name = N'IX_child_note' AND has_filter = 1 AND filter_definition = N'([note] IS NOT NULL)'", "1"),
        ("SELECT COUNT(*) FROM sys.index_columns ic JOIN sys.indexes i ON i.object_id = ic.object_id AND i.index_id = ic.index_id WHERE i.name = N'IX_child_note' AND ic.is_included_column = 1", "1"),
        ("SELECT COUNT(*) FROM sys.foreign_keys WHERE name = N'FK_child_parent' AND delete_referential_action_desc = N'CASCADE' AND is_not_trusted = 0", "1"),
        ("SELECT COUNT(*) FROM sys.check_constraints WHERE name = N'CK_child_qty' AND is_not_trusted = 0", "1"),
        ("SELECT COUNT(*) FROM sys.default_constraints WHERE name IN (N'DF_all_def', N'DF_all_seq')", "2"),
        ("SELECT COUNT(*) FROM sys.computed_columns WHERE name = N'c_comp_p' AND is_persisted = 1", "1"),
        ("SELECT COUNT(*) FROM sys.computed_columns WHERE name = N'c_comp' AND is_persisted = 0", "1"),
        ("SELECT COUNT(*) FROM sys.identity_columns WHERE name = N'id' AND CAST(seed_value AS int) = 1000 AND CAST(increment_value AS int) = 7", "1"),
        ("SELECT COUNT(*) FROM sys.columns WHERE name = N'c_varchar' AND collation_name = N'Cyrillic_General_CI_AS'", "1"),
        ("SELECT COUNT(*) FROM sys.views WHERE name = N'v_child'", "1"),
        ("SELECT COUNT(*) FROM sys.objects WHERE name = N'twice' AND type = 'FN'", "1"),
        ("SELECT COUNT(*) FROM sys.procedures WHERE name = N'p_count'", "1"),
        ("SELECT COUNT(*) FROM sys.triggers WHERE name = N'tr_child' AND is_disabled = 0", "1"),
        ("SELECT COUNT(*) FROM sys.triggers WHERE name = N'tr_child_off' AND is_disabled = 1", "1"),
        // rowversion: the target assigned its own values, none missing.
        ("SELECT COUNT(*) FROM [sa]]les].[all types] WHERE c_rv IS NULL", "0"),
        ("SELECT COUNT(*) FROM [sa]]les].[all types] WHERE c_comp_p <> c_int + 1 OR c_comp <> c_int * 2", "0"),
    ];
    for (batch, want) in checks {
        assert_eq!(count(batch), want, "{batch}");
    }
    let collation = scalar(
        pool,
        &format!(
            "SELECT collation_name FROM sys.databases WHERE name = N'{}'",
            dst.replace('\'', "''")
        ),
    );
    assert_eq!(collation, "Latin1_General_CI_AS");
}

#[test]
#[allow(non_snake_case)]
fn real_server_suite_requires_DBFERRY_MSSQL_URL() {
    let Some(config) = config() else {
        skipped();
        return;
    };
    let session = SqlServerSession::connect(&config).expect("connect");
    let info = session.probe().expect("probe");
    assert_eq!(info.product, "SQL Server");
    let major: u32 = info.version.split('.').next().unwrap_or("0").parse().unwrap_or(0);
    assert!(
        major >= 15,
        "the suite targets SQL Server 2019 (15) or 2022 (16), got {}",
        info.version
    );
    assert!(info.used_bytes > 0);
    assert!(info.write_blockers.is_empty(), "{:?}", info.write_blockers);
}

#[test]
fn logical_copy_renames_and_keeps_every_type_identity_and_object() {
    let config = require_server!();
    let pool = Pool::new(&config).expect("pool");
    create_source(&pool);
    drop_db(&pool, DST);
    let source = SqlServerSession::connect(&config).expect("source");
    let target = SqlServerSession::connect(&config).expect("target");

    let info = source.probe().expect("probe");
    let src = info
        .databases
        .iter()
        .find(|d| d.name == SRC)
        .expect("source database probed");
    assert!(src.online && src.has_objects && src.size_bytes > 0);
    assert!(source.describe_database("dbferry_it_missing").is_err());

    let schema = source.describe_database(SRC).expect("describe");
    let all = schema
        .tables
        .iter()
        .find(|t| t.name == "sa]les.all types")
        .expect("all types");
    assert_eq!(all.key.as_deref(), Some(&["id".to_string()][..]));
    let heap = schema.tables.iter().find(|t| t.name == "dbo.heap").expect("heap");
    assert_eq!(heap.key, None);
    let points = source
        .split_points(SplitRequest {
            database: SRC.into(),
            table: all.clone(),
            parts: 3,
        })
        .expect("split");
    assert!(points.len() <= 2);

    logical_copy(&source, &target, &schema, DST);
    assert_same_data(&pool, &schema, DST);
    assert_objects(&pool, DST);
    assert_identity_and_sequences(&pool, DST);

    // The destination now exists and is not empty: a second import is refused.
    let again = target.probe().expect("probe");
    assert!(again.databases.iter().any(|d| d.name == DST && d.has_objects));
    drop_db(&pool, DST);
}

#[test]
fn redo_replaces_a_key_range_and_64_mib_values_pass() {
    let config = require_server!();
    let pool = Pool::new(&config).expect("pool");
    let db = "dbferry_it_big";
    let dst = "dbferry_it_big_dst";
    drop_db(&pool, db);
    drop_db(&pool, dst);
    sql(&pool, &format!("CREATE DATABASE {db}"));
    sql(
        &pool,
        &format!(
            "USE {db}; CREATE TABLE dbo.big (id int IDENTITY NOT NULL PRIMARY KEY, b varbinary(max), s nvarchar(max)); \
             INSERT INTO dbo.big (b, s) VALUES (CONVERT(varbinary(max), REPLICATE(CAST('x' AS varchar(max)), 64 * 1024 * 1024)), \
             REPLICATE(CAST(N'ж' AS nvarchar(max)), 32 * 1024 * 1024)); \
             INSERT INTO dbo.big (b, s) SELECT TOP (1000) 0x01, N'x' FROM sys.all_objects"
        ),
    );
    let source = SqlServerSession::connect(&config).expect("source");
    let target = SqlServerSession::connect(&config).expect("target");
    let schema = source.describe_database(db).expect("describe");
    logical_copy(&source, &target, &schema, dst);
    assert_eq!(
        in_db(
            &pool,
            dst,
            "SELECT CAST(DATALENGTH(b) AS nvarchar(20)) FROM dbo.big WHERE id = 1"
        ),
        "67108864"
    );
    assert_eq!(
        in_db(
            &pool,
            dst,
            "SELECT CAST(LEN(s) AS nvarchar(20)) FROM dbo.big WHERE id = 1"
        ),
        "33554432"
    );

    // Redo of a slice: rows already in (500, 700] are replaced, not duplicated.
    let table = schema.tables[0].clone();
    let range = KeyRange {
        columns: vec!["id".into()],
        lower: Some(vec![dbferry_plugin_abi::protocol::KeyValue::Int(500)]),
        upper: Some(vec![dbferry_plugin_abi::protocol::KeyValue::Int(700)]),
    };
    let mut reader = source
        .open_reader(ReadRequest {
            database: db.into(),
            table: table.clone(),
            range: range.clone(),
            batch_bytes: 4096,
            formats: Vec::new(),
        })
        .expect("reader");
    let mut writer = target
        .open_writer(WriteRequest {
            database: dst.into(),
            table: table.clone(),
            range,
            redo: true,
        })
        .expect("writer");
    while let Some((batch, rows)) = reader.next_batch().expect("batch") {
        writer.write(batch, rows).expect("write");
    }
    assert_eq!(writer.commit().expect("commit").rows, 200);
    assert_eq!(
        in_db(&pool, dst, "SELECT CAST(COUNT(*) AS nvarchar(20)) FROM dbo.big"),
        "1001"
    );
    drop_db(&pool, db);
    drop_db(&pool, dst);
}

#[test]
fn backup_restore_copies_under_the_destination_name() {
    let config = require_server!();
    let pool = Pool::new(&config).expect("pool");
    let dir = std::env::var("DBFERRY_MSSQL_BACKUP_DIR").unwrap_or_else(|_| "/var/opt/mssql/data".into());
    let sep = if dir.contains('\\') { "\\" } else { "/" };
    let path = format!("{}{sep}dbferry_it.bak", dir.trim_end_matches(['/', '\\']));
    let db = "dbferry_it_br_src";
    drop_db(&pool, db);
    drop_db(&pool, RESTORED);
    sql(&pool, &format!("CREATE DATABASE {db}"));
    sql(
        &pool,
        &format!("USE {db}; CREATE TABLE dbo.t (id int IDENTITY(10,10) PRIMARY KEY, v nvarchar(10)); INSERT INTO dbo.t (v) VALUES (N'a'), (N'b')"),
    );
    let source = SqlServerSession::connect(&config).expect("source");
    let target = SqlServerSession::connect(&config).expect("target");
    let request = |step| BackupRestoreRequest {
        step,
        source_database: db.into(),
        database: RESTORED.into(),
        backup_path: path.clone(),
    };
    assert_eq!(source.backup_progress().expect("idle progress").percent, None);
    source.backup_restore(request(BackupStep::Backup)).expect("backup");
    let restored = target.backup_restore(request(BackupStep::Restore)).expect("restore");
    assert!(restored.created.iter().any(|o| o.name == RESTORED));
    let cleanup = source.backup_restore(request(BackupStep::Cleanup)).expect("cleanup");
    assert!(cleanup.warnings.is_empty(), "{:?}", cleanup.warnings);
    assert_eq!(
        in_db(&pool, RESTORED, "SELECT CAST(COUNT(*) AS nvarchar(10)) FROM dbo.t"),
        "2"
    );
    assert_eq!(
        in_db(&pool, RESTORED, "SELECT CAST(IDENT_CURRENT(N'dbo.t') AS nvarchar(10))"),
        "20"
    );
    let files = query(
        &pool,
        &format!("SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID(N'{RESTORED}')"),
    );
    assert!(
        files.iter().all(|r| string(r, 0).contains(RESTORED)),
        "files moved under the new name"
    );
    drop_db(&pool, db);
    drop_db(&pool, RESTORED);
}
