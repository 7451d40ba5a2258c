//! The floor: the target's own bulk-ingest rate.
//!
//! Done once in advance (not timed): every source table is exported with
//! `SELECT * INTO OUTFILE` into a directory both servers may read
//! (`--secure-file-priv`), and its `SHOW CREATE TABLE` is split into a
//! create statement without secondary indexes plus one `ALTER TABLE ... ADD
//! KEY ...` for them. A table holding most of a dataset's rows (dataset d) is
//! exported in 8 primary-key ranges so even one table loads in parallel.
//!
//! Timed: create the tables, server-side `LOAD DATA INFILE ... CHARACTER SET
//! binary` of every file with `workers` concurrent sessions
//! (`unique_checks=0`, `foreign_key_checks=0`), then add the secondary
//! indexes, tables in parallel. Nothing crosses a client connection but the
//! statements, so no copy tool can beat this on the same servers.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::datasets::{Dataset, DatasetInfo};
use crate::measure::{run_parallel, Measured};
use crate::server::{ident, literal, Server};

/// How many ranges a dominant table is exported in.
pub const SPLIT_PARTS: u64 = 8;

/// One table of the floor.
#[derive(Clone, Debug)]
pub struct FloorTable {
    /// Table name.
    pub name: String,
    /// `CREATE TABLE` without secondary indexes.
    pub create_plain: String,
    /// `ALTER TABLE ... ADD ...` for the secondary indexes, if any.
    pub add_indexes: Option<String>,
    /// Exported files with their sizes.
    pub parts: Vec<(PathBuf, u64)>,
}

/// Everything exported for one dataset.
#[derive(Clone, Debug)]
pub struct FloorPlan {
    /// The database.
    pub db: String,
    /// The tables.
    pub tables: Vec<FloorTable>,
}

impl FloorPlan {
    /// Total bytes of the exported files.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().flat_map(|t| &t.parts).map(|(_, b)| b).sum()
    }
}

/// Splits a `SHOW CREATE TABLE` statement into one without secondary indexes
/// (and foreign keys) and the `ALTER TABLE` clauses that add them back.
pub fn split_create(create: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = create.lines().collect();
    if lines.len() < 3 {
        return (create.to_string(), Vec::new());
    }
    let (head, rest) = lines.split_at(1);
    let (body, tail) = rest.split_at(rest.len() - 1);
    let mut kept = Vec::new();
    let mut deferred = Vec::new();
    for line in body {
        let def = line.trim().trim_end_matches(',');
        let secondary = ["KEY ", "UNIQUE KEY ", "FULLTEXT KEY ", "SPATIAL KEY ", "CONSTRAINT "]
            .iter()
            .any(|p| def.starts_with(p));
        if secondary {
            deferred.push(format!("ADD {def}"));
        } else {
            kept.push(format!("  {def}"));
        }
    }
    let mut out = String::new();
    out.push_str(head[0]);
    out.push('\n');
    out.push_str(&kept.join(",\n"));
    out.push('\n');
    out.push_str(tail[0]);
    (out, deferred)
}

/// Exports `dataset` from `source` into `dir` (created; must be under the
/// servers' `--secure-file-priv`). Returns the plan and the export's size.
pub fn export(source: &Server, dataset: Dataset, info: &DatasetInfo, dir: &Path) -> Result<FloorPlan> {
    let db = dataset.database();
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tables = Vec::new();
    let mut script = String::new();
    for (index, (name, rows)) in info.tables.iter().enumerate() {
        let create = source.show_create_table(db, name)?;
        let (create_plain, deferred) = split_create(&create);
        let add_indexes = (!deferred.is_empty())
            .then(|| format!("ALTER TABLE {}.{} {}", ident(db), ident(name), deferred.join(", ")));
        let qualified = format!("{}.{}", ident(db), ident(name));
        let mut ranges: Vec<String> = Vec::new();
        if *rows >= 1_000 && rows * 2 >= info.rows {
            if let Some(pk) = integer_pk(source, db, name)? {
                let bounds = source.query(&format!("SELECT MIN({0}), MAX({0}) FROM {qualified}", ident(&pk)))?;
                if let Some([lo, hi]) = bounds.into_iter().next().and_then(|r| <[String; 2]>::try_from(r).ok()) {
                    let (lo, hi): (i128, i128) = (lo.parse()?, hi.parse()?);
                    let step = ((hi - lo + 1) as f64 / SPLIT_PARTS as f64).ceil() as i128;
                    for part in 0..SPLIT_PARTS as i128 {
                        let (a, b) = (lo + part * step, lo + (part + 1) * step);
                        ranges.push(format!(" WHERE {0} >= {a} AND {0} < {b}", ident(&pk)));
                    }
                }
            }
        }
        if ranges.is_empty() {
            ranges.push(String::new());
        }
        let mut parts = Vec::new();
        for (part, filter) in ranges.iter().enumerate() {
            let path = dir.join(format!("{index:05}.{part}.tsv"));
            script.push_str(&format!(
                "SELECT * INTO OUTFILE {} FROM {qualified}{filter};\n",
                literal(&path.to_string_lossy())
            ));
            parts.push((path, 0));
        }
        tables.push(FloorTable {
            name: name.clone(),
            create_plain,
            add_indexes,
            parts,
        });
    }
    source.exec(&script)?;
    for table in &mut tables {
        for (path, size) in &mut table.parts {
            *size = fs::metadata(&*path)
                .with_context(|| format!("stat {}", path.display()))?
                .len();
        }
    }
    Ok(FloorPlan {
        db: db.to_string(),
        tables,
    })
}

fn integer_pk(server: &Server, db: &str, table: &str) -> Result<Option<String>> {
    let rows = server.query(&format!(
        "SELECT k.column_name, c.data_type FROM information_schema.key_column_usage k
         JOIN information_schema.columns c
           ON c.table_schema = k.table_schema AND c.table_name = k.table_name AND c.column_name = k.column_name
         WHERE k.table_schema = {} AND k.table_name = {} AND k.constraint_name = 'PRIMARY'",
        literal(db),
        literal(table)
    ))?;
    if rows.len() != 1 {
        return Ok(None);
    }
    let (column, kind) = (&rows[0][0], rows[0].get(1).map(String::as_str).unwrap_or(""));
    Ok(["tinyint", "smallint", "mediumint", "int", "bigint"]
        .contains(&kind)
        .then(|| column.clone()))
}

/// Assigns weighted items to `workers` bins, largest first into the lightest bin.
fn balance<T>(mut items: Vec<(u64, T)>, workers: usize) -> Vec<Vec<T>> {
    items.sort_by_key(|item| std::cmp::Reverse(item.0));
    let mut bins: Vec<(u64, Vec<T>)> = (0..workers.max(1)).map(|_| (0, Vec::new())).collect();
    for (weight, item) in items {
        if let Some(bin) = bins.iter_mut().min_by_key(|b| b.0) {
            bin.0 += weight.max(1);
            bin.1.push(item);
        }
    }
    bins.into_iter().map(|b| b.1).filter(|b| !b.is_empty()).collect()
}

fn script_file(dir: &Path, name: &str, body: &str) -> Result<File> {
    let path = dir.join(name);
    let mut file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(body.as_bytes())?;
    File::open(&path).with_context(|| format!("opening {}", path.display()))
}

/// Loads `plan` into `target` (whose database must exist and be empty) with
/// `workers` sessions. Returns the measured run (wall time covers all phases).
pub fn load(target: &Server, plan: &FloorPlan, workers: usize, scratch: &Path) -> Result<Measured> {
    fs::create_dir_all(scratch)?;
    let db = ident(&plan.db);
    let session = format!("SET SESSION unique_checks = 0; SET SESSION foreign_key_checks = 0; USE {db};\n");
    // Tables split into several files are created up front; the others by the worker that loads them.
    let mut upfront = session.clone();
    let mut units: Vec<(u64, String)> = Vec::new();
    for table in &plan.tables {
        let load = |path: &Path| {
            format!(
                "LOAD DATA INFILE {} INTO TABLE {} CHARACTER SET binary;\n",
                literal(&path.to_string_lossy()),
                ident(&table.name)
            )
        };
        if table.parts.len() > 1 {
            upfront.push_str(&format!("{};\n", table.create_plain));
            // Parallel loads into one table: with unique_checks=0 MariaDB's
            // bulk insert into an empty table locks the whole table, which
            // serialises the sessions (and can deadlock them).
            for (path, size) in &table.parts {
                units.push((*size, format!("SET SESSION unique_checks = 1;\n{}", load(path))));
            }
        } else {
            let mut unit = format!("SET SESSION unique_checks = 0;\n{};\n", table.create_plain);
            let size = table.parts.iter().map(|p| p.1).sum::<u64>();
            for (path, _) in &table.parts {
                unit.push_str(&load(path));
            }
            units.push((size, unit));
        }
    }
    let indexes: Vec<(u64, String)> = plan
        .tables
        .iter()
        .filter_map(|t| {
            t.add_indexes
                .as_ref()
                .map(|a| (t.parts.iter().map(|p| p.1).sum(), format!("{a};\n")))
        })
        .collect();

    let mut phase_scripts = Vec::new();
    for (phase, items) in [("load", units), ("index", indexes)] {
        let mut files = Vec::new();
        for (n, bin) in balance(items, workers).into_iter().enumerate() {
            let body = format!("{session}{}", bin.concat());
            files.push((
                format!("{phase}-{n}"),
                script_file(scratch, &format!("{phase}-{n}.sql"), &body)?,
            ));
        }
        phase_scripts.push(files);
    }

    let start = Instant::now();
    let mut measured = Measured::default();
    if plan.tables.iter().any(|t| t.parts.len() > 1) {
        target.exec(&upfront)?;
    }
    for files in phase_scripts {
        let cmds = files
            .into_iter()
            .map(|(name, file)| (name, target.client(), Some(file)))
            .collect();
        let phase = run_parallel(cmds)?;
        phase.check()?;
        measured.procs.extend(phase.procs);
        measured.stderr.extend(phase.stderr);
    }
    measured.wall_s = start.elapsed().as_secs_f64();
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondary_indexes_are_split_off() {
        let create = "CREATE TABLE `sbtest1` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `k` int(11) NOT NULL DEFAULT 0,\n  PRIMARY KEY (`id`),\n  KEY `k_1` (`k`),\n  UNIQUE KEY `u` (`k`,`id`)\n) ENGINE=InnoDB";
        let (plain, deferred) = split_create(create);
        assert_eq!(
            plain,
            "CREATE TABLE `sbtest1` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `k` int(11) NOT NULL DEFAULT 0,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"
        );
        assert_eq!(deferred, vec!["ADD KEY `k_1` (`k`)", "ADD UNIQUE KEY `u` (`k`,`id`)"]);
    }

    #[test]
    fn balance_spreads_weight() {
        let bins = balance(vec![(10, 'a'), (9, 'b'), (1, 'c'), (1, 'd')], 2);
        assert_eq!(bins, vec![vec!['a', 'd'], vec!['b', 'c']]);
    }
}
