//! Imports that meet faults: Ctrl-C and `kill -9` of `dbferry run` followed
//! by `dbferry resume` or a daemon's resume, a target or source restarted
//! mid-copy, a target whose disk fills up. Each ends with a comparison made
//! by the servers themselves (`CHECKSUM TABLE`, an ordered row hash, `SHOW
//! CREATE`), independent of dbferry.
//!
//! Every fault runs on MariaDB and on MySQL. Servers that are restarted or
//! filled get their own; the rest share the suite's pair of the flavour.
//! Restarts kill the server with SIGKILL and start it again with the same
//! command line on the same datadir, as a crash and a supervisor would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbferry_testkit::{
    dbferry, on_both_flavours, spawn_run, ConfigBuilder, Files, Flavour, Instance, Job, MariaDb, Outcome, RunningJob,
};
use serde_json::Value;

use crate::common::{assert_same, bin, create_source, free_port, http, pair_of, unique, Daemon, Setup, DST, SRC};

/// About 16 MB in two tables and a view on servers of `flavour`: slowed
/// to 2 MB/s, the copy takes long enough for a fault to land in it.
pub(crate) fn slow_source_of(flavour: Flavour, source: &MariaDb, target: &MariaDb, db: &str) {
    create_source(
        (source, target),
        db,
        "utf8mb4",
        &format!(
            "CREATE TABLE a (id INT PRIMARY KEY, pad VARCHAR(1000));
             INSERT INTO a SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) FROM {};
             CREATE TABLE b (id INT PRIMARY KEY, v INT, KEY (v));
             INSERT INTO b SELECT seq, seq * 7 FROM {};
             CREATE VIEW v AS SELECT COUNT(*) AS n FROM a;
             ANALYZE TABLE a, b;",
            flavour.seq(15_000),
            flavour.seq(3_000)
        ),
    );
}

pub(crate) const ROWS: u64 = 18_000;

pub(crate) fn slow_job(setup_files: &Files, name: &str, db: &str, extra: &[(&str, &str)]) -> PathBuf {
    let mut job = Job::mysql(DST, SRC, &[db])
        .option("parallelism", "2")
        .option("chunk_bytes", "1048576")
        .option("max_bytes_per_sec", "2000000");
    for (key, value) in extra {
        job = job.option(key, value);
    }
    job.write(setup_files, name)
}

pub(crate) fn resume(config: &Path, import_id: u64) -> Outcome {
    dbferry(
        &bin(),
        &[
            "resume".to_string(),
            "--json".to_string(),
            "--config".to_string(),
            config.display().to_string(),
            import_id.to_string(),
        ],
    )
}

pub(crate) fn import_id(outcome: &Outcome) -> u64 {
    outcome
        .lines
        .iter()
        .find_map(|l| l.get("import_id").and_then(Value::as_u64))
        .or_else(|| outcome.result.as_ref()?.get("ImportId")?.as_u64())
        .unwrap_or_else(|| panic!("no import id\n{}", outcome.describe()))
}

/// Waits until at least one chunk is committed (progress counts committed rows).
pub(crate) fn wait_for_committed_rows(running: &mut RunningJob) {
    assert!(
        running.wait_for_line(Duration::from_secs(60), |l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .is_some_and(|v| v["event"] == "progress" && v["rows"].as_u64() > Some(0))
        }),
        "the copy committed a chunk\n{}",
        running.stdout_so_far()
    );
}

/// Rows on the target, counted by the server.
fn target_rows(target: &MariaDb, db: &str) -> u64 {
    ["a", "b"]
        .iter()
        .filter(|t| target.tables(db).contains(&t.to_string()))
        .map(|t| {
            target
                .scalar(&format!("SELECT COUNT(*) FROM `{db}`.`{t}`"))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

fn assert_stopped_truthfully(outcome: &Outcome, target: &MariaDb, db: &str) {
    let result = outcome
        .result
        .as_ref()
        .unwrap_or_else(|| panic!("{}", outcome.describe()));
    let rows = result["Rows"].as_u64().unwrap_or(0);
    assert_eq!(
        rows,
        target_rows(target, db),
        "Rows counts exactly what is committed on the target\n{}",
        outcome.describe()
    );
    let tables = result["Tables"].as_array().cloned().unwrap_or_default();
    assert_eq!(tables.len(), 2, "every table listed with its state\n{result:#}");
    for table in &tables {
        assert!(
            ["copied", "partial", "not_started"].contains(&table["state"].as_str().unwrap_or("")),
            "{table}"
        );
    }
    assert!(
        result["ResumeCommand"]
            .as_str()
            .is_some_and(|c| c.starts_with("dbferry resume --config ")),
        "{result:#}"
    );
}

/// Config with the daemon listening on `port`.
fn daemon_config(files: &Files, source: &MariaDb, target: &MariaDb, port: u16) -> PathBuf {
    ConfigBuilder::new()
        .listen(&format!("127.0.0.1:{port}"))
        .instance(Instance::mysql(SRC, source))
        .instance(Instance::mysql(DST, target))
        .write(files)
}

/// A server that keeps what it committed across SIGKILL (the testkit's
/// servers trade that away for speed, which a restart test cannot).
fn durable_server(flavour: Flavour) -> MariaDb {
    flavour.start_with(&["--innodb-flush-log-at-trx-commit=1", "--innodb-doublewrite=ON"])
}

/// A server started again on a killed server's datadir; killed when dropped.
struct Restarted(Option<Child>);

impl Drop for Restarted {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn server_pid(server: &MariaDb) -> i32 {
    let dir = server.socket().parent().expect("server dir");
    std::fs::read_to_string(dir.join("mysqld.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("the server's pid file")
}

/// The command line `server` runs with, to start it again later.
fn command_line(server: &MariaDb) -> Vec<String> {
    let pid = server_pid(server);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the server's command line");
    cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Kills `server` with SIGKILL, waits `down`, and starts it again with the
/// same command line on the same datadir; returns once it answers.
fn restart(server: &MariaDb, down: Duration) -> Restarted {
    let args = command_line(server);
    // SIGKILL, and reaped: MySQL refuses to start while its socket's lock
    // file names a pid that still exists, which a zombie does.
    server.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", server.port())).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(down);
    start_again(server, &args)
}

/// Starts `server` (killed, or dead by itself, and reaped) again with
/// `args`; returns once it answers.
fn start_again(server: &MariaDb, args: &[String]) -> Restarted {
    let child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the server again");
    let guard = Restarted(Some(child));
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.try_query("SELECT 1").is_err() {
        assert!(Instant::now() < deadline, "the server came back\n{}", server.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    guard
}

on_both_flavours! {
    fn ctrl_c_in_the_copy_then_resume_finishes_an_exact_copy(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("fault_int");
        slow_source_of(flavour, p.source, p.target, &db);
        let setup = Setup::new(p.source, p.target);
        let job = slow_job(&setup.files, "int.toml", &db, &[]);
        let mut running = spawn_run(&bin(), &setup.config, &job);
        wait_for_committed_rows(&mut running);
        let first = running.interrupt_expecting_cancel(Duration::from_secs(3));
        assert!(!first.stderr.contains("error["), "{}", first.describe());
        assert_stopped_truthfully(&first, p.target, &db);
        assert!(first.rows() > Some(0), "{}", first.describe());

        let resumed = resume(&setup.config, import_id(&first));
        resumed.assert_success();
        assert_eq!(resumed.rows(), Some(ROWS), "{}", resumed.describe());
        assert_same(p.source, p.target, &db);
    }

    fn a_cancel_during_the_schema_phase_then_resume_finishes_an_exact_copy(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("fault_schema");
        // Many tables make the schema phase long enough to be interrupted in.
        let mut script = String::new();
        for n in 0..300 {
            script.push_str(&format!(
                "CREATE TABLE t{n} (id INT PRIMARY KEY, v VARCHAR(20), KEY (v)); INSERT INTO t{n} VALUES (1, 'x'), (2, 'y');\n"
            ));
        }
        create_source((p.source, p.target), &db, "utf8mb4", &script);
        let setup = Setup::new(p.source, p.target);
        let job = Job::mysql(DST, SRC, &[&db]).write(&setup.files, "schema.toml");
        let mut running = spawn_run(&bin(), &setup.config, &job);
        assert!(
            running.wait_for_line(Duration::from_secs(60), |l| l.contains("\"schema\"")),
            "{}",
            running.stdout_so_far()
        );
        running.interrupt().expect("SIGINT");
        let first = running.wait(Duration::from_secs(60));
        // The schema phase may have ended just before the signal arrived; any
        // stop is fine as long as it is a cancel and resume finishes the job.
        if first.status() == Some("Success") {
            eprintln!("the import finished before Ctrl-C landed; resume is not exercised");
        } else {
            assert_eq!(first.status(), Some("Cancelled"), "{}", first.describe());
            assert_eq!(first.json_code(), None, "{}", first.describe());
            let resumed = resume(&setup.config, import_id(&first));
            resumed.assert_success();
        }
        assert_same(p.source, p.target, &db);
    }


    fn a_killed_run_is_left_alone_by_a_daemon_until_asked_to_resume(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("fault_kill");
        slow_source_of(flavour, p.source, p.target, &db);
        let files = Files::new();
        let port = free_port();
        let config = daemon_config(&files, p.source, p.target, port);
        let job = slow_job(&files, "kill.toml", &db, &[]);
        let mut running = spawn_run(&bin(), &config, &job);
        wait_for_committed_rows(&mut running);
        let id = running
            .stdout_so_far()
            .lines()
            .find_map(|l| serde_json::from_str::<Value>(l).ok()?.get("import_id")?.as_u64())
            .expect("the run printed its import id");
        running.signal(libc::SIGKILL).expect("SIGKILL");
        let killed = running.wait(Duration::from_secs(10));
        assert_eq!(killed.code, None, "killed by a signal");
        let left = target_rows(p.target, &db);

        // A daemon on the same state dir does not take the import over.
        let mut daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
        std::thread::sleep(Duration::from_secs(3));
        let record = daemon
            .imports()
            .into_iter()
            .find(|i| i["ImportId"].as_u64() == Some(id))
            .expect("the daemon lists the killed run's import");
        assert_eq!(record["Status"], "Running", "{record:#}");
        assert_eq!(target_rows(p.target, &db), left, "nothing was copied uninvited");
        assert!(!daemon.log_text().contains("resuming import after a restart"));

        // Asked through the API, it resumes it.
        let answer = http(port, "POST", &format!("/v1/imports/{id}/resume"));
        assert_eq!(answer.as_ref().map(|(status, _)| *status), Some(202), "{answer:?}");
        let done = daemon.wait_import(Duration::from_secs(120), |i| {
            i["ImportId"].as_u64() == Some(id) && i["Status"] != "Running" && i["Status"] != "Pending"
        });
        assert_eq!(done["Status"], "Success", "{done:#}\n{}", daemon.log_text());
        assert_same(p.source, p.target, &db);
        // A finished import is not resumed again.
        let again = http(port, "POST", &format!("/v1/imports/{id}/resume"));
        assert_eq!(again.map(|(status, _)| status), Some(409));
        daemon.terminate();
    }


    fn a_target_restart_mid_copy_is_waited_out_and_ends_in_an_exact_copy(flavour: Flavour) {
        let source = pair_of(flavour).source;
        let target = durable_server(flavour);
        let db = unique("fault_trestart");
        slow_source_of(flavour, source, &target, &db);
        let setup = Setup::new(source, &target);
        let job = slow_job(&setup.files, "trestart.toml", &db, &[]);
        let mut running = spawn_run(&bin(), &setup.config, &job);
        wait_for_committed_rows(&mut running);
        let _back = restart(&target, Duration::from_secs(5));
        let done = running.wait(Duration::from_secs(180));
        done.assert_success();
        assert_eq!(done.rows(), Some(ROWS), "{}", done.describe());
        assert_same(source, &target, &db);
    }

    fn a_source_restart_mid_copy_goes_on_from_a_new_snapshot_per_table(flavour: Flavour) {
        let source = durable_server(flavour);
        let target = pair_of(flavour).target;
        let db = unique("fault_srestart");
        slow_source_of(flavour, &source, target, &db);
        let setup = Setup::new(&source, target);
        let job = slow_job(&setup.files, "srestart.toml", &db, &[]);
        let mut running = spawn_run(&bin(), &setup.config, &job);
        wait_for_committed_rows(&mut running);
        let _back = restart(&source, Duration::from_secs(3));
        let done = running.wait(Duration::from_secs(180));
        done.assert_success();
        assert_same(&source, target, &db);
        let result = done.result.clone().unwrap_or_default();
        if result["Consistency"] == "per_table" {
            let warned = result["Warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|w| w.as_str().is_some_and(|w| w.contains("consistency is per table")));
            assert!(warned, "per_table says why\n{result:#}");
        }
    }

    /// InnoDB may also abort the server when a page write finds the disk
    /// full (MySQL 9.7 does, now and then): the target is then durable, so
    /// that what dbferry saw committed survives, and it is started again
    /// once space is freed, as a DBA would.
    fn a_full_target_disk_fails_naming_it_and_resumes_once_space_is_freed(flavour: Flavour) {
        let source = pair_of(flavour).source;
        let target = durable_server(flavour);
        let args = command_line(&target);
        let db = unique("fault_disk");
        slow_source_of(flavour, source, &target, &db);
        // The target database's directory on a 6 MiB tmpfs: its tables fill it.
        let dir = target.socket().parent().expect("dir").join("data").join(&db);
        // MariaDB keeps the database's options in db.opt (MySQL in its dictionary).
        let opt = std::fs::read(dir.join("db.opt")).ok();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(
            mounted.success(),
            "mounting a tmpfs needs root (CI runs the suite as root); this test cannot run without it"
        );
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
        let _unmount = Unmount(dir.clone());
        if let Some(opt) = opt {
            std::fs::write(dir.join("db.opt"), opt).expect("db.opt");
        }
        let setup = Setup::new(source, &target);
        let job = Job::mysql(DST, SRC, &[&db]).write(&setup.files, "disk.toml");
        let full = setup_run(&setup, &job);
        assert_eq!(full.status(), Some("Failed"), "{}", full.describe());
        assert_eq!(full.code, Some(3), "{}", full.describe());
        assert_eq!(
            full.json_code().as_deref(),
            Some("InsufficientStorage"),
            "{}",
            full.describe()
        );
        assert!(
            full.message().is_some_and(|m| m.contains("no disk space")),
            "{}",
            full.describe()
        );
        let grown = Command::new("mount")
            .args(["-o", "remount,size=200m"])
            .arg(&dir)
            .status()
            .expect("remount");
        assert!(grown.success());
        let _restarted = target.try_query("SELECT 1").is_err().then(|| {
            eprintln!("the target aborted on the full disk; starting it again\n{}", target.log_tail());
            target.kill();
            start_again(&target, &args)
        });
        assert_stopped_truthfully(&full, &target, &db);
        let resumed = resume(&setup.config, import_id(&full));
        resumed.assert_success();
        assert_same(source, &target, &db);
    }
}

fn setup_run(setup: &Setup, job: &Path) -> Outcome {
    dbferry_testkit::run_job(&bin(), &setup.config, job)
}
