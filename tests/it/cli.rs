//! The command line: `dbferry plugins`, the `--json` line protocol and its
//! final object, and the exit codes of `run` (0, 2, 3, 4).
//!
//! Assumptions:
//! - `dbferry plugins` prints one line per plugin with its engine, version,
//!   ABI (`major.minor`) and file, and exits 1 when a file was refused
//!   (naming it on stderr). Its plugin_dir is a temporary directory holding
//!   a copy of the mysql plugin, because target/debug also holds the test
//!   fixtures (one deliberately incompatible).
//! - SIGINT cancels `run`: exit 4 and `Status` `Cancelled` within a few
//!   seconds, even in the middle of a rate-limited copy.
//! - A target that dies mid-copy ends the import `Failed` with exit 3 (not
//!   2: something was already changed).

use std::time::{Duration, Instant};

use dbferry_testkit::{dbferry, on_both_flavours, spawn_run, ConfigBuilder, Files, Instance, Job, Server};

use crate::common::{bin, bin_dir, create_source, mysql_plugin, pair, pair_of, unique, Setup, DST, SRC};

fn plugins_with(dir_files: &[(&std::path::Path, &str)]) -> dbferry_testkit::Outcome {
    let files = Files::new();
    let plugin_dir = files.dir("plugins");
    for (from, name) in dir_files {
        std::fs::copy(from, plugin_dir.join(name)).expect("copy plugin");
    }
    let config = ConfigBuilder::new().plugin_dir(&plugin_dir).write(&files);
    dbferry(&bin(), &["plugins".as_ref(), "--config".as_ref(), config.as_os_str()])
}

#[test]
fn plugins_lists_mysql_with_its_abi_and_file() {
    let out = plugins_with(&[(&mysql_plugin(), "libdbferry_mysql.so")]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let abi = format!("{}.{}", dbferry_plugin_abi::ABI_MAJOR, dbferry_plugin_abi::ABI_MINOR);
    let line = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("mysql"))
        .unwrap_or_else(|| panic!("no mysql line\n{}", out.describe()));
    assert!(line.split_whitespace().any(|w| w == abi), "ABI {abi} shown: {line}");
    assert!(line.contains("libdbferry_mysql.so"), "file shown: {line}");
}

#[test]
fn plugins_reports_a_refused_file_and_fails() {
    let bad = bin_dir().join("libfixture_bad_abi.so");
    assert!(
        bad.is_file(),
        "{} missing: run `cargo build --workspace` first",
        bad.display()
    );
    let out = plugins_with(&[(&mysql_plugin(), "libdbferry_mysql.so"), (&bad, "libdbferry_bad.so")]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stdout.contains("mysql"),
        "the good plugin is still listed\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("libdbferry_bad.so") && out.stderr.contains("99"),
        "the refusal names the file and its ABI\n{}",
        out.describe()
    );
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

// What `run` prints and how it exits goes through the engine: on both flavours.
on_both_flavours! {
fn json_output_is_json_lines_ending_with_the_contract_object(flavour: Flavour) {
    let p = pair_of(flavour);
    let setup = Setup::new(p.source, p.target);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let db = unique("cli_json");
        create_source(
            (p.source, p.target),
            &db,
            "utf8mb4",
            "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'x'), (2, NULL), (3, '');",
        );
        let out = setup.copy(&[&db], &[]);
        out.assert_success();
        let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.len() >= 2,
            "progress events and a final object\n{}",
            out.describe()
        );
        for line in &lines {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(value.is_object(), "{line}");
        }
        let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).expect("json");
        assert_eq!(Some(&last), out.result.as_ref(), "the final object is the last line");
        let id = last["ImportId"]
            .as_u64()
            .unwrap_or_else(|| panic!("ImportId is a positive integer: {last}"));
        assert!(id > 0);
        ids.push(id);
        assert!(
            last["RequestId"].as_str().is_some_and(is_uuid),
            "RequestId is a UUID: {last}"
        );
        assert_eq!(last["Status"], "Success");
        assert_eq!(last["Rows"], 3);
        assert!(last["Bytes"].as_u64().is_some_and(|b| b > 0), "{last}");
        assert!(last["Code"].is_null(), "{last}");
        assert!(last["Message"].is_null() || last["Message"].is_string(), "{last}");
    }
    assert!(
        ids[1] > ids[0],
        "ImportIds increase within one state directory: {ids:?}"
    );
}
}

#[test]
fn exit_code_2_for_a_rejection() {
    let p = pair();
    let setup = Setup::new(p.source, p.target);
    let out = setup.run(&Job::mysql(DST, SRC, &["no_such_database_anywhere"]));
    out.assert_rejected("InvalidDBName.NotFound");
    assert!(
        out.message().is_some_and(|m| m.contains("no_such_database_anywhere")),
        "{}",
        out.describe()
    );
}

/// A database of about 6 MB, slow to copy at `max_bytes_per_sec`.
fn slow_db(source: &Server, target: &Server) -> String {
    let db = unique("cli_slow");
    create_source(
        (source, target),
        &db,
        "utf8mb4",
        &format!(
            "CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(1000));
             INSERT INTO t SELECT seq, REPEAT('z', 1000) FROM {};",
            source.flavour().seq(6000)
        ),
    );
    db
}

on_both_flavours! {
fn exit_code_4_when_sigint_cancels_a_running_copy(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = slow_db(p.source, p.target);
    let setup = Setup::new(p.source, p.target);
    let job = Job::mysql(DST, SRC, &[&db])
        .option("max_bytes_per_sec", "300000")
        .write(&setup.files, "slow.toml");
    let mut running = spawn_run(&bin(), &setup.config, &job);
    let started = running.wait_for_line(Duration::from_secs(60), |l| {
        l.contains("\"planned\"") || l.contains("\"progress\"")
    });
    assert!(started, "the copy started\n{}", running.stdout_so_far());
    std::thread::sleep(Duration::from_millis(700));
    let sent = Instant::now();
    running.interrupt().expect("SIGINT");
    let out = running.wait(Duration::from_secs(30));
    let latency = sent.elapsed();
    assert_eq!(out.code, Some(4), "{}", out.describe());
    assert_eq!(out.status(), Some("Cancelled"), "{}", out.describe());
    assert!(
        latency < Duration::from_secs(5),
        "exited {latency:?} after SIGINT\n{}",
        out.describe()
    );
    assert!(
        out.rows().is_some_and(|r| r < 6000),
        "it really was interrupted\n{}",
        out.describe()
    );
}

fn exit_code_3_when_the_target_dies_mid_copy(flavour: Flavour) {
    let source = pair_of(flavour).source;
    let target = flavour.start();
    let db = slow_db(source, &target);
    let setup = Setup::with(Instance::mysql(SRC, source), Instance::mysql(DST, &target));
    // A target that never comes back is waited for `outage_timeout`, then the import fails.
    let job = Job::mysql(DST, SRC, &[&db])
        .option("max_bytes_per_sec", "500000")
        .option("outage_timeout", "3")
        .write(&setup.files, "doomed.toml");
    let mut running = spawn_run(&bin(), &setup.config, &job);
    let started = running.wait_for_line(Duration::from_secs(60), |l| {
        l.contains("\"planned\"") || l.contains("\"progress\"")
    });
    assert!(started, "the copy started\n{}", running.stdout_so_far());
    std::thread::sleep(Duration::from_millis(500));
    target.kill();
    let out = running.wait(Duration::from_secs(120));
    assert_eq!(out.code, Some(3), "{}", out.describe());
    assert_eq!(out.status(), Some("Failed"), "{}", out.describe());
    assert!(
        out.json_code().is_some(),
        "a failure carries a code\n{}",
        out.describe()
    );
    assert!(
        out.message()
            .is_some_and(|m| m.contains("still unreachable after outage_timeout (3 s)")),
        "and says why\n{}",
        out.describe()
    );
    assert!(
        out.result
            .as_ref()
            .and_then(|r| r["ResumeCommand"].as_str())
            .is_some_and(|c| c.contains("dbferry resume")),
        "and how to go on\n{}",
        out.describe()
    );
}
}

#[test]
fn exit_code_0_and_a_summary_without_json() {
    let p = pair();
    let db = unique("cli_plain");
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4",
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
    );
    let setup = Setup::new(p.source, p.target);
    let job = Job::mysql(DST, SRC, &[&db]).write(&setup.files, "plain.toml");
    let out = dbferry(
        &bin(),
        &[
            "run".as_ref(),
            "--config".as_ref(),
            setup.config.as_os_str(),
            job.as_os_str(),
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.result.is_none(), "no JSON without --json\n{}", out.describe());
    assert_eq!(crate::common::count(p.target, &db, "t"), 2);
}

#[test]
fn the_config_comes_from_dbferry_config_when_no_flag_is_given() {
    let p = pair();
    let db = unique("cli_env");
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4",
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);",
    );
    let files = Files::new();
    let config = ConfigBuilder::new()
        .instance(Instance::mysql(SRC, p.source))
        .instance(Instance::mysql(DST, p.target))
        .write(&files);
    let job = Job::mysql(DST, SRC, &[&db]).write(&files, "env.toml");
    let config_str = config.display().to_string();
    let out = dbferry_testkit::dbferry_with_env(
        &bin(),
        &["run".as_ref(), "--json".as_ref(), job.as_os_str()],
        &[("DBFERRY_CONFIG", config_str.as_str())],
    );
    out.assert_success();
}
