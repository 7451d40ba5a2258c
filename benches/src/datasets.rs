//! The four datasets of the performance issue, built on the source server.
//!
//! | key | database     | what                                                            |
//! |-----|--------------|-----------------------------------------------------------------|
//! | a   | `sbtest`     | 4 sysbench tables × 500k rows (`sysbench oltp_read_only prepare`) |
//! | b   | `bench_wide` | one wide table, 200k rows, a TEXT + BLOB payload of 1–64 KiB a row |
//! | c   | `bench_many` | 1,000 tables × 100 rows                                          |
//! | d   | `bench_big`  | one sysbench table of 5M rows                                    |
//!
//! `scale` multiplies row counts. For (c) it multiplies the number of tables
//! (at least 10), so each table keeps its 100 rows and the per-table overhead
//! that (c) is about stays visible.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::server::{ident, Flavour, Server, PASSWORD, USER};

/// One of the four datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dataset {
    /// 4 sysbench tables × 500k rows.
    A,
    /// Wide rows: 200k rows, TEXT/BLOB of 1–64 KiB.
    B,
    /// 1,000 tables × 100 rows.
    C,
    /// One table of 5M rows.
    D,
}

impl Dataset {
    /// Every dataset, in order.
    pub const ALL: [Dataset; 4] = [Dataset::A, Dataset::B, Dataset::C, Dataset::D];

    /// Parses `a`, `b`, `c`, `d`.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "a" => Dataset::A,
            "b" => Dataset::B,
            "c" => Dataset::C,
            "d" => Dataset::D,
            other => bail!("unknown dataset {other:?} (expected a, b, c, d or all)"),
        })
    }

    /// The one-letter key used in file names.
    pub fn key(self) -> &'static str {
        match self {
            Dataset::A => "a",
            Dataset::B => "b",
            Dataset::C => "c",
            Dataset::D => "d",
        }
    }

    /// The database the dataset lives in (same name on source and target).
    pub fn database(self) -> &'static str {
        match self {
            Dataset::A => "sbtest",
            Dataset::B => "bench_wide",
            Dataset::C => "bench_many",
            Dataset::D => "bench_big",
        }
    }

    /// A human description at the given scale.
    pub fn describe(self, scale: f64) -> String {
        match self {
            Dataset::A => format!("(a) 4 sysbench tables x {} rows", scaled(500_000, scale)),
            Dataset::B => format!("(b) wide rows: {} rows, TEXT+BLOB 1-64 KiB", scaled(200_000, scale)),
            Dataset::C => format!("(c) {} tables x 100 rows", many_tables(scale)),
            Dataset::D => format!("(d) one table of {} rows", scaled(5_000_000, scale)),
        }
    }
}

/// `base * scale`, at least 1.
pub fn scaled(base: u64, scale: f64) -> u64 {
    ((base as f64 * scale).round() as u64).max(1)
}

fn many_tables(scale: f64) -> u64 {
    scaled(1000, scale).max(10)
}

/// Builds `dataset` on `source` (dropping any earlier copy). Returns seconds
/// taken. With `fresh`, the tables are left as a bulk load or a restore
/// leaves them: no `ANALYZE TABLE`, so MySQL's cached statistics
/// (`information_schema_stats_expiry`) still describe the empty tables.
pub fn build(source: &Server, dataset: Dataset, scale: f64, fresh: bool) -> Result<f64> {
    let start = Instant::now();
    let db = dataset.database();
    source.recreate_database(db)?;
    match dataset {
        Dataset::A => sysbench_prepare(source, db, 4, scaled(500_000, scale))?,
        Dataset::D => sysbench_prepare(source, db, 1, scaled(5_000_000, scale))?,
        Dataset::B => build_wide(source, db, scaled(200_000, scale))?,
        Dataset::C => build_many(source, db, many_tables(scale), 100)?,
    }
    if fresh {
        return Ok(start.elapsed().as_secs_f64());
    }
    // Fresh statistics for everyone's planners and estimates.
    let tables = source.tables(db)?;
    for group in tables.chunks(100) {
        let list = group
            .iter()
            .map(|t| format!("{}.{}", ident(db), ident(t)))
            .collect::<Vec<_>>()
            .join(", ");
        source.query(&format!("ANALYZE TABLE {list}"))?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn sysbench_prepare(source: &Server, db: &str, tables: u64, rows: u64) -> Result<()> {
    let out = Command::new("sysbench")
        .arg("oltp_read_only")
        .arg("--db-driver=mysql")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={}", source.port))
        .arg(format!("--mysql-user={USER}"))
        .arg(format!("--mysql-password={PASSWORD}"))
        .arg(format!("--mysql-db={db}"))
        .arg(format!("--tables={tables}"))
        .arg(format!("--table-size={rows}"))
        .arg("prepare")
        .output()
        .context("running sysbench (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "sysbench prepare failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Dataset (b): each row carries a payload of 1..64 KiB (deterministic per
/// id), half UTF-8 text with tabs, newlines and non-ASCII characters, half
/// random bytes (so 0x00, `\`, tab and newline all occur).
fn build_wide(source: &Server, db: &str, rows: u64) -> Result<()> {
    source.exec(&format!(
        "CREATE TABLE {}.wide (
           id INT UNSIGNED NOT NULL PRIMARY KEY,
           k INT UNSIGNED NOT NULL,
           title VARCHAR(100) NOT NULL,
           body MEDIUMTEXT NOT NULL,
           data MEDIUMBLOB,
           created DATETIME(6) NOT NULL,
           KEY k_1 (k)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ident(db)
    ))?;
    // 2,000 rows (~65 MB) per statement keeps transactions moderate.
    let batch = 2_000;
    let mut script = String::new();
    if source.flavour == Flavour::MySql {
        // A batch recurses deeper than MySQL's default limit of 1,000.
        script.push_str("SET SESSION cte_max_recursion_depth = 100000;\n");
    }
    let mut lower = 1;
    while lower <= rows {
        let upper = (lower + batch - 1).min(rows);
        script.push_str(&format!(
            "INSERT INTO {db}.wide (id, k, title, body, data, created)
             SELECT seq, CRC32(seq) % {rows},
                    CONCAT('row ', seq, ' ', LEFT(SHA2(seq, 256), 32)),
                    LEFT(REPEAT(CONCAT(SHA2(seq, 256), ' ünïcödé\ttext\\n'), CEIL(len / 2 / 70) + 1), len DIV 2),
                    LEFT(REPEAT(RANDOM_BYTES(1024), CEIL(len / 2 / 1024) + 1), len - len DIV 2),
                    TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
             FROM (SELECT seq, 1024 + CRC32(CONCAT('len', seq)) % 64513 AS len FROM {numbers}) s;\n",
            db = ident(db),
            numbers = numbers(source.flavour, db, lower, upper)
        ));
        lower = upper + 1;
    }
    source.exec(&script)
}

/// Dataset (c): `tables` small tables of `rows` rows, each with a secondary index.
fn build_many(source: &Server, db: &str, tables: u64, rows: u64) -> Result<()> {
    let mut script = String::new();
    for i in 1..=tables {
        let t = format!("{}.{}", ident(db), ident(&format!("t{i:04}")));
        script.push_str(&format!(
            "CREATE TABLE {t} (
               id INT UNSIGNED NOT NULL PRIMARY KEY,
               k INT UNSIGNED NOT NULL,
               c VARCHAR(120) NOT NULL,
               pad CHAR(60) NOT NULL,
               price DECIMAL(12,2) NOT NULL,
               created DATETIME NOT NULL,
               KEY k_1 (k)
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             INSERT INTO {t} SELECT seq, CRC32(seq) % 1000, CONCAT('name-', {i}, '-', LEFT(SHA2(seq, 256), 32)),
               LEFT(SHA2(seq, 224), 40), (seq * 7919 % 100000) / 100, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq MINUTE
             FROM {numbers};\n",
            numbers = numbers(source.flavour, db, 1, rows)
        ));
    }
    source.exec(&script)
}

/// A derived table of the integers `lower..=upper` in a column `seq`:
/// MariaDB's sequence engine, or a recursive CTE on MySQL, which has none.
/// Neither flavour's MD5() or SHA1() is used either: MySQL 9.7 has neither.
fn numbers(flavour: Flavour, db: &str, lower: u64, upper: u64) -> String {
    match flavour {
        Flavour::MariaDb => format!("{}.seq_{lower}_to_{upper}", ident(db)),
        Flavour::MySql => format!(
            "(WITH RECURSIVE n (seq) AS (SELECT {lower} UNION ALL SELECT seq + 1 FROM n WHERE seq < {upper}) \
             SELECT seq FROM n) AS numbers"
        ),
    }
}

/// What a built dataset holds, measured on the source.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Exact rows per table.
    pub tables: Vec<(String, u64)>,
    /// Total rows.
    pub rows: u64,
    /// InnoDB data + index bytes on the source (`information_schema`).
    pub stored_bytes: u64,
    /// Size of the `SELECT ... INTO OUTFILE` export, the logical data volume
    /// that MB/s figures refer to. Filled in by the floor's export.
    pub logical_bytes: u64,
}

/// Counts what `dataset` holds on `server`.
pub fn inspect(server: &Server, dataset: Dataset) -> Result<DatasetInfo> {
    let db = dataset.database();
    let tables = server.exact_counts(db)?;
    let rows = tables.iter().map(|(_, n)| n).sum();
    let stored_bytes = server
        .query_value(&format!(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = '{db}'"
        ))?
        .parse()
        .context("bad information_schema size")?;
    Ok(DatasetInfo {
        tables,
        rows,
        stored_bytes,
        logical_bytes: 0,
    })
}
