//! The contenders, each copying one dataset's database from the source to an
//! empty database of the same name on the target:
//!
//! - `dbferry`: `dbferry run --json --config C JOB` (parallelism as given, `verify = "count"`);
//! - `mariadb-dump`: `mariadb-dump --single-transaction DB | mariadb DB`
//!   (`mysqldump | mysql` on MySQL);
//! - `pipe`: the stock-client pipe a DBA would script: per table,
//!   `mariadb --quick -e 'SELECT * FROM t' | mariadb -e 'LOAD DATA LOCAL INFILE ...'`,
//!   `threads` tables at a time, into tables created without their secondary
//!   indexes, which are added afterwards;
//! - `mydumper`: Debian's mydumper 0.10, `mydumper --threads 4 --rows R -o /dev/shm/...`
//!   then `myloader --threads 4 -d ...`;
//! - `mydumper-stream`: current mydumper (1.x, built by `../shared/mydumper/build.sh`
//!   into `$MYDUMPER_PREFIX`, default `/var/cache/dbferry-mydumper`) streaming
//!   instance to instance: `mydumper --stream --format=LOAD_DATA | myloader --stream`;
//! - `floor`: see [`crate::floor`].
//!
//! Every run starts from a freshly dropped and re-created target database and
//! ends with an exact `COUNT(*)` of every table on the target (not timed).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::datasets::{Dataset, DatasetInfo};
use crate::floor::{self, FloorPlan};
use crate::measure::{run_pipeline, tail, Measured};
use crate::server::{ident, Flavour};
use crate::server::{Server, PASSWORD, USER};

/// A contender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tool {
    /// `dbferry run`.
    Dbferry,
    /// `mariadb-dump | mariadb`.
    MariadbDump,
    /// The stock-client pipe, tables in parallel, indexes after.
    Pipe,
    /// Debian's `mydumper` + `myloader` (0.10), through files in tmpfs.
    Mydumper,
    /// Current `mydumper | myloader`, streaming.
    MydumperStream,
    /// Server-side `LOAD DATA INFILE` of pre-exported files.
    Floor,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 6] = [
        Tool::Dbferry,
        Tool::MariadbDump,
        Tool::Pipe,
        Tool::Mydumper,
        Tool::MydumperStream,
        Tool::Floor,
    ];

    /// The key used on the command line and in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Tool::Dbferry => "dbferry",
            Tool::MariadbDump => "mariadb-dump",
            Tool::Pipe => "pipe",
            Tool::Mydumper => "mydumper",
            Tool::MydumperStream => "mydumper-stream",
            Tool::Floor => "floor",
        }
    }

    /// A label for tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Dbferry => "dbferry",
            Tool::MariadbDump => "dump | client",
            Tool::Pipe => "client pipe (LOAD DATA LOCAL)",
            Tool::Mydumper => "mydumper + myloader 0.10",
            Tool::MydumperStream => "mydumper 1.x streaming",
            Tool::Floor => "floor (LOAD DATA INFILE)",
        }
    }

    /// Parses a key.
    pub fn parse(text: &str) -> Result<Self> {
        Tool::ALL.into_iter().find(|t| t.key() == text.trim()).ok_or_else(|| {
            anyhow!("unknown tool {text:?} (expected dbferry, mariadb-dump, pipe, mydumper, mydumper-stream or floor)")
        })
    }
}

/// One measured run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Wall seconds.
    pub wall_s: f64,
    /// CPU seconds (user + system) of the tool's own processes.
    pub tool_cpu_s: f64,
    /// Peak RSS of the tool's largest process, KiB.
    pub tool_max_rss_kib: u64,
    /// CPU seconds both servers used during the run.
    pub server_cpu_s: f64,
    /// Per process usage.
    pub procs: Vec<crate::measure::ProcUsage>,
    /// The command lines run.
    pub commands: Vec<String>,
}

/// What the tools share.
pub struct Bench<'a> {
    /// The source server (holds the datasets).
    pub source: &'a Server,
    /// The target server.
    pub target: &'a Server,
    /// Scratch space on disk (configs, scripts).
    pub scratch: PathBuf,
    /// Scratch space in tmpfs (mydumper's dump).
    pub shm: PathBuf,
    /// The `dbferry` binary.
    pub dbferry: PathBuf,
    /// `plugin_dir` for dbferry's config, when not next to the binary.
    pub plugin_dir: Option<PathBuf>,
    /// Threads for mydumper, myloader and the floor.
    pub threads: usize,
    /// mydumper's `--rows` (chunk size); 0 leaves tables whole.
    pub mydumper_rows: u64,
    /// Current mydumper's directory of `mydumper` and `myloader`.
    pub mydumper_stream_bin: PathBuf,
    /// dbferry's `verify` option (`count` or `checksum`).
    pub verify: String,
    /// dbferry's per-instance `tls` mode, when one is set.
    pub tls: Option<String>,
}

pub(crate) fn render(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

impl Bench<'_> {
    /// Runs `tool` once on `dataset`: empties the target database, copies,
    /// and checks every table's row count on the target.
    pub fn run(
        &self,
        tool: Tool,
        dataset: Dataset,
        info: &DatasetInfo,
        plan: Option<&FloorPlan>,
        parallelism: usize,
    ) -> Result<RunResult> {
        let db = dataset.database();
        self.target.recreate_database(db)?;
        // Let the target finish dropping the previous copy's files, and
        // both servers write out what the last run or the load left dirty.
        std::thread::sleep(std::time::Duration::from_millis(500));
        self.source.settle()?;
        self.target.settle()?;
        let cpu_before = self.source.cpu_seconds()? + self.target.cpu_seconds()?;
        let (measured, commands) = match tool {
            Tool::Dbferry => self.dbferry(dataset, info, parallelism)?,
            Tool::MariadbDump => self.mariadb_dump(db)?,
            Tool::Pipe => {
                let plan = plan.context("the pipe creates its tables from the floor's export")?;
                self.pipe(plan, parallelism)?
            }
            Tool::Mydumper => self.mydumper(db)?,
            Tool::MydumperStream => self.mydumper_stream(db)?,
            Tool::Floor => {
                let plan = plan.context("the floor needs its export")?;
                let measured = floor::load(self.target, plan, parallelism, &self.scratch.join("floor"))?;
                (
                    measured,
                    vec![format!(
                        "LOAD DATA INFILE x {} parts, {parallelism} sessions; then ALTER TABLE ADD KEY",
                        plan.tables.iter().map(|t| t.parts.len()).sum::<usize>()
                    )],
                )
            }
        };
        let server_cpu_s = self.source.cpu_seconds()? + self.target.cpu_seconds()? - cpu_before;
        let copied = self.target.exact_counts(db)?;
        if copied != info.tables {
            let expected: u64 = info.tables.iter().map(|t| t.1).sum();
            let got: u64 = copied.iter().map(|t| t.1).sum();
            bail!(
                "{}: the target does not match the source: {} tables / {got} rows, expected {} tables / {expected} rows",
                tool.key(),
                copied.len(),
                info.tables.len()
            );
        }
        Ok(RunResult {
            wall_s: measured.wall_s,
            tool_cpu_s: measured.procs.iter().map(|p| p.cpu_s()).sum(),
            tool_max_rss_kib: measured.procs.iter().map(|p| p.max_rss_kib).max().unwrap_or(0),
            server_cpu_s,
            procs: measured.procs,
            commands,
        })
    }

    fn dbferry(&self, dataset: Dataset, info: &DatasetInfo, parallelism: usize) -> Result<(Measured, Vec<String>)> {
        if !self.dbferry.is_file() {
            bail!(
                "dbferry binary not found at {}: build it with `cargo build --release -p dbferry -p dbferry-mysql`, or pass --dbferry PATH",
                self.dbferry.display()
            );
        }
        let (config, job) = self.dbferry_files(dataset.database(), parallelism)?;
        let mut cmd = Command::new(&self.dbferry);
        cmd.arg("run").arg("--json").arg("--config").arg(&config).arg(&job);
        let commands = vec![render(&cmd)];
        let measured = run_pipeline(vec![("dbferry", cmd)], None)?;
        let stdout = String::from_utf8_lossy(&measured.stdout);
        let last = stdout.lines().rev().find_map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(|v| v.get("Status").is_some())
        });
        let stderr = measured.stderr.first().map(|s| tail(s, 20)).unwrap_or_default();
        let Some(result) = last else {
            bail!(
                "dbferry exited {} without a final JSON result\nstdout: {}\nstderr: {stderr}",
                measured.procs[0].exit,
                tail(&stdout, 10)
            );
        };
        if result["Status"] != "Success" || !measured.success() {
            bail!(
                "dbferry exited {}: {} ({}: {})\nstderr: {stderr}",
                measured.procs[0].exit,
                result["Status"],
                result["Code"],
                result["Message"]
            );
        }
        if result["Rows"].as_u64() != Some(info.rows) {
            bail!("dbferry reports {} rows, the source has {}", result["Rows"], info.rows);
        }
        let mut commands = commands;
        commands.push(reader_note(&result));
        Ok((measured, commands))
    }

    /// Writes dbferry's config (two `dedicated` instances, secret files 0600) and a job.
    pub fn dbferry_files(&self, db: &str, parallelism: usize) -> Result<(PathBuf, PathBuf)> {
        let dir = self.scratch.join("dbferry");
        for sub in ["secrets", "jobs.d", "state"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let secret = dir.join("secrets").join("root");
        fs::write(&secret, PASSWORD)?;
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600))?;
        let q = |p: &Path| toml_string(&p.to_string_lossy());
        let mut config = format!(
            "[daemon]\njobs_dir = {}\nstate_dir = {}\n",
            q(&dir.join("jobs.d")),
            q(&dir.join("state"))
        );
        if let Some(plugins) = &self.plugin_dir {
            config.push_str(&format!("plugin_dir = {}\n", q(plugins)));
        }
        let tls = self
            .tls
            .as_ref()
            .map(|mode| format!("tls = {}\n", toml_string(mode)))
            .unwrap_or_default();
        for (id, server) in [("bench-source", self.source), ("bench-target", self.target)] {
            config.push_str(&format!(
                "\n[[instances]]\nid = \"{id}\"\nengine = \"mysql\"\nowner = \"bench\"\ncategory = \"dedicated\"\n\
                 storage_gb = 100000\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\npassword_file = {}\n{tls}",
                server.port,
                q(&secret)
            ));
        }
        let config_path = dir.join("dbferry.toml");
        fs::write(&config_path, config)?;
        let job = format!(
            "db_instance_id = \"bench-target\"\nsource_db_instance_id = \"bench-source\"\nowner = \"bench\"\n\
             db_info = '{{\"DBNames\":[\"{db}\"]}}'\n\n[options]\nparallelism = {parallelism}\nverify = {}\n",
            toml_string(&self.verify)
        );
        let job_path = dir.join(format!("{db}-p{parallelism}.toml"));
        fs::write(&job_path, job)?;
        Ok((config_path, job_path))
    }

    fn mariadb_dump(&self, db: &str) -> Result<(Measured, Vec<String>)> {
        let flavour = self.source.flavour;
        let mut dump = Command::new(flavour.program("mariadb-dump"));
        dump.arg("--no-defaults")
            .args(self.source.tcp_args())
            .arg("--single-transaction")
            .arg(db);
        let mut load = Command::new(flavour.program("mariadb"));
        load.arg("--no-defaults").args(self.target.tcp_args()).arg(db);
        let commands = vec![format!("{} | {}", render(&dump), render(&load))];
        let measured = run_pipeline(vec![("mariadb-dump", dump), ("mariadb", load)], None)?;
        measured.check()?;
        Ok((measured, commands))
    }

    fn mydumper(&self, db: &str) -> Result<(Measured, Vec<String>)> {
        let dir = self.shm.join("mydumper");
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        let threads = self.threads.to_string();
        let mut dump = Command::new("mydumper");
        dump.args(self.source.tcp_args())
            .arg(format!("--database={db}"))
            .arg(format!("--threads={threads}"))
            .arg(format!("--outputdir={}", dir.display()))
            .arg("--verbose=1");
        if self.mydumper_rows > 0 {
            dump.arg(format!("--rows={}", self.mydumper_rows));
        }
        let mut load = Command::new("myloader");
        load.args(self.target.tcp_args())
            .arg(format!("--directory={}", dir.display()))
            .arg(format!("--database={db}"))
            .arg(format!("--threads={threads}"))
            .arg("--verbose=1");
        let commands = vec![render(&dump), render(&load)];
        let dumped = run_pipeline(vec![("mydumper", dump)], None)?;
        dumped.check()?;
        let loaded = run_pipeline(vec![("myloader", load)], None)?;
        let _ = fs::remove_dir_all(&dir);
        loaded.check()?;
        let mut measured = dumped;
        measured.wall_s += loaded.wall_s;
        measured.procs.extend(loaded.procs);
        measured.stderr.extend(loaded.stderr);
        Ok((measured, commands))
    }
}

impl Bench<'_> {
    /// The stock-client pipe: the tables are created without their secondary
    /// indexes, then each is streamed by one client into another's `LOAD
    /// DATA LOCAL INFILE`, `workers` tables at a time, then the indexes are
    /// added, tables in parallel. The reading client's `--batch` output
    /// escapes tab, newline, backslash and NUL exactly as `LOAD DATA`'s
    /// defaults expect.
    fn pipe(&self, plan: &FloorPlan, workers: usize) -> Result<(Measured, Vec<String>)> {
        let flavour = self.source.flavour;
        let client = flavour.program("mariadb");
        let source = self.source.tcp_args().join(" ");
        let target = self.target.tcp_args().join(" ");
        let db = ident(&plan.db);
        let scratch = self.scratch.join("pipe");
        fs::create_dir_all(&scratch)?;
        let creates: String = plan.tables.iter().map(|t| format!("{};\n", t.create_plain)).collect();
        let mut bins: Vec<Vec<String>> = vec![Vec::new(); workers.max(1)];
        let mut weights = vec![0u64; bins.len()];
        let mut tables: Vec<_> = plan.tables.iter().collect();
        tables.sort_by_key(|t| std::cmp::Reverse(t.parts.iter().map(|p| p.1).sum::<u64>()));
        for table in tables {
            let lightest = (0..bins.len()).min_by_key(|&i| weights[i]).unwrap_or(0);
            weights[lightest] += table.parts.iter().map(|p| p.1).sum::<u64>().max(1);
            let name = ident(&table.name);
            let select = format!("SELECT * FROM {db}.{name}");
            let load = format!(
                "SET SESSION unique_checks = 0; SET SESSION foreign_key_checks = 0; \
                 LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE {db}.{name} CHARACTER SET binary"
            );
            bins[lightest].push(format!(
                "{client} --no-defaults {source} --quick --batch --skip-column-names \
                 --default-character-set=utf8mb4 -e {} | {client} --no-defaults {target} --local-infile=1 -e {}",
                shell_quote(&select),
                shell_quote(&load),
                client = client.display()
            ));
        }
        let indexes: Vec<String> = plan.tables.iter().filter_map(|t| t.add_indexes.clone()).collect();
        let mut measured = Measured::default();
        let start = std::time::Instant::now();
        let created = run_pipeline(
            vec![("create", self.target_script(&format!("USE {db};\n{creates}")))],
            None,
        )?;
        created.check()?;
        measured.procs.extend(created.procs);
        let copy = bins
            .into_iter()
            .filter(|b| !b.is_empty())
            .enumerate()
            .map(|(n, bin)| {
                let mut sh = Command::new("sh");
                sh.arg("-ec").arg(bin.join("\n"));
                (format!("pipe-{n}"), sh, None)
            })
            .collect();
        let copied = crate::measure::run_parallel(copy)?;
        copied.check()?;
        measured.procs.extend(copied.procs);
        let index = indexes
            .iter()
            .enumerate()
            .map(|(n, alter)| (format!("index-{n}"), self.target_script(&format!("{alter};")), None))
            .collect();
        let indexed = crate::measure::run_parallel(index)?;
        indexed.check()?;
        measured.procs.extend(indexed.procs);
        measured.wall_s = start.elapsed().as_secs_f64();
        Ok((measured, vec![format!("per table, {workers} at a time: {client} --quick --batch -e 'SELECT * FROM t' | {client} --local-infile=1 -e \"LOAD DATA LOCAL INFILE '/dev/stdin' ...\"; then ALTER TABLE ADD KEY", client = client.display())]))
    }

    /// The settings mydumper 1.0.1 needs to dump from MySQL 9.7, in a
    /// defaults file. It sizes chunks from `EXPLAIN`'s `rows` column, and
    /// MySQL 9.x answers `EXPLAIN` in TREE format by default, which has none:
    /// mydumper then crashes (or, in other builds, dumps no rows). A
    /// session's `explain_format = TRADITIONAL` restores the column. Debian's
    /// MySQL says `(Debian)` in `@@version_comment`, so mydumper does not
    /// recognise MySQL, asks `SHOW MASTER STATUS` (removed in 8.4), and counts
    /// the syntax error (1064) as a failure of the whole dump unless told to
    /// ignore it; the rows it copied are still counted after every run.
    fn mydumper_on_mysql_defaults(&self) -> Result<PathBuf> {
        let path = self.shm.join("mydumper-on-mysql.cnf");
        fs::write(&path, "[mydumper_session_variables]\nexplain_format = TRADITIONAL\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A client on the target that runs `script` given on its command line.
    fn target_script(&self, script: &str) -> Command {
        let mut cmd = Command::new(self.target.flavour.program("mariadb"));
        cmd.arg("--no-defaults")
            .args(self.target.tcp_args())
            .arg("-e")
            .arg(script);
        cmd
    }

    /// Current mydumper streaming straight into myloader.
    fn mydumper_stream(&self, db: &str) -> Result<(Measured, Vec<String>)> {
        let (mydumper, myloader) = (
            self.mydumper_stream_bin.join("mydumper"),
            self.mydumper_stream_bin.join("myloader"),
        );
        if !myloader.is_file() {
            bail!(
                "{} is missing: build current mydumper with ../shared/mydumper/build.sh (MYDUMPER_PREFIX={})",
                myloader.display(),
                self.mydumper_stream_bin
                    .parent()
                    .unwrap_or(&self.mydumper_stream_bin)
                    .display()
            );
        }
        let dump_dir = self.shm.join("mydumper-stream-out");
        let load_dir = self.shm.join("mydumper-stream-in");
        for dir in [&dump_dir, &load_dir] {
            if dir.exists() {
                fs::remove_dir_all(dir)?;
            }
        }
        let threads = self.threads.to_string();
        let mut dump = Command::new(&mydumper);
        if self.source.flavour == Flavour::MySql {
            dump.arg(format!(
                "--defaults-file={}",
                self.mydumper_on_mysql_defaults()?.display()
            ))
            .arg("--ignore-errors=1064");
        }
        dump.args(self.source.tcp_args())
            .arg(format!("--database={db}"))
            .arg(format!("--threads={threads}"))
            .arg(format!("--rows={}", self.mydumper_rows.max(1)))
            .arg("--format=LOAD_DATA")
            .arg("--stream")
            .arg(format!("--outputdir={}", dump_dir.display()))
            .arg("--verbose=1");
        let mut load = Command::new(&myloader);
        load.args(self.target.tcp_args())
            .arg(format!("--threads={threads}"))
            .arg("--stream")
            .arg(format!("--directory={}", load_dir.display()))
            .arg("--verbose=1");
        let commands = vec![format!("{} | {}", render(&dump), render(&load))];
        let measured = run_pipeline(vec![("mydumper", dump), ("myloader", load)], None)?;
        for dir in [&dump_dir, &load_dir] {
            let _ = fs::remove_dir_all(dir);
        }
        measured.check()?;
        Ok((measured, commands))
    }
}

/// `text` as one single-quoted `sh` word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Which reader dbferry's snapshot used, and how it held the source still,
/// from its result: the fast wire reader unless a warning says it was not used.
fn reader_note(result: &serde_json::Value) -> String {
    let slow = result["Warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str())
        .find(|w| w.contains("fast reader is not used"));
    let reader = match slow {
        Some(why) => format!("mysql_async ({why})"),
        None => "the fast wire reader".to_string(),
    };
    let method = result["ConsistencyMethod"].as_str().unwrap_or("none named");
    format!("reader: {reader}; snapshot lock: {method}")
}
