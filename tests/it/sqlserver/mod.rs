//! The SQL Server engine through the real `dbferry` binary, against the two
//! Babelfish for PostgreSQL servers this test binary shares
//! ([`Babelfish::for_test`]): `dbferry run` of a renamed import, the
//! prechecks with their contract codes, cancel and resume, the daemon's
//! `kill -9` resume, and the daemon driven through the signed API with
//! instance states on `/metrics`.
//!
//! Every test uses its own databases (unique names), so they share the
//! servers honestly; none changes server-wide settings. A login a test
//! needs (another version, fewer rights) is its own, made for it.
//!
//! Every comparison is made by PostgreSQL on each side: the objects of the
//! database as PostgreSQL's catalogue lists them, and the ordered MD5 of
//! every row's text form ([`Babelfish::row_hash`]), independent of dbferry
//! and of TDS.
//!
//! Without the Babelfish build each test prints a loud SKIPPED line and is
//! counted as skipped in `make test`'s closing line.

mod daemon;
mod prechecks;
mod run;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use dbferry_testkit::{Babelfish, Instance, Job};

use crate::common::{bin_dir, Setup, DST, SRC};

/// The shared source and target servers and this test's turn on them, or
/// `None` after a loud SKIPPED line (and the count `make test` prints) when
/// there is no build.
///
/// The tests of this module take turns: Babelfish 4.3 fails a `CREATE
/// DATABASE` that runs while another is under way ("tuple concurrently
/// updated"), and these tests create databases, as their imports do. The
/// daemon never runs two imports into one target at once (rule 5), but
/// concurrent tests would. The rest of the suite still runs beside them.
pub fn servers(test: &str) -> Option<(&'static Babelfish, &'static Babelfish, MutexGuard<'static, ()>)> {
    static TURN: Mutex<()> = Mutex::new(());
    let (source, target) = Babelfish::for_test(&format!("it::sqlserver::{test}"))?;
    sqlserver_plugin();
    let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    Some((source, target, turn))
}

/// `libdbferry_sqlserver.so` next to the binary, or a loud failure.
pub fn sqlserver_plugin() -> PathBuf {
    let file = bin_dir().join("libdbferry_sqlserver.so");
    assert!(
        file.is_file(),
        "{} is missing: run `cargo build --workspace` first (or `make test`)",
        file.display()
    );
    file
}

/// A config with `SRC` on `source` and `DST` on `target`.
pub fn setup(source: &Babelfish, target: &Babelfish) -> Setup {
    Setup::with(Instance::babelfish(SRC, source), Instance::babelfish(DST, target))
}

/// A job copying `source_db` from `SRC` into `dest_db` on `DST`.
pub fn job(source_db: &str, dest_db: &str) -> Job {
    Job::sqlserver(DST, SRC, &[(source_db, dest_db)])
}

/// A database name unique within this process, also among earlier runs on
/// the same shared server (T-SQL names are case-insensitive: lower case).
pub fn unique_db(prefix: &str) -> String {
    crate::common::unique(prefix).to_lowercase()
}

/// [`seed`], plus `parts` more keyed tables `p1`.. with `rows` rows each
/// (copies of `t`): SQL Server copies a table in one chunk (its connections
/// cannot share a snapshot), so an import interrupted mid-copy needs several
/// tables to have committed some and not others.
pub fn seed_parts(server: &Babelfish, db: &str, parts: u32, rows: u64) {
    seed(server, db, rows);
    let schema = server.pg_schema(db, "dbo");
    for n in 1..=parts {
        server.tsql(&format!(
            "USE [{db}]; CREATE TABLE dbo.p{n} (id int NOT NULL PRIMARY KEY, name nvarchar(64) NULL, \
               amount decimal(12,2) NULL, born date NULL, at datetime2 NULL, pad varchar(200) NULL)"
        ));
        server.pg(&format!(
            "INSERT INTO \"{schema}\".p{n} SELECT * FROM \"{schema}\".t; ANALYZE \"{schema}\".p{n}"
        ));
    }
}

/// Creates `db` on `server` with a keyed table `t` of `rows` rows (about
/// 150 bytes each: int key, nvarchar with non-ASCII text and NULLs,
/// decimal, date, datetime2, varchar padding), a keyless table `heap`
/// with a duplicated row and a NULL row, and a view `v` on `t`. Rows are
/// generated on the PostgreSQL port (fast, and not through dbferry).
pub fn seed(server: &Babelfish, db: &str, rows: u64) {
    server.drop_database(db);
    server.tsql(&format!("CREATE DATABASE [{db}]"));
    server.tsql(&format!(
        "USE [{db}]; \
         CREATE TABLE dbo.t (id int NOT NULL PRIMARY KEY, name nvarchar(64) NULL, amount decimal(12,2) NULL, \
           born date NULL, at datetime2 NULL, pad varchar(200) NULL); \
         CREATE TABLE dbo.heap (a int NULL, b varchar(10) NULL); \
         INSERT INTO dbo.heap VALUES (1, 'a'), (1, 'a'), (NULL, NULL)"
    ));
    server.tsql(&format!(
        "USE [{db}]\ngo\nCREATE VIEW dbo.v AS SELECT COUNT(*) AS n FROM dbo.t"
    ));
    let schema = server.pg_schema(db, "dbo");
    server.pg(&format!(
        "INSERT INTO \"{schema}\".t SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'Zoë 日本 ' || g END, g / 7.0, \
           DATE '2000-01-01' + (g % 9000), TIMESTAMP '2020-01-01' + g * interval '1.5 second', \
           repeat(chr(65 + g % 26), 80) FROM generate_series(1, {rows}) g"
    ));
    // Fresh statistics: the engine plans chunks from the row estimate.
    server.pg(&format!("ANALYZE \"{schema}\".t"));
}

/// The relations (tables and views, by kind and name) of T-SQL database
/// `db`'s `dbo` schema as PostgreSQL lists them, or `None` when the
/// database does not exist.
pub fn relations(server: &Babelfish, db: &str) -> Option<Vec<String>> {
    if !server.database_exists(db) {
        return None;
    }
    let schema = server.pg_schema(db, "dbo");
    let listed = server.pg(&format!(
        "SELECT c.relkind::text || ' ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'v') ORDER BY 1"
    ));
    Some(listed.lines().map(str::to_string).collect())
}

/// Asserts that `dest_db` on `target` holds the relations of `source_db` on
/// `source` and, table by table, the same rows (PostgreSQL's ordered row
/// hashes). Returns the number of rows compared.
pub fn assert_same(source: &Babelfish, source_db: &str, target: &Babelfish, dest_db: &str) -> u64 {
    let objects = relations(source, source_db).unwrap_or_else(|| panic!("no {source_db} on the source"));
    let copied = relations(target, dest_db).unwrap_or_else(|| panic!("no {dest_db} on the target"));
    assert_eq!(objects, copied, "{source_db} -> {dest_db}: the same tables and views");
    let mut rows = 0;
    for table in objects.iter().filter_map(|o| o.strip_prefix("r ")) {
        let a = source.row_hash(source_db, "dbo", table);
        let b = target.row_hash(dest_db, "dbo", table);
        assert_eq!(a, b, "{source_db}.dbo.{table} -> {dest_db}: rows (count:md5) differ");
        rows += a.split(':').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    rows
}

/// Rows of `dest_db.dbo.table` on `server`, counted by PostgreSQL; 0 when
/// the database or table is not there.
pub fn rows_of(server: &Babelfish, db: &str, table: &str) -> u64 {
    match relations(server, db) {
        Some(found) if found.contains(&format!("r {table}")) => {
            let schema = server.pg_schema(db, "dbo");
            server
                .pg(&format!("SELECT count(*) FROM \"{schema}\".\"{table}\""))
                .parse()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Rows of every table of `db`'s `dbo` schema on `server`, counted by
/// PostgreSQL; 0 when the database is not there.
pub fn total_rows(server: &Babelfish, db: &str) -> u64 {
    relations(server, db)
        .unwrap_or_default()
        .iter()
        .filter_map(|o| o.strip_prefix("r "))
        .map(|table| rows_of(server, db, table))
        .sum()
}
