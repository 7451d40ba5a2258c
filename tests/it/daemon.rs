//! `dbferry daemon` as a real process: drop-in jobs, instance states and
//! transfer counters on `/metrics`, a real Prometheus scraping it, the
//! native status API, hostile job files, and `kill -9` at random moments of
//! an import with a restart each time (nothing lost, nothing duplicated).
//! The daemon's own behaviour (hostile job files, SIGHUP, systemd, Prometheus)
//! is tested on MariaDB; what goes through the engine (instance states and
//! counters of a copy, cancel, checkpoints, resume after kill -9 and SIGTERM)
//! on both flavours.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbferry_testkit::{on_both_flavours, ConfigBuilder, Files, Instance, Job, MariaDb};
use serde_json::Value;

use crate::common::{assert_same, big_table, bin, free_port, http, pair, pair_of, state_of, unique, Daemon, DST, SRC};

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

fn counter_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// Instance states, counters and cancel follow the engine's copy: on both flavours.
on_both_flavours! {
fn a_dropped_job_moves_instance_states_and_counters_then_succeeds(flavour: Flavour) {
    let pair = pair_of(flavour);
    let db = unique("daemon_drop");
    big_table(pair.source, pair.target, &db, 200_000);
    let port = free_port();
    let (files, config, jobs) = daemon_setup(pair.source, pair.target, port);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));

    let before = daemon.metrics();
    assert_eq!(state_of(&before, SRC).as_deref(), Some("Running"), "{before}");
    assert_eq!(state_of(&before, DST).as_deref(), Some("Running"));

    // Transfer counters count committed chunks: several chunks make several steps.
    let job = Job::mysql(DST, SRC, &[&db])
        .option("max_bytes_per_sec", "8000000")
        .option("chunk_bytes", "1048576")
        .render();
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
        let done = daemon
            .imports()
            .iter()
            .any(|i| i["Status"] != "Pending" && i["Status"] != "Running");
        if done && seen.0.last().map(String::as_str) == Some("Running") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "import did not finish: {:#?}",
            daemon.imports()
        );
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
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(daemon.metrics().as_bytes())
        .expect("feed promtool");
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
    assert!(
        status.status.success() && table.contains("Success") && table.contains(SRC),
        "{table}"
    );
}
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
    std::fs::write(
        jobs.join("garbage.toml"),
        (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>(),
    )
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
    assert_eq!(
        by_file("slow.toml").len(),
        1,
        "the slow file became exactly one import: {imports:#?}"
    );
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
    assert!(
        odd["Message"]
            .as_str()
            .is_some_and(|m| m.contains(":1:1: unknown key `colour`")),
        "{odd:#}"
    );
    assert_eq!(http(port, "GET", "/healthz").map(|(s, _)| s), Some(200));

    // The same name with new content is a new request; the old one is not redone.
    let again = Job::mysql(DST, SRC, &[&db])
        .option("existing_tables", "\"drop\"")
        .render();
    std::fs::write(&slow, again).expect("rewrite slow.toml");
    daemon.wait_import(Duration::from_secs(60), |i| {
        i["Origin"].as_str().is_some_and(|o| o.ends_with("slow.toml"))
            && i["Status"] == "Success"
            && i["ImportId"] != done["ImportId"]
    });
    std::thread::sleep(Duration::from_secs(3));
    let slow_imports = daemon
        .imports()
        .iter()
        .filter(|i| i["Origin"].as_str().is_some_and(|o| o.ends_with("slow.toml")))
        .count();
    assert_eq!(slow_imports, 2, "one import per content of slow.toml");
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
        states
            .iter()
            .any(|s| s["metric"]["instance_id"] == SRC && s["metric"]["state"] == "Running" && s["value"][1] == "1"),
        "{states:#?}"
    );
    assert!(
        bytes
            .iter()
            .any(|s| s["metric"]["database"] == db.as_str() && s["value"][1].as_str().is_some_and(|v| v != "0")),
        "{bytes:#?}"
    );
}

#[test]
fn sighup_reloads_the_config_and_keeps_the_old_one_when_the_new_is_invalid() {
    let pair = pair();
    let port = free_port();
    let (files, config, _jobs) = daemon_setup(pair.source, pair.target, port);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    let pid = daemon.child.as_ref().map(Child::id).expect("running").to_string();
    let hup = || Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
    let original = std::fs::read_to_string(&config).expect("config");

    // A broken config is refused; the daemon keeps serving with the old one.
    std::fs::write(&config, format!("{original}\nnot valid = = toml\n")).expect("break config");
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log_text().contains("config reload refused") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        daemon.log_text().contains("config reload refused"),
        "{}",
        daemon.log_text()
    );
    assert!(state_of(&daemon.metrics(), SRC).is_some());

    // A new instance appears after a valid reload.
    let extra = ConfigBuilder::new()
        .instance(Instance::mysql("rm-added0001", pair.target))
        .try_render(&files)
        .expect("render");
    let instance_block = extra.split("[[instances]]").nth(1).expect("instance block");
    std::fs::write(&config, format!("{original}\n[[instances]]{instance_block}")).expect("extend config");
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state_of(&daemon.metrics(), "rm-added0001").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        state_of(&daemon.metrics(), "rm-added0001").as_deref(),
        Some("Running"),
        "{}",
        daemon.log_text()
    );
}

/// A TCP forwarder on a fixed port that can be switched off (connections
/// refused) and on again: an instance that goes away and comes back.
struct Proxy {
    port: u16,
    upstream: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn new(upstream: u16) -> Self {
        let mut proxy = Self {
            port: free_port(),
            upstream,
            stop: Default::default(),
            thread: None,
        };
        proxy.on();
        proxy
    }

    fn on(&mut self) {
        use std::sync::atomic::Ordering;
        self.stop.store(false, Ordering::SeqCst);
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("proxy port");
        let (stop, upstream) = (self.stop.clone(), self.upstream);
        self.thread = Some(std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(("127.0.0.1", upstream))) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone")),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        }));
    }

    fn off(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn an_unreachable_instance_is_unavailable_until_it_answers_again() {
    let pair = pair();
    let mut proxy = Proxy::new(pair.target.port());
    let port = free_port();
    let files = Files::new();
    let config = ConfigBuilder::new()
        .listen(&format!("127.0.0.1:{port}"))
        .instance(Instance::mysql(SRC, pair.source))
        .instance(Instance::mysql(DST, pair.target).port(proxy.port))
        .write(&files);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    let wait_state = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if state_of(&daemon.metrics(), DST).as_deref() == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{DST} never became {want}:\n{}\n{}",
            daemon.metrics(),
            daemon.log_text()
        );
    };
    proxy.off();
    wait_state("Unavailable");
    assert_eq!(
        state_of(&daemon.metrics(), SRC).as_deref(),
        Some("Running"),
        "only the unreachable one"
    );
    proxy.on();
    wait_state("Running");
    proxy.off();
}

#[test]
fn disjoint_imports_run_at_once_and_a_busy_instance_refuses_a_third() {
    let shared = pair();
    let (source_b, target_b) = crate::common::dedicated_pair();
    let (db_a, db_b, db_c) = (unique("daemon_par_a"), unique("daemon_par_b"), unique("daemon_par_c"));
    big_table(shared.source, shared.target, &db_a, 60_000);
    big_table(&source_b, &target_b, &db_b, 60_000);
    big_table(shared.source, &target_b, &db_c, 100);
    let port = free_port();
    let files = Files::new();
    let config = ConfigBuilder::new()
        .listen(&format!("127.0.0.1:{port}"))
        .instance(Instance::mysql(SRC, shared.source))
        .instance(Instance::mysql(DST, shared.target))
        .instance(Instance::mysql("rm-src-b", &source_b))
        .instance(Instance::mysql("rm-dst-b", &target_b))
        .write(&files);
    let jobs = files.dir("jobs.d");
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    let slow = |target: &str, source: &str, db: &str| {
        Job::mysql(target, source, &[db])
            .option("parallelism", "2")
            .option("max_bytes_per_sec", "1000000")
            .render()
    };
    std::fs::write(jobs.join("a.toml"), slow(DST, SRC, &db_a)).expect("job a");
    std::fs::write(jobs.join("b.toml"), slow("rm-dst-b", "rm-src-b", &db_b)).expect("job b");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut together = false;
    while !together && Instant::now() < deadline {
        let running = daemon.imports().iter().filter(|i| i["Status"] == "Running").count();
        together = running == 2;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(together, "both imports ran at the same time: {:#?}", daemon.imports());

    // The shared source is Migrating: a third import that names it fails.
    std::fs::write(jobs.join("c.toml"), Job::mysql("rm-dst-b", SRC, &[&db_c]).render()).expect("job c");
    let third = daemon.wait_import(Duration::from_secs(60), |i| {
        i["Origin"].as_str().is_some_and(|o| o.ends_with("c.toml")) && i["Status"] == "Failed"
    });
    assert_eq!(third["Code"], "IncorrectDBInstanceState", "{third:#}");

    for origin in ["a.toml", "b.toml"] {
        let done = daemon.wait_import(Duration::from_secs(180), |i| {
            i["Origin"].as_str().is_some_and(|o| o.ends_with(origin))
                && i["Status"] != "Running"
                && i["Status"] != "Pending"
        });
        assert_eq!(done["Status"], "Success", "{done:#}");
    }
    assert_same(shared.source, shared.target, &db_a);
    assert_same(&source_b, &target_b, &db_b);
}

on_both_flavours! {
fn dbferry_cancel_stops_a_running_import_through_the_daemon(flavour: Flavour) {
    let pair = pair_of(flavour);
    let db = unique("daemon_cancel");
    big_table(pair.source, pair.target, &db, 100_000);
    let port = free_port();
    let (files, config, jobs) = daemon_setup(pair.source, pair.target, port);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    let job = Job::mysql(DST, SRC, &[&db])
        .option("max_bytes_per_sec", "500000")
        .render();
    std::fs::write(jobs.join("cancel.toml"), job).expect("job");
    let running = daemon.wait_import(Duration::from_secs(60), |i| i["Status"] == "Running");
    let id = running["ImportId"].to_string();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = Command::new(bin())
        .args(["cancel", "--endpoint", &endpoint, &id])
        .output()
        .expect("dbferry cancel");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ended = daemon.wait_import(Duration::from_secs(10), |i| i["Status"] == "Cancelled");
    assert_eq!(ended["ImportId"].to_string(), id);
    let m = daemon.metrics();
    assert_eq!(
        state_of(&m, SRC).as_deref(),
        Some("Running"),
        "released after the cancel"
    );
    // Cancelling again is refused: it already ended.
    let again = Command::new(bin())
        .args(["cancel", "--endpoint", &endpoint, &id])
        .output()
        .expect("dbferry cancel");
    assert_eq!(again.status.code(), Some(1));
}
}

#[test]
fn systemd_hears_ready_once_plugins_and_state_are_loaded() {
    use std::os::unix::net::UnixDatagram;
    let pair = pair();
    let port = free_port();
    let (files, config, _jobs) = daemon_setup(pair.source, pair.target, port);
    let socket_path = files.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut child = Command::new(bin())
        .args(["daemon", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification from the daemon");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        message.contains("READY=1") && message.contains("STATUS=serving on"),
        "{message}"
    );
    assert_eq!(
        http(port, "GET", "/readyz").map(|(s, _)| s),
        Some(200),
        "ready means ready"
    );
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let n = socket.recv(&mut buf).expect("the stopping notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let _ = child.wait();
}

// The daemon's checkpoints and resume go through the engine: on both flavours.
on_both_flavours! {
    fn kill_9_at_random_moments_loses_and_duplicates_nothing(flavour: Flavour) {
        let (source, target) = crate::common::dedicated_pair_of(flavour);
        let db = unique("daemon_kill");
        big_table(&source, &target, &db, 300_000);
        let port = free_port();
        let (files, config, jobs) = daemon_setup(&source, &target, port);
        let mut daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
        // Many small chunks, slowed down, so kills land mid-copy with chunks in flight.
        let job = Job::mysql(DST, SRC, &[&db])
            .option("parallelism", "3")
            .option("chunk_bytes", "1048576")
            .option("max_bytes_per_sec", "2000000")
            .render();
        std::fs::write(jobs.join("kill.toml"), job).expect("drop the job");

        let kills = daemon.kill9_while_importing(0x5eed_dbfe, 200..1000, 10);
        assert!(
            kills >= 10,
            "only {kills} kills landed while the import ran; slow it down"
        );
        let done = daemon.wait_import(Duration::from_secs(300), |i| {
            i["Status"] != "Running" && i["Status"] != "Pending"
        });
        assert_eq!(done["Status"], "Success", "{done:#}\n{}", daemon.log_text());
        assert_eq!(
            daemon.imports().len(),
            1,
            "the job file was imported once across {kills} restarts"
        );
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

    fn sigterm_checkpoints_a_running_import_which_resumes_at_the_next_start(flavour: Flavour) {
        let (source, target) = crate::common::dedicated_pair_of(flavour);
        let db = unique("daemon_term");
        big_table(&source, &target, &db, 150_000);
        let port = free_port();
        let (files, config, jobs) = daemon_setup(&source, &target, port);
        let mut daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
        let job = Job::mysql(DST, SRC, &[&db])
            .option("chunk_bytes", "1048576")
            .option("max_bytes_per_sec", "2000000")
            .render();
        std::fs::write(jobs.join("term.toml"), job).expect("drop the job");
        let running = daemon.wait_import(Duration::from_secs(30), |i| {
            i["Status"] == "Running" && i["Rows"].as_u64() > Some(0)
        });
        // How the connections travel is shown while the import runs, not only
        // in its result.
        let roles: Vec<&str> = running["Transport"]
            .as_array()
            .map(|t| t.iter().filter_map(|i| i["Role"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(roles, ["source", "target"], "{running:#}");

        let took = daemon.terminate();
        assert!(took < Duration::from_secs(30), "SIGTERM took {took:?}");
        let log = daemon.log_text();
        assert!(log.contains("checkpointed for shutdown"), "{log}");

        daemon.spawn();
        let done = daemon.wait_import(Duration::from_secs(180), |i| {
            i["Status"] != "Running" && i["Status"] != "Pending"
        });
        assert_eq!(done["Status"], "Success", "{done:#}\n{}", daemon.log_text());
        assert!(daemon.log_text().contains("resuming import after a restart"));
        assert_same(&source, &target, &db);
    }
}
