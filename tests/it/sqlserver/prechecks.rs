//! CONTRACT §4's rules for SQL Server, each provoked on real Babelfish
//! servers: the exact code (exit 2, JSON `Code`, printed `error[CODE]`),
//! nothing changed on the target, and the passing case beside it.
//!
//! Not provokable on Babelfish: a source database that is not online
//! (Babelfish has no `ALTER DATABASE ... SET OFFLINE`; the rule's missing
//! case is covered) and a read-only server (SQL Server has no server-wide
//! read-only mode; the engine never reports one). Rule 4 is provoked by a
//! login whose sessions report SQL Server 2017 (Babelfish's
//! `babelfishpg_tds.product_version`, set for that role only).

use dbferry_testkit::{Babelfish, ConfigBuilder, Instance, Job, Outcome, BABELFISH_PASSWORD};

use super::{job, relations, seed, servers, setup, unique_db};
use crate::common::{closed_port, Setup, DST, SRC};

/// Runs `job` and asserts the rejection with `code`, and that every
/// destination the job names is on the target exactly as before.
fn assert_refused(setup: &Setup, target: &Babelfish, job: &Job, code: &str) -> Outcome {
    let named: Vec<String> = serde_json::from_str::<serde_json::Value>(&job.db_info)
        .ok()
        .and_then(|v| v["DBNames"].as_object().cloned())
        .map(|m| m.values().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let look = || named.iter().map(|d| relations(target, d)).collect::<Vec<_>>();
    let before = look();
    let outcome = setup.run(job);
    outcome.assert_rejected(code);
    assert_eq!(
        look(),
        before,
        "a rejected import changes nothing on the target\n{}",
        outcome.describe()
    );
    outcome
}

/// A small source database and a destination name free on the target.
fn source_db(source: &Babelfish, target: &Babelfish, prefix: &str) -> (String, String) {
    let src = unique_db(prefix);
    let dst = format!("{src}_copy");
    seed(source, &src, 50);
    target.drop_database(&dst);
    (src, dst)
}

fn assert_copied(outcome: &Outcome, target: &Babelfish, dst: &str) {
    outcome.assert_success();
    assert_eq!(outcome.rows(), Some(53), "{}", outcome.describe());
    assert_eq!(super::rows_of(target, dst, "t"), 50);
}

/// A SQL login of its own on `server` (a sysadmin unless `plain`), with
/// `settings` (PostgreSQL `ALTER ROLE ... SET`) applied to its sessions.
fn login(server: &Babelfish, name: &str, plain: bool, settings: &[(&str, &str)]) {
    server.tsql(&format!("CREATE LOGIN [{name}] WITH PASSWORD = '{BABELFISH_PASSWORD}'"));
    if !plain {
        server.tsql(&format!("ALTER SERVER ROLE sysadmin ADD MEMBER [{name}]"));
    }
    for (key, value) in settings {
        server.pg(&format!("ALTER ROLE \"{name}\" SET {key} = '{value}'"));
    }
}

#[test]
fn rules_1_2_3_7_are_checked_from_the_config() {
    let Some((a, b, _turn)) = servers("rules_1_2_3_7_are_checked_from_the_config") else {
        return;
    };
    let (src, dst) = source_db(a, b, "bf_pc_config");
    let setup = Setup::from_builder(
        ConfigBuilder::new()
            .instance(Instance::babelfish(SRC, a))
            .instance(Instance::babelfish(DST, b))
            .instance(Instance::babelfish("rm-foreign0001", b).owner("999999"))
            .instance(Instance::babelfish("rm-general0001", b).category("general"))
            // `postgres_port` is a SQL Server engine key.
            .instance(
                Instance::babelfish("rm-mysqlish0001", b)
                    .engine("mysql")
                    .without("postgres_port"),
            ),
    );
    // Rule 1.
    assert_refused(
        &setup,
        b,
        &Job::sqlserver(SRC, SRC, &[(&src, &dst)]),
        "InvalidParameter.SameInstance",
    );
    // Rule 2: missing, and another owner's, look alike.
    let missing = assert_refused(
        &setup,
        b,
        &Job::sqlserver("rm-missing0001", SRC, &[(&src, &dst)]),
        "InvalidDBInstanceId.NotFound",
    );
    let foreign = assert_refused(
        &setup,
        b,
        &Job::sqlserver("rm-foreign0001", SRC, &[(&src, &dst)]),
        "InvalidDBInstanceId.NotFound",
    );
    assert_eq!(
        missing.message().map(|m| m.replace("rm-missing0001", "ID")),
        foreign.message().map(|m| m.replace("rm-foreign0001", "ID")),
    );
    assert_refused(&setup, b, &job(&src, &dst).owner("42"), "InvalidDBInstanceId.NotFound");
    // Rule 3: category, and engines that differ.
    assert_refused(
        &setup,
        b,
        &Job::sqlserver("rm-general0001", SRC, &[(&src, &dst)]),
        "IncorrectDBInstanceType",
    );
    assert_refused(
        &setup,
        b,
        &Job::sqlserver("rm-mysqlish0001", SRC, &[(&src, &dst)]),
        "IncorrectDBInstanceType",
    );
    // Rule 7: SQL Server's DBInfo is an object; no repeated names; not empty.
    for (db_info, code) in [
        (
            serde_json::json!({"DBNames": [src]}).to_string(),
            "InvalidDBInfo.Format",
        ),
        ("{\"DBNames\":{}}".to_string(), "InvalidDBInfo.Format"),
        ("not json".to_string(), "InvalidDBInfo.Format"),
        (
            format!("{{\"DBNames\":{{\"{src}\":\"{dst}\",\"{src}\":\"{dst}_b\"}}}}"),
            "InvalidDBName.Duplicate",
        ),
        (
            serde_json::json!({"DBNames": {src.clone(): dst.clone(), "master": dst.clone()}}).to_string(),
            "InvalidDBName.Duplicate",
        ),
    ] {
        let out = assert_refused(&setup, b, &Job::raw(DST, SRC, &db_info), code);
        assert!(out.message().is_some(), "{db_info}: {}", out.describe());
    }
    // Passing: the owner's own dedicated instances, an object DBInfo.
    assert_copied(&setup.run(&job(&src, &dst)), b, &dst);
}

#[test]
fn rule_4_sql_server_2017_cluster_edition_is_refused() {
    let Some((a, b, _turn)) = servers("rule_4_sql_server_2017_cluster_edition_is_refused") else {
        return;
    };
    let (src, dst) = source_db(a, b, "bf_pc_cluster");
    let v14 = unique_db("bf_v14_login");
    login(b, &v14, false, &[("babelfishpg_tds.product_version", "14.0.3456.2")]);
    let target = |user: &str, edition: Option<&str>| {
        let mut instance = Instance::babelfish(DST, b);
        if user != dbferry_testkit::BABELFISH_USER {
            instance = instance.login(user, BABELFISH_PASSWORD);
        }
        if let Some(edition) = edition {
            instance = instance.edition(edition);
        }
        Setup::with(Instance::babelfish(SRC, a), instance)
    };
    let refused = assert_refused(
        &target(&v14, Some("Enterprise Cluster Edition")),
        b,
        &job(&src, &dst),
        "IncorrectDBInstanceType",
    );
    assert!(
        refused.message().is_some_and(|m| m.contains("2017")),
        "{}",
        refused.describe()
    );
    // The same edition on a server that reports 12.0 passes; so does 14.0
    // without a cluster edition.
    assert_copied(
        &target(dbferry_testkit::BABELFISH_USER, Some("Enterprise Cluster Edition")).run(&job(&src, &dst)),
        b,
        &dst,
    );
    let again = format!("{dst}_v14");
    b.drop_database(&again);
    assert_copied(&target(&v14, None).run(&job(&src, &again)), b, &again);
}

#[test]
fn rule_5_an_unreachable_instance_is_not_running_and_a_refused_account_is_named() {
    let Some((a, b, _turn)) = servers("rule_5_an_unreachable_instance_is_not_running_and_a_refused_account_is_named")
    else {
        return;
    };
    let (src, dst) = source_db(a, b, "bf_pc_state");
    let refuse = |source: Instance, target: Instance| {
        assert_refused(
            &Setup::with(source, target),
            b,
            &job(&src, &dst),
            "IncorrectDBInstanceState",
        )
    };
    let started = std::time::Instant::now();
    refuse(
        Instance::babelfish(SRC, a),
        Instance::babelfish(DST, b).port(closed_port()),
    );
    refuse(
        Instance::babelfish(SRC, a).port(closed_port()),
        Instance::babelfish(DST, b),
    );
    // The target's PostgreSQL port is part of the instance: closed, the
    // instance cannot be reached, and the message says which port.
    let out = refuse(
        Instance::babelfish(SRC, a),
        Instance::babelfish(DST, b).extra("postgres_port", &closed_port().to_string()),
    );
    assert!(
        out.message().is_some_and(|m| m.contains("postgres_port")),
        "{}",
        out.describe()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "refused promptly"
    );
    // A wrong password is the account's fault, not the instance's: the
    // same code as on MySQL.
    let out = assert_refused(
        &Setup::with(
            Instance::babelfish(SRC, a).login(dbferry_testkit::BABELFISH_USER, "Wrong-pw-1"),
            Instance::babelfish(DST, b),
        ),
        b,
        &job(&src, &dst),
        "IncorrectDBInstanceAccount.AccessDenied",
    );
    assert!(
        out.message()
            .is_some_and(|m| m.contains(SRC) && !m.contains("Wrong-pw-1")),
        "names the instance, never the password: {}",
        out.describe()
    );
    // A target login that may not create databases is refused before
    // anything is written, naming the permission.
    let plain = unique_db("bf_plain_login");
    login(b, &plain, true, &[]);
    let out = assert_refused(
        &Setup::with(
            Instance::babelfish(SRC, a),
            Instance::babelfish(DST, b).login(&plain, BABELFISH_PASSWORD),
        ),
        b,
        &job(&src, &dst),
        "IncorrectDBInstanceAccount.MissingPrivilege",
    );
    assert!(
        out.message().is_some_and(|m| m.contains("CREATE ANY DATABASE")),
        "{}",
        out.describe()
    );
    assert_copied(&setup(a, b).run(&job(&src, &dst)), b, &dst);
}

#[test]
fn rule_6_source_must_exist_and_destination_must_be_free() {
    let Some((a, b, _turn)) = servers("rule_6_source_must_exist_and_destination_must_be_free") else {
        return;
    };
    let (src, dst) = source_db(a, b, "bf_pc_names");
    let setup = setup(a, b);
    let missing = unique_db("bf_pc_nosuchdb");
    let out = assert_refused(&setup, b, &job(&missing, &dst), "InvalidDBName.NotFound");
    assert!(
        out.message().is_some_and(|m| m.contains(&missing)),
        "{}",
        out.describe()
    );
    // Of two databases, the second missing: nothing of the first is made either.
    let two = Job::sqlserver(DST, SRC, &[(&src, &dst), (&missing, &format!("{dst}_2"))]);
    assert_refused(&setup, b, &two, "InvalidDBName.NotFound");
    // A destination with objects (see run.rs for one with rows).
    b.tsql(&format!("CREATE DATABASE [{dst}]"));
    b.tsql(&format!(
        "USE [{dst}]\ngo\nCREATE VIEW dbo.only_a_view AS SELECT 1 AS one"
    ));
    assert_refused(&setup, b, &job(&src, &dst), "InvalidDBName.Exists");
    b.drop_database(&dst);
    assert_copied(&setup.run(&job(&src, &dst)), b, &dst);
}

#[test]
fn rules_8_and_9_lock_mode_and_storage() {
    let Some((a, b, _turn)) = servers("rules_8_and_9_lock_mode_and_storage") else {
        return;
    };
    let (src, dst) = source_db(a, b, "bf_pc_lock");
    for mode in ["ManualLock", "LockByDiskQuota"] {
        let locked = Setup::with(Instance::babelfish(SRC, a), Instance::babelfish(DST, b).lock_mode(mode));
        let out = assert_refused(&locked, b, &job(&src, &dst), "IncorrectDBInstanceLockMode");
        assert!(out.message().is_some_and(|m| m.contains(mode)), "{}", out.describe());
    }
    // Rule 9: the target's used bytes (every PostgreSQL database of the
    // server, some MB) already exceed 0.001 GB.
    let small = Setup::with(
        Instance::babelfish(SRC, a),
        Instance::babelfish(DST, b).storage_gb(0.001),
    );
    assert_refused(&small, b, &job(&src, &dst), "InsufficientStorage");
    let unlocked = Setup::with(
        Instance::babelfish(SRC, a),
        Instance::babelfish(DST, b).lock_mode("Unlock").storage_gb(100.0),
    );
    assert_copied(&unlocked.run(&job(&src, &dst)), b, &dst);
}
