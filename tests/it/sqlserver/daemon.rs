//! SQL Server imports that the daemon runs, that are interrupted, and that
//! the signed API drives, on the shared Babelfish servers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dbferry_testkit::{dbferry, spawn_run, Babelfish, ConfigBuilder, Files, Instance, DEFAULT_OWNER};
use serde_json::{json, Value};

use super::{assert_same, job, seed, seed_parts, servers, setup, total_rows, unique_db};
use crate::api::{attribute, call, ok, spec, wait_ended, with, AK, SECRET};
use crate::common::{bin, free_port, state_of, Daemon, DST, SRC};

/// A daemon config on `port` for `SRC` on `source` and `DST` on `target`,
/// with the access key the SDK calls sign with.
fn daemon_config(files: &Files, source: &Babelfish, target: &Babelfish, port: u16) -> PathBuf {
    ConfigBuilder::new()
        .listen(&format!("127.0.0.1:{port}"))
        .instance(Instance::babelfish(SRC, source))
        .instance(Instance::babelfish(DST, target))
        .access_key(AK, SECRET, DEFAULT_OWNER)
        .write(files)
}

fn counter_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn kill_9_of_the_daemon_mid_import_resumes_to_an_exact_copy() {
    let Some((a, b, _turn)) = servers("kill_9_of_the_daemon_mid_import_resumes_to_an_exact_copy") else {
        return;
    };
    let (src, dst) = (unique_db("bf_kill_src"), unique_db("bf_kill_dst"));
    seed_parts(a, &src, 7, 12_500);
    b.drop_database(&dst);
    let files = Files::new();
    let port = free_port();
    let config = daemon_config(&files, a, b, port);
    let mut daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    // Many small chunks, slowed down, so kills land with chunks in flight.
    let dropped = job(&src, &dst)
        .option("parallelism", "3")
        .option("chunk_bytes", "1048576")
        .option("max_bytes_per_sec", "2000000")
        .render();
    std::fs::write(files.path().join("jobs.d/kill.toml"), dropped).expect("drop the job");
    assert!(
        daemon
            .wait_import(Duration::from_secs(60), |i| i["Rows"].as_u64() > Some(0))
            .is_object(),
        "the copy committed a chunk"
    );

    let kills = daemon.kill9_while_importing(0x5eed_5b1f, 300..1200, 8);
    assert!(
        kills >= 5,
        "only {kills} kills landed while the import ran; slow it down"
    );
    let done = daemon.wait_import(Duration::from_secs(300), |i| {
        i["Status"] != "Running" && i["Status"] != "Pending"
    });
    assert_eq!(done["Status"], "Success", "{done:#}\n{}", daemon.log_text());
    assert_eq!(daemon.imports().len(), 1, "imported once across {kills} restarts");
    assert_eq!(done["Rows"], 100_003);
    assert_eq!(total_rows(b, &dst), 100_003, "no row lost or duplicated");
    assert_eq!(assert_same(a, &src, b, &dst), 100_003);
    let m = daemon.metrics();
    assert_eq!(state_of(&m, SRC).as_deref(), Some("Running"), "{m}");
    assert_eq!(state_of(&m, DST).as_deref(), Some("Running"), "{m}");
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(30), "SIGTERM took {took:?}");
}

#[test]
fn ctrl_c_mid_copy_cancels_truthfully_and_resume_finishes_the_copy() {
    let Some((a, b, _turn)) = servers("ctrl_c_mid_copy_cancels_truthfully_and_resume_finishes_the_copy") else {
        return;
    };
    let (src, dst) = (unique_db("bf_cancel_src"), unique_db("bf_cancel_dst"));
    seed_parts(a, &src, 5, 10_000);
    b.drop_database(&dst);
    let setup = setup(a, b);
    let slow = job(&src, &dst)
        .option("parallelism", "2")
        .option("chunk_bytes", "1048576")
        .option("max_bytes_per_sec", "1000000")
        .write(&setup.files, "slow.toml");
    let mut running = spawn_run(&bin(), &setup.config, &slow);
    assert!(
        running.wait_for_line(Duration::from_secs(60), |l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .is_some_and(|v| v["event"] == "progress" && v["rows"].as_u64() > Some(0))
        }),
        "the copy committed a chunk\n{}",
        running.stdout_so_far()
    );
    let first = running.interrupt_expecting_cancel(Duration::from_secs(5));
    let committed = total_rows(b, &dst);
    assert_eq!(
        first.rows(),
        Some(committed),
        "Rows counts exactly what is committed on the target\n{}",
        first.describe()
    );
    assert!(committed > 0 && committed < 60_003, "stopped mid-copy: {committed}");
    let id = first
        .result
        .as_ref()
        .and_then(|r| r["ImportId"].as_u64())
        .unwrap_or_else(|| panic!("no ImportId\n{}", first.describe()));

    let resumed = dbferry(
        &bin(),
        &[
            "resume".to_string(),
            "--json".to_string(),
            "--config".to_string(),
            setup.config.display().to_string(),
            id.to_string(),
        ],
    );
    resumed.assert_success();
    assert_eq!(resumed.rows(), Some(60_003), "{}", resumed.describe());
    assert_eq!(assert_same(a, &src, b, &dst), 60_003);
}

#[test]
fn the_signed_api_drives_an_import_with_instance_states_on_metrics() {
    let Some((a, b, _turn)) = servers("the_signed_api_drives_an_import_with_instance_states_on_metrics") else {
        return;
    };
    let (src, dst) = (unique_db("bf_api_src"), unique_db("bf_api_dst"));
    seed(a, &src, 100_000);
    b.drop_database(&dst);
    let files = Files::new();
    let port = free_port();
    let config = daemon_config(&files, a, b, port);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    let before = daemon.metrics();
    assert_eq!(state_of(&before, SRC).as_deref(), Some("Running"), "{before}");
    assert_eq!(state_of(&before, DST).as_deref(), Some("Running"), "{before}");
    assert!(
        before.contains("engine=\"sqlserver\""),
        "instance states carry the engine\n{before}"
    );

    // Signature V3, POST form, the SQL Server DBInfo shape.
    let db_info = json!({"DBNames": {src.clone(): dst.clone()}}).to_string();
    let started = call(with(
        spec(
            "v3",
            port,
            "ImportDatabaseBetweenInstances",
            json!({"DBInstanceId": DST, "SourceDBInstanceId": SRC, "DBInfo": db_info}),
        ),
        "method",
        "POST",
    ));
    let id = ok(&started)["ImportId"].as_u64().expect("ImportId");

    let mut seen = (Vec::<String>::new(), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let m = daemon.metrics();
        for (states, instance) in [(&mut seen.0, SRC), (&mut seen.1, DST)] {
            if let Some(s) = state_of(&m, instance) {
                if states.last() != Some(&s) {
                    states.push(s);
                }
            }
        }
        let ended = daemon
            .imports()
            .iter()
            .any(|i| i["ImportId"].as_u64() == Some(id) && i["Status"] != "Pending" && i["Status"] != "Running");
        if ended && seen.0.last().map(String::as_str) == Some("Running") {
            break;
        }
        assert!(Instant::now() < deadline, "import did not end: {:#?}", daemon.imports());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Signature V1 (GET) reads the result.
    let item = wait_ended("v1", port, DST, id, Duration::from_secs(30));
    assert_eq!(item["Status"], "Success", "{item:#}\n{}", daemon.log_text());
    assert_eq!(item["Rows"], 100_003);
    assert_eq!(item["SourceDBInstanceId"], SRC);
    assert_eq!(seen.0, ["Running", "Migrating", "Running"], "source states on /metrics");
    assert_eq!(seen.1, ["Running", "Importing", "Running"], "target states on /metrics");
    let m = daemon.metrics();
    assert_eq!(
        counter_sum(&m, "dbferry_rows_transferred_total"),
        100_003.0,
        "rows counted on /metrics\n{m}"
    );
    assert_eq!(assert_same(a, &src, b, &dst), 100_003);
    for sdk_name in ["v1", "v3"] {
        let target = attribute(sdk_name, port, DST);
        assert_eq!(target["DBInstanceStatus"], "Running", "{target:#}");
        assert_eq!(target["Engine"], "SQLServer", "{target:#}");
    }
}
