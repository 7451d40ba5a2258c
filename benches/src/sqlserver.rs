//! The SQL Server dataset, on two Babelfish for PostgreSQL servers (the
//! testkit's; no Microsoft SQL Server runs here): dbferry against what a
//! DBA would use instead, on the same tables in the same run.
//!
//! - `dbferry`: `dbferry run` of the database into an absent destination.
//! - `freebcp`: Debian's `freebcp` (FreeTDS) out of the source into a file
//!   in tmpfs and in to the target, tables in parallel. Into Babelfish 4.3
//!   it fails (the server rejects FreeTDS's bulk-load stream); the failure
//!   is reported with its message, and the comparison falls back on:
//! - `floor`: `freebcp` out to a file, then PostgreSQL's server-side `COPY
//!   FROM` of that file through the target's PostgreSQL port: the whole
//!   move with the server's own ingest, as `LOAD DATA INFILE` is for MySQL.
//! - `copy`: the `COPY FROM` half of the floor alone (the files of the
//!   floor's run), the ingest the target cannot go below.
//!
//! Every run is checked by exact row counts, taken by PostgreSQL. CPU and
//! peak RSS are those of the tool's own processes (`wait4`'s rusage of the
//! shell running them, which includes its children); the servers' CPU is
//! not measured here (PostgreSQL serves each session in its own process).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dbferry_testkit::{babelfish_available, babelfish_prefix, Babelfish, BABELFISH_PASSWORD, BABELFISH_USER};

use crate::measure::{median, run_pipeline, Measured};
use crate::report::{DatasetResult, ToolSummary};
use crate::tools::{render, RunResult};

/// The database copied.
const DB: &str = "bench_sqlserver";
/// Rows per table at scale 1.
const ROWS: f64 = 200_000.0;

/// The tables: name, columns, and the PostgreSQL query that fills them
/// (`$N` is the row count). One takes the bulk path as it is; the other
/// has the decimal and datetime2 columns dbferry stages as text on
/// Babelfish (its bulk load stores them wrong).
const TABLES: [(&str, &str, &str); 2] = [
    (
        "events",
        "id bigint NOT NULL PRIMARY KEY, kind int NOT NULL, score float NOT NULL, \
         body nvarchar(200) NOT NULL, day date NOT NULL",
        "SELECT g, g % 17, g / 3.0, md5(g::text) || ' ' || repeat('é', (g % 50)::int), \
         DATE '2010-01-01' + (g % 5000)::int FROM generate_series(1, $N) g",
    ),
    (
        "orders",
        "id int NOT NULL PRIMARY KEY, customer nvarchar(64) NOT NULL, amount decimal(12,2) NOT NULL, \
         placed date NOT NULL, at datetime2 NOT NULL, note varchar(100) NOT NULL",
        "SELECT g, 'customer ' || (g % 5000) || ' Zoë', (g % 100000) / 7.0, DATE '2000-01-01' + (g % 9000)::int, \
         TIMESTAMP '2020-01-01' + g * interval '1 second', repeat(chr(65 + (g % 26)::int), 60 + (g % 40)::int) \
         FROM generate_series(1, $N) g",
    ),
];

/// The long-values shape's one table: every row holds a 64 MiB value in
/// each `(max)` type (varchar's in bytes, nvarchar's in UTF-16 as sent),
/// filled row by row through T-SQL (see [`Rig::build`]).
const LONG_TABLES: [(&str, &str, &str); 1] = [(
    "blobs",
    "id int NOT NULL PRIMARY KEY, v varchar(max) NOT NULL, n nvarchar(max) NOT NULL, b varbinary(max) NOT NULL",
    "",
)];

/// Bytes of each long value.
const LONG_VALUE_BYTES: u64 = 64 << 20;

/// Which tables the SQL Server dataset holds.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// [`TABLES`], 200k rows each at scale 1, against every contender.
    Tables,
    /// [`LONG_TABLES`] with this many rows, dbferry alone: its peak RSS
    /// with 64 MiB values (freebcp's character files cannot carry them
    /// into Babelfish either way).
    LongValues(u64),
}

impl Shape {
    /// Its tables: name, columns, fill.
    fn tables(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            Shape::Tables => &TABLES,
            Shape::LongValues(_) => &LONG_TABLES,
        }
    }
}

/// What the SQL Server bench needs from the command line.
pub struct Options {
    /// The tables.
    pub shape: Shape,
    /// Multiplies the row counts.
    pub scale: f64,
    /// Runs per tool (the median is reported).
    pub runs: usize,
    /// The dbferry binary (the SQL Server plugin next to it).
    pub dbferry: PathBuf,
    /// dbferry's plugin_dir, if not next to the binary.
    pub plugin_dir: Option<PathBuf>,
    /// dbferry's parallelism.
    pub threads: usize,
    /// dbferry's `verify`.
    pub verify: String,
    /// Build the dataset, print how to run dbferry against it by hand, and
    /// keep both servers up until standard input closes.
    pub hold: bool,
}

/// How dbferry loads the target in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// `COPY` through the target's PostgreSQL port (`postgres_port`).
    Copy,
    /// TDS bulk load only, as without `postgres_port`.
    Tds,
}

/// The two servers, scratch space, and the files the tools share.
struct Rig {
    source: Babelfish,
    target: Babelfish,
    /// Config, job, freetds.conf (on disk).
    scratch: tempfile::TempDir,
    /// The exported files (tmpfs when there is one), readable by the
    /// server user for `COPY FROM`.
    shm: tempfile::TempDir,
    rows_per_table: u64,
    shape: Shape,
}

/// Runs the SQL Server dataset; `None` (after a loud line) without the
/// Babelfish build.
pub fn run(options: &Options) -> Result<Option<DatasetResult>> {
    if !babelfish_available() {
        eprintln!(
            "\n*** SKIPPED the SQL Server dataset: no Babelfish build in {} (run `make babelfish`) ***\n",
            babelfish_prefix().display()
        );
        return Ok(None);
    }
    let started = Instant::now();
    let rows_per_table = match options.shape {
        Shape::Tables => ((ROWS * options.scale).round() as u64).max(1),
        Shape::LongValues(rows) => rows.max(1),
    };
    let tables = options.shape.tables();
    let long_values = matches!(options.shape, Shape::LongValues(_));
    eprintln!("sqlserver: starting two Babelfish servers");
    let (source, target) = std::thread::scope(|s| {
        let a = s.spawn(Babelfish::try_start);
        let b = Babelfish::try_start();
        (a.join(), b)
    });
    let source = source
        .map_err(|_| anyhow::anyhow!("starting the source panicked"))?
        .context("starting the source Babelfish")?;
    let target = target.context("starting the target Babelfish")?;
    let shm_base = Path::new("/dev/shm");
    let shm = if shm_base.is_dir() {
        tempfile::Builder::new()
            .prefix("dbferry-bench-bcp-")
            .tempdir_in(shm_base)
    } else {
        tempfile::Builder::new().prefix("dbferry-bench-bcp-").tempdir()
    }
    .context("creating the export directory")?;
    std::fs::set_permissions(shm.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let rig = Rig {
        source,
        target,
        scratch: tempfile::Builder::new().prefix("dbferry-bench-ss-").tempdir()?,
        shm,
        rows_per_table,
        shape: options.shape,
    };
    eprintln!(
        "sqlserver: building {} rows in each of {} tables",
        rows_per_table,
        tables.len()
    );
    rig.build()?;
    let build_s = started.elapsed().as_secs_f64();
    let stored_bytes: u64 = rig
        .source
        .pg(&format!(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = '{}' AND c.relkind = 'r'",
            rig.source.pg_schema(DB, "dbo")
        ))
        .parse()
        .unwrap_or(0);
    rig.write_freetds_conf()?;
    if options.hold {
        rig.hold(options)?;
        return Ok(None);
    }

    let tools: [(&str, &str); 5] = [
        ("dbferry", "dbferry (COPY through the target's PostgreSQL port)"),
        ("freebcp", "freebcp out + freebcp in"),
        ("floor", "floor (freebcp out + COPY FROM)"),
        ("dbferry-tds", "dbferry over TDS only (no postgres_port)"),
        ("copy", "COPY FROM alone"),
    ];
    let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); tools.len()];
    let mut errors: Vec<Option<String>> = vec![None; tools.len()];
    for round in 0..options.runs {
        // The order rotates so no tool always goes first; `copy` needs the
        // floor's files, so it always follows the floor. Long values have
        // dbferry's two write paths alone: the point is dbferry's memory.
        let mut order: Vec<usize> = vec![0, 1, 2, 3];
        order.rotate_left(round % 4);
        order.push(4);
        if long_values {
            order = vec![0, 3];
            order.rotate_left(round % 2);
        }
        for index in order {
            if errors[index].is_some() && index == 1 {
                // freebcp in fails the same way every time: once is the report.
                continue;
            }
            let key = tools[index].0;
            let outcome = match key {
                "dbferry" => rig.dbferry(options, Load::Copy),
                "dbferry-tds" => rig.dbferry(options, Load::Tds),
                "freebcp" => rig.freebcp(),
                "floor" => rig.floor(),
                _ => rig.copy_only(),
            };
            match outcome {
                Ok(run) => {
                    eprintln!(
                        "  [sqlserver] round {} {:<8}: {:>8.2} s  cpu {:>6.1} s  rss {:>7.1} MiB",
                        round + 1,
                        key,
                        run.wall_s,
                        run.tool_cpu_s,
                        run.tool_max_rss_kib as f64 / 1024.0
                    );
                    runs[index].push(run);
                }
                Err(error) => {
                    let message = format!("{error:#}");
                    eprintln!("  [sqlserver] round {} {key:<8}: FAILED: {message}", round + 1);
                    errors[index] = Some(message);
                }
            }
        }
    }

    let rows = rows_per_table * tables.len() as u64;
    let (logical_bytes, variant, description) = if long_values {
        (
            rows * 3 * LONG_VALUE_BYTES,
            "long".to_string(),
            format!(
                "SQL Server long values on Babelfish 4.3: {rows_per_table} rows, each a 64 MiB varchar(max), \
                 nvarchar(max) and varbinary(max) value"
            ),
        )
    } else {
        (
            rig.exported_bytes(),
            String::new(),
            format!(
                "SQL Server dataset on Babelfish 4.3: {} tables of {rows_per_table} rows (int/bigint keys, nvarchar \
                 with non-ASCII text, varchar, float, decimal, date, datetime2)",
                tables.len()
            ),
        )
    };
    let mut result = DatasetResult {
        dataset: "s".into(),
        flavour: "babelfish".into(),
        variant,
        description,
        scale: options.scale,
        runs_requested: options.runs,
        tables: tables.len(),
        rows,
        logical_bytes,
        stored_bytes,
        build_s,
        environment: environment(&rig),
        tools: Vec::new(),
        scaling: Vec::new(),
    };
    for (index, (key, label)) in tools.iter().enumerate() {
        if long_values && index > 0 {
            continue;
        }
        result.tools.push(summary(
            key,
            label,
            std::mem::take(&mut runs[index]),
            errors[index].take(),
            rows,
            logical_bytes,
        ));
    }
    result.finish();
    print!("{}", ratios(&result));
    Ok(Some(result))
}

/// dbferry's wall time, CPU and peak RSS over each other tool's, printed
/// after the run (the shared table has columns for the MySQL contenders).
pub fn ratios(result: &DatasetResult) -> String {
    let mut out =
        String::from("\n== SQL Server on Babelfish: dbferry over each contender (wall / CPU / peak RSS) ==\n");
    let Some(dbferry) = result.tools.iter().find(|t| t.tool == "dbferry") else {
        return out;
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_string(),
    };
    for other in result.tools.iter().filter(|t| t.tool != "dbferry") {
        let _ = writeln!(
            out,
            "  vs {:<34} wall {:>7}  CPU {:>7}  RSS {:>7}{}",
            other.label,
            ratio(dbferry.median_wall_s, other.median_wall_s),
            ratio(dbferry.median_tool_cpu_s, other.median_tool_cpu_s),
            ratio(dbferry.peak_rss_mib, other.peak_rss_mib),
            other
                .error
                .as_deref()
                .map(|e| format!("  (it FAILED: {})", e.lines().last().unwrap_or(e)))
                .unwrap_or_default()
        );
    }
    out
}

/// A [`ToolSummary`] for a tool of this dataset (ratios are filled by
/// [`DatasetResult::finish`]).
fn summary(key: &str, label: &str, runs: Vec<RunResult>, error: Option<String>, rows: u64, bytes: u64) -> ToolSummary {
    let wall = median(&runs.iter().map(|r| r.wall_s).collect::<Vec<_>>());
    ToolSummary {
        tool: key.into(),
        label: label.into(),
        commands: runs.first().map(|r| r.commands.clone()).unwrap_or_default(),
        median_wall_s: wall,
        rows_per_s: wall.map(|w| rows as f64 / w),
        mb_per_s: wall.map(|w| bytes as f64 / 1e6 / w),
        median_tool_cpu_s: median(&runs.iter().map(|r| r.tool_cpu_s).collect::<Vec<_>>()),
        median_server_cpu_s: None,
        peak_rss_mib: runs.iter().map(|r| r.tool_max_rss_kib as f64 / 1024.0).reduce(f64::max),
        runs,
        error,
        ..ToolSummary::default()
    }
}

fn environment(rig: &Rig) -> Vec<(String, String)> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let version = rig
        .source
        .try_tsql("SELECT CAST(SERVERPROPERTY('BabelfishVersion') AS varchar(40))")
        .ok()
        .and_then(|rows| rows.into_iter().next()?.into_iter().next())
        .unwrap_or_default();
    let freebcp = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "freetds-bin"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    vec![
        ("cores".into(), cores.to_string()),
        ("babelfish".into(), version),
        ("freetds-bin".into(), freebcp),
    ]
}

impl Rig {
    fn build(&self) -> Result<()> {
        self.source.drop_database(DB);
        self.source.try_tsql(&format!("CREATE DATABASE {DB}"))?;
        let schema = self.source.pg_schema(DB, "dbo");
        for (table, columns, fill) in self.shape.tables() {
            self.source
                .try_tsql(&format!("USE {DB}; CREATE TABLE dbo.{table} ({columns})"))?;
            if matches!(self.shape, Shape::LongValues(_)) {
                self.build_long_rows(table)?;
                continue;
            }
            let fill = fill.replace("$N", &self.rows_per_table.to_string());
            self.source.try_pg(
                dbferry_testkit::BABELFISH_PG_DATABASE,
                &format!("INSERT INTO \"{schema}\".{table} {fill}; ANALYZE \"{schema}\".{table}"),
            )?;
        }
        Ok(())
    }

    /// The long-values rows, one T-SQL insert each: varchar with a byte
    /// of the code page past ASCII, nvarchar with text past the BMP's
    /// ASCII, varbinary with every digit.
    fn build_long_rows(&self, table: &str) -> Result<()> {
        let bytes = LONG_VALUE_BYTES;
        for id in 1..=self.rows_per_table {
            self.source.try_tsql(&format!(
                "USE {DB}; INSERT INTO dbo.{table} VALUES ({id}, \
                 LEFT(REPLICATE(CAST('abcdé-{id}' AS varchar(max)), {}), {bytes}), \
                 LEFT(REPLICATE(CAST(N'Zoë日本-{id}' AS nvarchar(max)), {}), {}), \
                 CAST(LEFT(REPLICATE(CAST('0123456789' AS varchar(max)), {}), {bytes}) AS varbinary(max)))",
                bytes / 6 + 1,
                bytes / 12 + 1,
                bytes / 2,
                bytes / 10 + 1,
            ))?;
        }
        Ok(())
    }

    /// An empty target: the database absent (`dbferry`) or present with
    /// empty tables (`freebcp` and the floor load into existing tables).
    fn reset_target(&self, with_tables: bool) -> Result<()> {
        self.target.drop_database(DB);
        if with_tables {
            self.target.try_tsql(&format!("CREATE DATABASE {DB}"))?;
            for (table, columns, _) in self.shape.tables() {
                self.target
                    .try_tsql(&format!("USE {DB}; CREATE TABLE dbo.{table} ({columns})"))?;
            }
        }
        Ok(())
    }

    /// Exact row counts of every table on the target, checked against the source's.
    fn check_counts(&self) -> Result<()> {
        let schema = self.target.pg_schema(DB, "dbo");
        for (table, _, _) in self.shape.tables() {
            let count: u64 = self
                .target
                .try_pg(
                    dbferry_testkit::BABELFISH_PG_DATABASE,
                    &format!("SELECT count(*) FROM \"{schema}\".{table}"),
                )?
                .parse()
                .context("a row count")?;
            if count != self.rows_per_table {
                bail!(
                    "the target's {table} holds {count} rows, the source's {}",
                    self.rows_per_table
                );
            }
        }
        Ok(())
    }

    fn write_freetds_conf(&self) -> Result<()> {
        let mut conf =
            String::from("[global]\n\ttds version = 7.4\n\tencryption = require\n\tclient charset = UTF-8\n");
        for (name, server) in [("source", &self.source), ("target", &self.target)] {
            let _ = write!(conf, "[{name}]\n\thost = 127.0.0.1\n\tport = {}\n", server.tds_port());
        }
        std::fs::write(self.scratch.path().join("freetds.conf"), conf)?;
        Ok(())
    }

    /// A `freebcp` line. The database is given with `-D` and the table by
    /// two-part name: with a three-part name Babelfish refuses the load
    /// ("permission denied for table"); with `-D` it takes the stream and
    /// then fails near its end ("Trying to read more data than available in
    /// BCP request"), whatever the batch size (1,000 to all rows), packet
    /// size (`-A 32767`), `-h TABLOCK` or TDS version (7.1 to 7.4).
    fn bcp(&self, table: &str, direction: &str, server: &str) -> String {
        format!(
            "freebcp dbo.{table} {direction} {dir}/{table}.dat -c -S {server} -D {DB} -U {BABELFISH_USER} -P {BABELFISH_PASSWORD} -b 50000",
            dir = self.shm.path().display()
        )
    }

    fn copy_from(&self, table: &str) -> String {
        let schema = self.target.pg_schema(DB, "dbo");
        format!(
            "{psql} -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p {port} -U postgres -d {db} -c \"COPY \\\"{schema}\\\".{table} FROM '{dir}/{table}.dat'\"",
            psql = babelfish_prefix().join("bin/psql").display(),
            port = self.target.pg_port(),
            db = dbferry_testkit::BABELFISH_PG_DATABASE,
            dir = self.shm.path().display()
        )
    }

    /// Runs `steps` (one shell line per table, run in parallel) in one
    /// measured shell; fails if any line fails.
    fn measure_shell(&self, steps: &[String]) -> Result<RunResult> {
        let mut script = String::from("rc=0\n");
        for (n, step) in steps.iter().enumerate() {
            let _ = writeln!(
                script,
                "( {step} ) > {dir}/step{n}.log 2>&1 &\np{n}=$!",
                dir = self.scratch.path().display()
            );
        }
        for n in 0..steps.len() {
            let _ = writeln!(
                script,
                "wait $p{n} || {{ rc=1; grep -v -e '^$' -e 'Changed database context' -e 'Starting copy' {dir}/step{n}.log | tail -6 >&2; }}",
                dir = self.scratch.path().display()
            );
        }
        script.push_str("exit $rc\n");
        let mut shell = Command::new("sh");
        shell
            .args(["-c", &script])
            .env("FREETDSCONF", self.scratch.path().join("freetds.conf"));
        let measured = run_pipeline(vec![("sh", shell)], None)?;
        measured.check()?;
        Ok(one_process_result(measured, steps.to_vec()))
    }

    /// `--hold`: dbferry's files and a script that empties the target,
    /// printed; both servers up until standard input closes.
    fn hold(&self, options: &Options) -> Result<()> {
        let command = self.dbferry_files(options, Load::Copy)?;
        let reset = self.scratch.path().join("reset-target.sh");
        std::fs::write(
            &reset,
            format!(
                "#!/bin/sh\nprintf \"IF DB_ID(N'{DB}') IS NOT NULL DROP DATABASE [{DB}]\\ngo\\n\" | \
                 FREETDSCONF={conf} tsql -S target -U {BABELFISH_USER} -P {BABELFISH_PASSWORD} -o q\n",
                conf = self.scratch.path().join("freetds.conf").display()
            ),
        )?;
        println!("reset the target:  sh {}", reset.display());
        println!("run dbferry:       {}", render(&command));
        println!(
            "PostgreSQL ports:  source {}, target {} (user postgres, database {})",
            self.source.pg_port(),
            self.target.pg_port(),
            dbferry_testkit::BABELFISH_PG_DATABASE
        );
        println!("holding; close standard input (Ctrl-D) to stop the servers");
        std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
        Ok(())
    }

    fn dbferry(&self, options: &Options, load: Load) -> Result<RunResult> {
        self.reset_target(false)?;
        let command = self.dbferry_files(options, load)?;
        let rendered = render(&command);
        let measured = run_pipeline(vec![("dbferry", command)], None)?;
        measured.check()?;
        self.check_counts()?;
        Ok(one_process_result(measured, vec![rendered]))
    }

    /// Writes dbferry's config and job for `load`; the command that runs them.
    fn dbferry_files(&self, options: &Options, load: Load) -> Result<Command> {
        let dir = self.scratch.path();
        std::fs::write(dir.join("password"), BABELFISH_PASSWORD)?;
        std::fs::set_permissions(
            dir.join("password"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        std::fs::create_dir_all(dir.join("jobs.d"))?;
        std::fs::create_dir_all(dir.join("state"))?;
        let mut config = format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\njobs_dir = \"{d}/jobs.d\"\nstate_dir = \"{d}/state\"\n",
            d = dir.display()
        );
        if let Some(plugins) = &options.plugin_dir {
            let _ = writeln!(config, "plugin_dir = \"{}\"", plugins.display());
        }
        for (id, server) in [("bf-source", &self.source), ("bf-target", &self.target)] {
            let _ = write!(
                config,
                "\n[[instances]]\nid = \"{id}\"\nengine = \"sqlserver\"\nowner = \"1\"\ncategory = \"dedicated\"\n\
                 storage_gb = 1000\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{BABELFISH_USER}\"\n\
                 password_file = \"{}/password\"\ntls = \"trust\"\n",
                server.tds_port(),
                dir.display()
            );
            if load == Load::Copy {
                let _ = writeln!(config, "postgres_port = {}", server.pg_port());
            }
        }
        std::fs::write(dir.join("dbferry.toml"), config)?;
        std::fs::write(
            dir.join("job.toml"),
            format!(
                "db_instance_id = \"bf-target\"\nsource_db_instance_id = \"bf-source\"\nowner = \"1\"\n\
                 db_info = '{{\"DBNames\":{{\"{DB}\":\"{DB}\"}}}}'\n\n[options]\nparallelism = {}\nverify = \"{}\"\n",
                options.threads, options.verify
            ),
        )?;
        let mut command = Command::new(&options.dbferry);
        command
            .args(["run", "--json", "--config"])
            .arg(dir.join("dbferry.toml"))
            .arg(dir.join("job.toml"));
        Ok(command)
    }

    fn freebcp(&self) -> Result<RunResult> {
        self.reset_target(true)?;
        let steps: Vec<String> = self
            .shape
            .tables()
            .iter()
            .map(|(t, _, _)| format!("{} && {}", self.bcp(t, "out", "source"), self.bcp(t, "in", "target")))
            .collect();
        let run = self.measure_shell(&steps)?;
        self.check_counts()?;
        Ok(run)
    }

    fn floor(&self) -> Result<RunResult> {
        self.reset_target(true)?;
        let steps: Vec<String> = self
            .shape
            .tables()
            .iter()
            .map(|(t, _, _)| format!("{} && {}", self.bcp(t, "out", "source"), self.copy_from(t)))
            .collect();
        let run = self.measure_shell(&steps)?;
        self.check_counts()?;
        Ok(run)
    }

    fn copy_only(&self) -> Result<RunResult> {
        self.reset_target(true)?;
        if self
            .shape
            .tables()
            .iter()
            .any(|(t, _, _)| !self.shm.path().join(format!("{t}.dat")).is_file())
        {
            bail!("no exported files: the floor's run failed");
        }
        let steps: Vec<String> = self.shape.tables().iter().map(|(t, _, _)| self.copy_from(t)).collect();
        let run = self.measure_shell(&steps)?;
        self.check_counts()?;
        Ok(run)
    }

    /// Bytes of the character files `freebcp` exported (what MB/s refers to).
    fn exported_bytes(&self) -> u64 {
        self.shape
            .tables()
            .iter()
            .filter_map(|(t, _, _)| std::fs::metadata(self.shm.path().join(format!("{t}.dat"))).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// A run measured as one process tree (the tool, or the shell running the
/// tools): its time, CPU and peak RSS; the servers' CPU is not measured here.
fn one_process_result(measured: Measured, commands: Vec<String>) -> RunResult {
    let proc = measured.procs.first().cloned().unwrap_or_default();
    RunResult {
        wall_s: measured.wall_s,
        tool_cpu_s: proc.cpu_s(),
        tool_max_rss_kib: proc.max_rss_kib,
        server_cpu_s: 0.0,
        procs: measured.procs,
        commands,
    }
}
