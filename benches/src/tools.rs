//! The contenders, each copying one dataset's database from the source to an
//! empty database of the same name on the target:
//!
//! - `dbferry`: `dbferry run --json --config C JOB` (parallelism as given, `verify = "count"`);
//! - `mariadb-dump`: `mariadb-dump --single-transaction DB | mariadb DB`;
//! - `mydumper`: `mydumper --threads 4 --rows R -o /dev/shm/...` then `myloader --threads 4 -d ...`;
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
use crate::server::{MariaDb, PASSWORD, USER};

/// A contender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tool {
    /// `dbferry run`.
    Dbferry,
    /// `mariadb-dump | mariadb`.
    MariadbDump,
    /// `mydumper` + `myloader`.
    Mydumper,
    /// Server-side `LOAD DATA INFILE` of pre-exported files.
    Floor,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 4] = [Tool::Dbferry, Tool::MariadbDump, Tool::Mydumper, Tool::Floor];

    /// The key used on the command line and in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Tool::Dbferry => "dbferry",
            Tool::MariadbDump => "mariadb-dump",
            Tool::Mydumper => "mydumper",
            Tool::Floor => "floor",
        }
    }

    /// A label for tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Dbferry => "dbferry",
            Tool::MariadbDump => "mariadb-dump | mariadb",
            Tool::Mydumper => "mydumper + myloader",
            Tool::Floor => "floor (LOAD DATA INFILE)",
        }
    }

    /// Parses a key.
    pub fn parse(text: &str) -> Result<Self> {
        Tool::ALL
            .into_iter()
            .find(|t| t.key() == text.trim())
            .ok_or_else(|| anyhow!("unknown tool {text:?} (expected dbferry, mariadb-dump, mydumper or floor)"))
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
    pub source: &'a MariaDb,
    /// The target server.
    pub target: &'a MariaDb,
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
}

fn render(cmd: &Command) -> String {
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
        // Let the target finish dropping the previous copy's files.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let cpu_before = self.source.cpu_seconds()? + self.target.cpu_seconds()?;
        let (measured, commands) = match tool {
            Tool::Dbferry => self.dbferry(dataset, info, parallelism)?,
            Tool::MariadbDump => self.mariadb_dump(db)?,
            Tool::Mydumper => self.mydumper(db)?,
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
        for (id, server) in [("bench-source", self.source), ("bench-target", self.target)] {
            config.push_str(&format!(
                "\n[[instances]]\nid = \"{id}\"\nengine = \"mysql\"\nowner = \"bench\"\ncategory = \"dedicated\"\n\
                 storage_gb = 100000\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\npassword_file = {}\n",
                server.port,
                q(&secret)
            ));
        }
        let config_path = dir.join("dbferry.toml");
        fs::write(&config_path, config)?;
        let job = format!(
            "db_instance_id = \"bench-target\"\nsource_db_instance_id = \"bench-source\"\nowner = \"bench\"\n\
             db_info = '{{\"DBNames\":[\"{db}\"]}}'\n\n[options]\nparallelism = {parallelism}\nverify = \"count\"\n"
        );
        let job_path = dir.join(format!("{db}-p{parallelism}.toml"));
        fs::write(&job_path, job)?;
        Ok((config_path, job_path))
    }

    fn mariadb_dump(&self, db: &str) -> Result<(Measured, Vec<String>)> {
        let mut dump = Command::new("mariadb-dump");
        dump.arg("--no-defaults")
            .args(self.source.tcp_args())
            .arg("--single-transaction")
            .arg(db);
        let mut load = Command::new("mariadb");
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

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
