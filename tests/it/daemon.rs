//! `dbferry daemon` as a real process: drop-in jobs, instance states and
//! transfer counters on `/metrics`, a real Prometheus scraping it, the
//! native status API, hostile job files, and `kill -9` at random moments of
//! an import with a restart each time (nothing lost, nothing duplicated).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbferry_testkit::{ConfigBuilder, Files, Instance, Job, MariaDb};
use serde_json::Value;

use crate::common::{assert_same, bin, create_source, pair, unique, DST, SRC};

/// A free TCP port on loopback (the daemon binds the configured address).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.1 GET or POST on loopback: status and body.
fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // The daemon answers small bodies; chunked encoding only wraps them.
    let body = if response.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(&body)
    } else {
        body
    };
    Some((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// A daemon process with its config.
struct Daemon {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, port: u16, log: &Path) -> Self {
        let mut daemon = Self { child: None, port, config: config.to_path_buf(), log: log.to_path_buf() };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("daemon log file");
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
            if http(self.port, "GET", "/readyz").is_some_and(|(s, _)| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon did not become ready; log:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; returns how long it took to exit.
    fn terminate(&mut self) -> Duration {
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

    fn get(&self, path: &str) -> Value {
        let (status, body) = http(self.port, "GET", path).unwrap_or_else(|| panic!("GET {path} failed"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    fn metrics(&self) -> String {
        http(self.port, "GET", "/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    fn imports(&self) -> Vec<Value> {
        self.get("/v1/imports").as_array().cloned().unwrap_or_default()
    }

    /// Waits until some import satisfies `done`.
    fn wait_import(&self, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(found) = self.imports().into_iter().find(|i| done(i)) {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no import reached the expected state; imports: {:#?}\nlog:\n{}", self.imports(), self.log_text());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Config for the shared pair with the daemon on `port`.
fn daemon_setup(source: &MariaDb, target: &MariaDb, port: u16) -> (Files, PathBuf, PathBuf) {
    let files = Files::new();
    let config = ConfigBuilder::new()
        .listen(&format!("127.0.0.1:{port}"))
        .instance(Instance::mysql(SRC, source))
        .instance(Instance::mysql(DST, target))
        .write(&files);
    let jobs = files.dir("jobs.d");
    (files, config, jobs)
}

/// The state `dbferry_instance_state` marks 1 for `instance`.
fn state_of(metrics: &str, instance: &str) -> Option<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("dbferry_instance_state{") && l.contains(&format!("instance_id=\"{instance}\"")))
        .find(|l| l.trim_end().ends_with(" 1"))
        .and_then(|l| l.split("state=\"").nth(1))
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
}

fn counter_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A source database with one table of `rows` rows of about 100 bytes.
fn big_table(source: &MariaDb, target: &MariaDb, db: &str, rows: u64) {
    create_source(
        (source, target),
        db,
        "utf8mb4",
        &format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, a VARCHAR(64) NOT NULL, b DOUBLE, c DATETIME(6), KEY ka (a));
             INSERT INTO t SELECT seq, MD5(seq), seq / 3, TIMESTAMP('2024-01-01') + INTERVAL seq SECOND FROM seq_1_to_{rows};
             ANALYZE TABLE t;"
        ),
    );
}

#[test]
fn a_dropped_job_moves_instance_states_and_counters_then_succeeds() {
    let pair = pair();
    let db = unique("daemon_drop");
    big_table(pair.source, pair.target, &db, 200_000);
    let port = free_port();
    let (files, config, jobs) = daemon_setup(pair.source, pair.target, port);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));

    let before = daemon.metrics();
    assert_eq!(state_of(&before, SRC).as_deref(), Some("Running"), "{before}");
    assert_eq!(state_of(&before, DST).as_deref(), Some("Running"));

    let job = Job::mysql(DST, SRC, &[&db]).option("max_bytes_per_sec", "8000000").render();
    std::fs::write(jobs.join("copy.toml"), job).expect("drop the job");

    let mut seen = (Vec::<String>::new(), Vec::<String>::new());
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = daemon.metrics();
        for (states, id) in [(&mut seen.0, SRC), (&mut seen.1, DST)] {
            if let Some(s) = state_of(&m, id) {
                if states.last() != Some(&s) {
                    states.push(s);
                }
            }
        }
        bytes.push(counter_sum(&m, "dbferry_bytes_transferred_total"));
        let done = daemon.imports().iter().any(|i| i["Status"] != "Pending" && i["Status"] != "Running");
        if done && seen.0.last().map(String::as_str) == Some("Running") {
            break;
        }
        assert!(Instant::now() < deadline, "import did not finish: {:#?}", daemon.imports());
        std::thread::sleep(Duration::from_millis(50));
    }
    let import = &daemon.imports()[0];
    assert_eq!(import["Status"], "Success", "{import:#}\n{}", daemon.log_text());
    assert_eq!(seen.0, ["Running", "Migrating", "Running"], "source states");
    assert_eq!(seen.1, ["Running", "Importing", "Running"], "target states");
    let growing = bytes.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(growing >= 2, "dbferry_bytes_transferred_total grew in steps: {bytes:?}");
    assert_same(pair.source, pair.target, &db);

    // The exposition passes Prometheus's own linter.
    let mut check = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by `make test`");
    check.stdin.take().expect("stdin").write_all(daemon.metrics().as_bytes()).expect("feed promtool");
    let linted = check.wait_with_output().expect("promtool");
    assert!(
        linted.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );

    // The native API behind `dbferry status`.
    let one = daemon.get(&format!("/v1/imports/{}", import["ImportId"]));
    assert_eq!(one["Rows"], 200_000);
    let status = Command::new(bin())
        .args(["status", "--endpoint", &format!("http://127.0.0.1:{port}")])
        .output()
        .expect("dbferry status");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success() && table.contains("Success") && table.contains(SRC), "{table}");
}

#[test]
fn hostile_job_files_are_recorded_and_the_daemon_keeps_serving() {
    let pair = pair();
    let db = unique("daemon_hostile");
    big_table(pair.source, pair.target, &db, 1_000);
    let port = free_port();
    let (files, config, jobs) = daemon_setup(pair.source, pair.target, port);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));

    std::fs::write(jobs.join("huge.toml"), vec![b'#'; 10 << 20]).expect("10 MB file");
    std::fs::write(jobs.join("garbage.toml"), (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>())
        .expect("binary garbage");
    let outside = files.write("outside/escape.toml", &Job::mysql(DST, SRC, &[&db]).render());
    std::os::unix::fs::symlink(&outside, jobs.join("link.toml")).expect("symlink out of the directory");
    std::fs::write(jobs.join("bad key ✓ $(rm -rf).toml"), "colour = 1\n").expect("odd name");

    // A file written slowly, in two halves: read only once complete.
    let text = Job::mysql(DST, SRC, &[&db]).render();
    let (first, second) = text.split_at(text.len() / 2);
    let slow = jobs.join("slow.toml");
    let mut file = std::fs::File::create(&slow).expect("slow file");
    file.write_all(first.as_bytes()).expect("first half");
    file.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(2500));
    file.write_all(second.as_bytes()).expect("second half");
    drop(file);

    let done = daemon.wait_import(Duration::from_secs(60), |i| {
        i["Origin"].as_str().is_some_and(|o| o.ends_with("slow.toml")) && i["Status"] == "Success"
    });
    assert_eq!(done["Rows"], 1_000);
    std::thread::sleep(Duration::from_secs(3)); // let every scan see every file
    let imports = daemon.imports();
    let by_file = |suffix: &str| {
        imports
            .iter()
            .filter(|i| i["Origin"].as_str().is_some_and(|o| o.ends_with(suffix)))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(by_file("slow.toml").len(), 1, "the slow file became exactly one import: {imports:#?}");
    for (file, code) in [
        ("huge.toml", "InvalidParameter"),
        ("garbage.toml", "InvalidParameter"),
        ("link.toml", "InvalidParameter"),
        ("$(rm -rf).toml", "MissingParameter"),
    ] {
        let found = by_file(file);
        assert_eq!(found.len(), 1, "{file} recorded once: {imports:#?}");
        assert_eq!(found[0]["Status"], "Failed", "{file}");
        assert_eq!(found[0]["Code"], code, "{file}: {:#}", found[0]);
    }
    let odd = &by_file("$(rm -rf).toml")[0];
    assert!(odd["Message"].as_str().is_some_and(|m| m.contains(":1:1: unknown key `colour`")), "{odd:#}");
    assert_eq!(http(port, "GET", "/healthz").map(|(s, _)| s), Some(200));
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let (source, target) = crate::common::dedicated_pair();
    let db = unique("daemon_kill");
    big_table(&source, &target, &db, 300_000);
    let port = free_port();
    let (files, config, jobs) = daemon_setup(&source, &target, port);
    let mut daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    // Many small chunks, slowed down, so kills land mid-copy with chunks in flight.
    let job = Job::mysql(DST, SRC, &[&db])
        .option("parallelism", "3")
        .option("chunk_bytes", "1048576")
        .option("max_bytes_per_sec", "3000000")
        .render();
    std::fs::write(jobs.join("kill.toml"), job).expect("drop the job");

    // A fixed seed keeps failures reproducible while the moments still vary.
    let mut seed: u64 = 0x5eed_dbfe;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        300 + (seed >> 33) % 1500
    };
    let mut kills = 0;
    while kills < 10 {
        std::thread::sleep(Duration::from_millis(next()));
        let running = daemon.imports().iter().any(|i| i["Status"] == "Running" || i["Status"] == "Pending");
        if !running && kills > 0 {
            break;
        }
        daemon.kill9();
        kills += 1;
        daemon.spawn();
    }
    assert!(kills >= 10, "only {kills} kills landed while the import ran; slow it down");
    let done = daemon.wait_import(Duration::from_secs(300), |i| i["Status"] != "Running" && i["Status"] != "Pending");
    assert_eq!(done["Status"], "Success", "{done:#}\n{}", daemon.log_text());
    assert_eq!(daemon.imports().len(), 1, "the job file was imported once across {kills} restarts");
    assert_eq!(done["Rows"], 300_000);
    let rows = target.scalar(&format!("SELECT COUNT(*) FROM `{db}`.t"));
    assert_eq!(rows.as_deref(), Some("300000"), "no row lost or duplicated");
    assert_same(&source, &target, &db);
    let m = daemon.metrics();
    assert_eq!(state_of(&m, SRC).as_deref(), Some("Running"));
    assert_eq!(state_of(&m, DST).as_deref(), Some("Running"));

    // SIGTERM exits promptly.
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(30), "SIGTERM took {took:?}");
}

#[test]
fn a_real_prometheus_scrapes_the_daemon() {
    let prometheus = Path::new("/usr/bin/prometheus");
    assert!(
        prometheus.exists(),
        "Debian's prometheus is not installed: run `make test` (it installs it); this test must not be skipped"
    );
    let pair = pair();
    let db = unique("daemon_prom");
    big_table(pair.source, pair.target, &db, 50_000);
    let port = free_port();
    let (files, config, jobs) = daemon_setup(pair.source, pair.target, port);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    std::fs::write(jobs.join("p.toml"), Job::mysql(DST, SRC, &[&db]).render()).expect("job");
    daemon.wait_import(Duration::from_secs(120), |i| i["Status"] == "Success");

    let prom_port = free_port();
    let prom_config = files.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dbferry\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    );
    let mut prom = Command::new(prometheus)
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!("--storage.tsdb.path={}", files.dir("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let query = |q: &str| {
        http(prom_port, "GET", &format!("/api/v1/query?query={q}"))
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut states, mut bytes) = (Vec::new(), Vec::new());
    while Instant::now() < deadline && (states.is_empty() || bytes.is_empty()) {
        states = query("dbferry_instance_state");
        bytes = query("dbferry_bytes_transferred_total");
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(
        states.iter().any(|s| s["metric"]["instance_id"] == SRC && s["metric"]["state"] == "Running" && s["value"][1] == "1"),
        "{states:#?}"
    );
    assert!(
        bytes.iter().any(|s| s["metric"]["database"] == db.as_str() && s["value"][1].as_str().is_some_and(|v| v != "0")),
        "{bytes:#?}"
    );
}
