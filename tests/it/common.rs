//! Shared helpers of the integration suite.
//!
//! Assumptions about the daemon (CONTRACT §1-§3, and daemon/src as written):
//! - `dbferry run --json --config C JOB` prints JSON lines; the last has the
//!   contract's keys (`ImportId`, `RequestId`, `Status`, `Rows`, `Bytes`,
//!   `Code`, `Message`), plus `Warnings`, `Consistency`, `Tables`, `Created`.
//! - Progress events are JSON objects with an `event` key; the `planned`
//!   event carries `chunks`.
//! - With `plugin_dir` unset, plugins are loaded from next to the binary
//!   (target/debug), where `cargo build` puts `libdbferry_mysql.so`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use dbferry_testkit::{run_job, ConfigBuilder, Files, Flavour, Instance, Job, ObjectKind, Outcome, Server};

/// The `dbferry` binary under test.
/// `$DBFERRY_BIN` runs the suite against another build (the release binary,
/// for the measurements some tests print); by default the binary cargo built.
pub fn bin() -> PathBuf {
    std::env::var_os("DBFERRY_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dbferry")), PathBuf::from)
}

/// The directory of the binary: where `cargo build` puts the plugins.
pub fn bin_dir() -> PathBuf {
    bin()
        .parent()
        .map(Path::to_path_buf)
        .expect("the binary has a directory")
}

/// `libdbferry_mysql.so` next to the binary, or a loud failure.
pub fn mysql_plugin() -> PathBuf {
    let file = bin_dir().join("libdbferry_mysql.so");
    assert!(
        file.is_file(),
        "{} is missing: run `cargo build --workspace` first (or `make test`)",
        file.display()
    );
    file
}

/// A source and a target server shared by every test of this binary.
#[derive(Clone, Copy)]
pub struct Pair {
    /// Source server.
    pub source: &'static Server,
    /// Target server.
    pub target: &'static Server,
}

/// The shared MariaDB pair (see [`pair_of`]), for tests whose subject is
/// dbferry itself rather than an engine.
pub fn pair() -> &'static Pair {
    pair_of(Flavour::MariaDb)
}

/// The shared pair of `flavour`, started (in parallel) on first use and
/// stopped when the test process exits.
pub fn pair_of(flavour: Flavour) -> &'static Pair {
    static PAIRS: [OnceLock<Pair>; 2] = [OnceLock::new(), OnceLock::new()];
    PAIRS[flavour as usize].get_or_init(|| {
        let (source, target) = dedicated_pair_of(flavour);
        Pair {
            source: source.leak_until_exit(),
            target: target.leak_until_exit(),
        }
    })
}

/// The source of one flavour's shared pair and the target of the other's:
/// a copy across flavours without starting more servers.
pub fn cross_pair(source: Flavour, target: Flavour) -> Pair {
    Pair {
        source: pair_of(source).source,
        target: pair_of(target).target,
    }
}

/// Starts two dedicated MariaDB servers in parallel.
pub fn dedicated_pair() -> (Server, Server) {
    dedicated_pair_of(Flavour::MariaDb)
}

/// Starts two dedicated servers of `flavour` in parallel.
pub fn dedicated_pair_of(flavour: Flavour) -> (Server, Server) {
    std::thread::scope(|s| {
        let a = s.spawn(move || flavour.start());
        let b = s.spawn(move || flavour.start());
        (a.join().expect("source server"), b.join().expect("target server"))
    })
}

/// A name unique within this test process: `prefix_N`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

/// Source instance id in every generated config.
pub const SRC: &str = "rm-source0001";
/// Target instance id in every generated config.
pub const DST: &str = "rm-target0001";

/// A config with `SRC` → `source` and `DST` → `target`, and a job runner.
pub struct Setup {
    /// Where config, secrets, state and jobs live.
    pub files: Files,
    /// The config file.
    pub config: PathBuf,
}

impl Setup {
    /// Config for two servers with default instance settings.
    pub fn new(source: &Server, target: &Server) -> Self {
        Self::with(Instance::mysql(SRC, source), Instance::mysql(DST, target))
    }

    /// Config for two explicit instances.
    pub fn with(source: Instance, target: Instance) -> Self {
        Self::from_builder(ConfigBuilder::new().instance(source).instance(target))
    }

    /// Config from a builder.
    pub fn from_builder(builder: ConfigBuilder) -> Self {
        let files = Files::new();
        let config = builder.write(&files);
        Self { files, config }
    }

    /// Writes `job` and runs it with `dbferry run --json`.
    pub fn run(&self, job: &Job) -> Outcome {
        let path = job.write(&self.files, &format!("{}.toml", unique("job")));
        run_job(&bin(), &self.config, &path)
    }

    /// Copies `databases` from `SRC` to `DST` with `options` (raw TOML).
    pub fn copy(&self, databases: &[&str], options: &[(&str, &str)]) -> Outcome {
        let mut job = Job::mysql(DST, SRC, databases);
        for (k, v) in options {
            job = job.option(k, v);
        }
        self.run(&job)
    }
}

/// Creates `db` on both servers (the MySQL rule: it must exist, empty, on
/// the target) with the same default charset and collation, and runs
/// `script` in it on the source.
pub fn create_source(pair: (&Server, &Server), db: &str, charset: &str, script: &str) {
    let (source, target) = pair;
    let create = format!(
        "CREATE DATABASE {} CHARACTER SET {charset};",
        dbferry_testkit::ident(db)
    );
    source.exec(&create);
    target.exec(&create);
    if !script.is_empty() {
        source.exec_in(db, script);
    }
}

/// Everything that tells two copies of a database apart, as seen by the
/// server: for every object its kind, name and `SHOW CREATE` text; for every
/// table `CHECKSUM TABLE` and the ordered row hash.
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// (kind, name, SHOW CREATE statement).
    pub objects: Vec<(ObjectKind, String, String)>,
    /// (table, CHECKSUM TABLE, row hash).
    pub tables: Vec<(String, String, String)>,
    /// (sequence, its one row: where it stands).
    pub sequences: Vec<(String, Vec<Option<String>>)>,
}

/// The fingerprint of `db` on `server`.
pub fn fingerprint(server: &Server, db: &str) -> Fingerprint {
    let objects = server.objects(db);
    let mut described = Vec::new();
    let mut tables = Vec::new();
    let mut sequences = Vec::new();
    for (kind, name) in objects {
        described.push((kind, name.clone(), server.show_create(db, kind, &name)));
        if kind == ObjectKind::Sequence {
            let state = server.query(&format!(
                "SELECT * FROM {}.{}",
                dbferry_testkit::ident(db),
                dbferry_testkit::ident(&name)
            ));
            sequences.push((name.clone(), state.into_iter().next().unwrap_or_default()));
        }
        if kind == ObjectKind::Table {
            tables.push((
                name.clone(),
                server.checksum_table(db, &name),
                server.row_hash(db, &name),
            ));
        }
    }
    Fingerprint {
        objects: described,
        tables,
        sequences,
    }
}

/// Asserts that `db` is identical on both servers, object by object and
/// table by table, with a readable message for the first difference.
/// Returns the number of rows compared.
pub fn assert_same(source: &Server, target: &Server, db: &str) -> u64 {
    let a = fingerprint(source, db);
    let b = fingerprint(target, db);
    let names = |f: &Fingerprint| f.objects.iter().map(|(k, n, _)| (*k, n.clone())).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "{db}: the same objects must exist on both sides");
    for ((kind, name, create_a), (_, _, create_b)) in a.objects.iter().zip(&b.objects) {
        assert_eq!(
            create_a,
            create_b,
            "{db}: SHOW CREATE {} `{name}` differs between source and target",
            kind.keyword()
        );
    }
    assert_eq!(
        a.sequences, b.sequences,
        "{db}: sequences must stand at the same next value on both sides"
    );
    let mut rows = 0;
    for ((table, sum_a, hash_a), (_, sum_b, hash_b)) in a.tables.iter().zip(&b.tables) {
        assert_eq!(hash_a, hash_b, "{db}.{table}: row hash (rows:md5) differs");
        assert_eq!(sum_a, sum_b, "{db}.{table}: CHECKSUM TABLE differs");
        rows += hash_a
            .split(':')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    rows
}

/// The `planned` progress event's chunk count, if the run printed one.
pub fn planned_chunks(outcome: &Outcome) -> Option<u64> {
    outcome
        .lines
        .iter()
        .find(|l| l.get("event").and_then(|e| e.as_str()) == Some("planned"))
        .and_then(|l| l.get("chunks"))
        .and_then(|c| c.as_u64())
}

/// Every object (kind and name) of `db` on `server`, or `None` when the
/// database does not exist: what "nothing changed" compares.
pub fn state(server: &Server, db: &str) -> Option<Vec<(ObjectKind, String)>> {
    server.database_exists(db).then(|| server.objects(db))
}

/// The databases of `server`.
pub fn databases(server: &Server) -> Vec<String> {
    server
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `SELECT COUNT(*)` of `db.table`.
pub fn count(server: &Server, db: &str, table: &str) -> u64 {
    server
        .scalar(&format!(
            "SELECT COUNT(*) FROM {}.{}",
            dbferry_testkit::ident(db),
            dbferry_testkit::ident(table)
        ))
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

/// A free TCP port on loopback (the daemon binds the configured address).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.1 GET or POST on loopback: status and body.
pub fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // The daemon answers small bodies; chunked encoding only wraps them.
    let body = if response.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(&body)
    } else {
        body
    };
    Some((status, body))
}

pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// A daemon process with its config.
pub struct Daemon {
    /// The process, while it runs.
    pub child: Option<Child>,
    /// Its HTTP port.
    pub port: u16,
    /// Its config file.
    pub config: PathBuf,
    /// Its stderr log.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts a daemon on `config`, listening on `port`, logging to `log`.
    pub fn start(config: &Path, port: u16, log: &Path) -> Self {
        let mut daemon = Self::new(config, port, log);
        daemon.spawn();
        daemon
    }

    /// A daemon not started yet.
    pub fn new(config: &Path, port: u16, log: &Path) -> Self {
        Self {
            child: None,
            port,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    /// Starts the process and waits until `/readyz` answers over plain HTTP.
    pub fn spawn(&mut self) {
        self.spawn_until(&|port| http(port, "GET", "/readyz").is_some_and(|(s, _)| s == 200));
    }

    /// Starts the process and waits until `ready(port)` holds.
    pub fn spawn_until(&mut self, ready: &dyn Fn(u16) -> bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log file");
        let child = Command::new(bin())
            .args(["daemon", "--config"])
            .arg(&self.config)
            .env("DBFERRY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dbferry daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ready(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon did not become ready; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// Kills the daemon (SIGKILL) and starts it again at pseudo-random
    /// moments `pause_ms` apart while an import runs, at most `most` times;
    /// returns how many kills landed. A fixed `seed` keeps failures
    /// reproducible while the moments still vary.
    pub fn kill9_while_importing(&mut self, seed: u64, pause_ms: std::ops::Range<u64>, most: usize) -> usize {
        let mut seed = seed;
        let mut kills = 0;
        while kills < most {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let pause = pause_ms.start + (seed >> 33) % (pause_ms.end - pause_ms.start).max(1);
            std::thread::sleep(Duration::from_millis(pause));
            let running = self
                .imports()
                .iter()
                .any(|i| i["Status"] == "Running" || i["Status"] == "Pending");
            if !running && kills > 0 {
                break;
            }
            self.kill9();
            kills += 1;
            self.spawn();
        }
        kills
    }

    /// SIGTERM and wait; returns how long it took to exit.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(40);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return started.elapsed();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        started.elapsed()
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = http(self.port, "GET", path).unwrap_or_else(|| panic!("GET {path} failed"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    pub fn metrics(&self) -> String {
        http(self.port, "GET", "/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    pub fn imports(&self) -> Vec<Value> {
        self.get("/v1/imports").as_array().cloned().unwrap_or_default()
    }

    /// Waits until some import satisfies `done`.
    pub fn wait_import(&self, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(found) = self.imports().into_iter().find(|i| done(i)) {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no import reached the expected state; imports: {:#?}\nlog:\n{}",
            self.imports(),
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The state `dbferry_instance_state` marks 1 for `instance`.
pub fn state_of(metrics: &str, instance: &str) -> Option<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("dbferry_instance_state{") && l.contains(&format!("instance_id=\"{instance}\"")))
        .find(|l| l.trim_end().ends_with(" 1"))
        .and_then(|l| l.split("state=\"").nth(1))
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
}

/// A source database with one table of `rows` rows of about 100 bytes.
pub fn big_table(source: &Server, target: &Server, db: &str, rows: u64) {
    let seq = source.flavour().seq(rows);
    create_source(
        (source, target),
        db,
        "utf8mb4",
        &format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, a VARCHAR(64) NOT NULL, b DOUBLE, c DATETIME(6), KEY ka (a));
             INSERT INTO t SELECT seq, LEFT(SHA2(seq, 256), 32), seq / 3, TIMESTAMP('2024-01-01') + INTERVAL seq SECOND
               FROM {seq};
             ANALYZE TABLE t;"
        ),
    );
}
