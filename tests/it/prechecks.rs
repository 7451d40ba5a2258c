//! Every rule of CONTRACT §4 with a passing and a failing case, on MariaDB
//! and on MySQL 9.7 (each test is `name::mariadb` and `name::mysql`). A failing
//! case asserts the exact code (exit 2, JSON `Code`, and any printed
//! `error[CODE]`) and that nothing changed on the target.
//!
//! Assumptions and notes:
//! - Passing cases are real copies of a tiny database; they succeed only if
//!   every other rule passes too.
//! - Rule 4 (SQL Server 2017 Cluster Edition) needs a SQL Server and is not
//!   covered here. Rule 5's "in no other import" needs the daemon (two
//!   `dbferry run` processes do not share instance states); only
//!   reachability is covered.
//! - Rule 9: `storage_gb` is GB (2^30 bytes) and the daemon accepts a
//!   fractional value, so 0.001 GB (about 1 MB) is exceeded by an 8 MB
//!   source database while 1 GB is not.
//! - A target table that already exists with `existing_tables = "fail"` is
//!   refused with `InvalidDBName.Exists` (the daemon's mapping of rule 6 for
//!   MySQL).

use dbferry_testkit::{ident, Flavour, Instance, Job, Outcome, Server, DEFAULT_OWNER};

use crate::common::{closed_port, create_source, pair_of, state, unique, Setup, DST, SRC};

const TINY: &str = "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'a'), (2, 'b');";

/// A tiny database on `flavour`'s shared pair (created empty on the target).
fn tiny_db(flavour: Flavour, prefix: &str) -> String {
    let p = pair_of(flavour);
    let db = unique(prefix);
    create_source((p.source, p.target), &db, "utf8mb4", TINY);
    db
}

/// Runs `job` with the config of `setup` and asserts the rejection and
/// that nothing changed on the target: `db` holds the same objects (or still
/// does not exist), and no database named by the job was created. (The
/// shared target's full database list changes under concurrent tests, so
/// it is not compared.)
fn assert_refused(setup: &Setup, target: &Server, job: &Job, db: &str, code: &str) -> Outcome {
    let named: Vec<String> = serde_json::from_str::<serde_json::Value>(&job.db_info)
        .ok()
        .and_then(|v| v.get("DBNames").and_then(|n| n.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let existing = |names: &[String]| {
        names
            .iter()
            .filter(|n| target.database_exists(n))
            .cloned()
            .collect::<Vec<_>>()
    };
    let before = (state(target, db), existing(&named));
    let outcome = setup.run(job);
    outcome.assert_rejected(code);
    let after = (state(target, db), existing(&named));
    assert_eq!(
        before,
        after,
        "a rejected import must change nothing on the target\n{}",
        outcome.describe()
    );
    outcome
}

/// Runs the plain job of `db` from `source` to `target` (on the server
/// `on`) and asserts its refusal with `code` (see [`assert_refused`]).
fn refused_with(source: Instance, target: Instance, on: &Server, db: &str, code: &str) -> Outcome {
    assert_refused(&Setup::with(source, target), on, &Job::mysql(DST, SRC, &[db]), db, code)
}

fn assert_copied(outcome: &Outcome, target: &Server, db: &str) {
    outcome.assert_success();
    assert_eq!(outcome.rows(), Some(2), "{}", outcome.describe());
    assert_eq!(crate::common::count(target, db, "t"), 2);
}

dbferry_testkit::on_both_flavours! {
    fn rule_1_source_and_target_must_differ(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = tiny_db(flavour, "pc_same");
        let setup = Setup::new(p.source, p.target);
        let out = assert_refused(
            &setup,
            p.target,
            &Job::mysql(SRC, SRC, &[&db]),
            &db,
            "InvalidParameter.SameInstance",
        );
        assert!(out.message().is_some_and(|m| m.contains(SRC)), "{}", out.describe());
        assert_copied(&setup.run(&Job::mysql(DST, SRC, &[&db])), p.target, &db);
    }

    fn rule_2_unknown_and_foreign_instances_look_identical(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = tiny_db(flavour, "pc_owner");
        let foreign = Instance::mysql("rm-foreign0001", p.target).owner("999999");
        let setup = Setup::from_builder(
            dbferry_testkit::ConfigBuilder::new()
                .instance(Instance::mysql(SRC, p.source))
                .instance(Instance::mysql(DST, p.target))
                .instance(foreign),
        );
        let missing = assert_refused(
            &setup,
            p.target,
            &Job::mysql("rm-missing0001", SRC, &[&db]),
            &db,
            "InvalidDBInstanceId.NotFound",
        );
        let other = assert_refused(
            &setup,
            p.target,
            &Job::mysql("rm-foreign0001", SRC, &[&db]),
            &db,
            "InvalidDBInstanceId.NotFound",
        );
        // The same text but for the id: nothing tells "exists, not yours" apart.
        let a = missing.message().unwrap_or_default().replace("rm-missing0001", "ID");
        let b = other.message().unwrap_or_default().replace("rm-foreign0001", "ID");
        assert_eq!(a, b, "another owner's instance must look exactly like a missing one");
        let printed = |out: &Outcome, id: &str| {
            out.stderr
                .lines()
                .filter(|l| l.contains("error[") || l.contains(id))
                .map(|l| l.replace(id, "ID"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            printed(&missing, "rm-missing0001"),
            printed(&other, "rm-foreign0001"),
            "not on stderr either"
        );
        // A source of another owner, and a requester who owns neither.
        assert_refused(
            &setup,
            p.target,
            &Job::mysql(DST, "rm-foreign0001", &[&db]),
            &db,
            "InvalidDBInstanceId.NotFound",
        );
        assert_refused(
            &setup,
            p.target,
            &Job::mysql(DST, SRC, &[&db]).owner("42"),
            &db,
            "InvalidDBInstanceId.NotFound",
        );
        // Passing: the owner's own instances.
        assert_copied(
            &setup.run(&Job::mysql(DST, SRC, &[&db]).owner(DEFAULT_OWNER)),
            p.target,
            &db,
        );
    }

    fn rule_3_category_and_engine(flavour: Flavour) {
        let p = pair_of(flavour);
        for category in ["general", "shared"] {
            let db = tiny_db(flavour, "pc_cat");
            refused_with(Instance::mysql(SRC, p.source), Instance::mysql(DST, p.target).category(category), p.target, &db, "IncorrectDBInstanceType");
            refused_with(Instance::mysql(SRC, p.source).category(category), Instance::mysql(DST, p.target), p.target, &db, "IncorrectDBInstanceType");
        }
        // Engine mismatch.
        let db = tiny_db(flavour, "pc_engine");
        refused_with(Instance::mysql(SRC, p.source).engine("sqlserver"), Instance::mysql(DST, p.target), p.target, &db, "IncorrectDBInstanceType");
        // Passing: dedicated-host on one side, dedicated on the other.
        let setup = Setup::with(
            Instance::mysql(SRC, p.source).category("dedicated-host"),
            Instance::mysql(DST, p.target),
        );
        assert_copied(&setup.run(&Job::mysql(DST, SRC, &[&db])), p.target, &db);
    }

    fn rule_5_an_unreachable_instance_is_not_running(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = tiny_db(flavour, "pc_reach");
        let setup = Setup::with(
            Instance::mysql(SRC, p.source),
            Instance::mysql(DST, p.target).port(closed_port()),
        );
        let started = std::time::Instant::now();
        assert_refused(
            &setup,
            p.target,
            &Job::mysql(DST, SRC, &[&db]),
            &db,
            "IncorrectDBInstanceState",
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "refused promptly"
        );
        refused_with(Instance::mysql(SRC, p.source).port(closed_port()), Instance::mysql(DST, p.target), p.target, &db, "IncorrectDBInstanceState");
        // A wrong password is a refused login, named as such (not "cannot be
        // reached", which would send the DBA looking at the network).
        refused_with(Instance::mysql(SRC, p.source).login(dbferry_testkit::ADMIN_USER, "wrong"), Instance::mysql(DST, p.target), p.target, &db, "IncorrectDBInstanceAccount.AccessDenied");
        let setup = Setup::new(p.source, p.target);
        assert_copied(&setup.run(&Job::mysql(DST, SRC, &[&db])), p.target, &db);
    }

    fn rule_6_every_database_exists_on_source_and_target(flavour: Flavour) {
        let p = pair_of(flavour);
        let setup = Setup::new(p.source, p.target);
        // Missing on the source (present on the target).
        let only_target = unique("pc_only_target");
        p.target.exec(&format!("CREATE DATABASE {}", ident(&only_target)));
        assert_refused(
            &setup,
            p.target,
            &Job::mysql(DST, SRC, &[&only_target]),
            &only_target,
            "InvalidDBName.NotFound",
        );
        // Missing on the target (MySQL: it must exist there already).
        let only_source = unique("pc_only_source");
        p.source.exec(&format!(
            "CREATE DATABASE {}; USE {}; {TINY}",
            ident(&only_source),
            ident(&only_source)
        ));
        let out = assert_refused(
            &setup,
            p.target,
            &Job::mysql(DST, SRC, &[&only_source]),
            &only_source,
            "InvalidDBName.NotFound",
        );
        assert!(
            !p.target.database_exists(&only_source),
            "the database is not created\n{}",
            out.describe()
        );
        // One good and one missing database: still refused, the good one untouched.
        let good = tiny_db(flavour, "pc_good");
        let before = state(p.target, &good);
        assert_refused(
            &setup,
            p.target,
            &Job::mysql(DST, SRC, &[&good, &only_source]),
            &good,
            "InvalidDBName.NotFound",
        );
        assert_eq!(before, state(p.target, &good));
        // Passing.
        p.target.exec(&format!("CREATE DATABASE {}", ident(&only_source)));
        assert_copied(
            &setup.run(&Job::mysql(DST, SRC, &[&only_source])),
            p.target,
            &only_source,
        );
    }

    fn rule_7_dbinfo_shape_and_duplicates(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = tiny_db(flavour, "pc_info");
        let setup = Setup::new(p.source, p.target);
        let cases = [
            (format!(r#"{{"DBNames":{{"{db}":"{db}"}}}}"#), "InvalidDBInfo.Format"),
            (format!(r#"{{"DBNames":"{db}"}}"#), "InvalidDBInfo.Format"),
            ("not json at all".to_string(), "InvalidDBInfo.Format"),
            (format!(r#"{{"DBNames":["{db}"]"#), "InvalidDBInfo.Format"),
            (r#"{"DBNames":[]}"#.to_string(), "InvalidDBInfo.Format"),
            (format!(r#"{{"DBNames":["{db}","{db}"]}}"#), "InvalidDBName.Duplicate"),
        ];
        for (info, code) in cases {
            let out = assert_refused(&setup, p.target, &Job::raw(DST, SRC, &info), &db, code);
            assert!(out.message().is_some(), "a message explains {info}\n{}", out.describe());
        }
        assert_copied(
            &setup.run(&Job::raw(DST, SRC, &format!(r#"{{"DBNames":["{db}"]}}"#))),
            p.target,
            &db,
        );
    }

    fn rule_8_target_must_be_unlocked(flavour: Flavour) {
        // read_only is global state: a dedicated target.
        let source = pair_of(flavour).source;
        let target = flavour.start();
        let db = unique("pc_lock");
        create_source((source, &target), &db, "utf8mb4", TINY);
        let setup = Setup::new(source, &target);
        target.exec("SET GLOBAL read_only = 1");
        assert_refused(
            &setup,
            &target,
            &Job::mysql(DST, SRC, &[&db]),
            &db,
            "IncorrectDBInstanceLockMode",
        );
        target.exec("SET GLOBAL read_only = 0");
        let locked = Setup::with(
            Instance::mysql(SRC, source),
            Instance::mysql(DST, &target).lock_mode("ManualLock"),
        );
        assert_refused(
            &locked,
            &target,
            &Job::mysql(DST, SRC, &[&db]),
            &db,
            "IncorrectDBInstanceLockMode",
        );
        // A locked source does not matter; an explicit Unlock passes.
        let unlocked = Setup::with(
            Instance::mysql(SRC, source).lock_mode("ManualLock"),
            Instance::mysql(DST, &target).lock_mode("Unlock"),
        );
        assert_copied(&unlocked.run(&Job::mysql(DST, SRC, &[&db])), &target, &db);
    }

    fn rule_9_target_storage_must_hold_the_source_databases(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("pc_storage");
        // About 8 MB of data on the source.
        create_source(
            (p.source, p.target),
            &db,
            "utf8mb4",
            &format!(
                "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'a'), (2, 'b');
                 CREATE TABLE filler (id INT PRIMARY KEY, pad VARCHAR(1000));
                 INSERT INTO filler SELECT seq, REPEAT('x', 1000) FROM {};
                 ANALYZE TABLE filler;",
                flavour.seq(8000)
            ),
        );
        let small = Setup::with(
            Instance::mysql(SRC, p.source),
            Instance::mysql(DST, p.target).storage_gb(0.001),
        );
        let out = assert_refused(
            &small,
            p.target,
            &Job::mysql(DST, SRC, &[&db]),
            &db,
            "InsufficientStorage",
        );
        assert!(out.message().is_some_and(|m| m.contains("bytes")), "{}", out.describe());
        let roomy = Setup::with(
            Instance::mysql(SRC, p.source),
            Instance::mysql(DST, p.target).storage_gb(1.0),
        );
        let out = roomy.run(&Job::mysql(DST, SRC, &[&db]));
        out.assert_success();
        assert_eq!(out.rows(), Some(8002));
    }

    fn existing_target_tables_fail_or_are_dropped(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = tiny_db(flavour, "pc_exist");
        p.target.exec(&format!(
            "USE {}; CREATE TABLE t (id INT PRIMARY KEY, other TEXT); INSERT INTO t VALUES (99, 'keep me');",
            ident(&db)
        ));
        let setup = Setup::new(p.source, p.target);
        let fail = Job::mysql(DST, SRC, &[&db]).option("existing_tables", "\"fail\"");
        let out = assert_refused(&setup, p.target, &fail, &db, "InvalidDBName.Exists");
        assert!(out.message().is_some_and(|m| m.contains('t')), "{}", out.describe());
        assert_eq!(
            p.target
                .scalar(&format!("SELECT other FROM {}.t WHERE id = 99", ident(&db)))
                .as_deref(),
            Some("keep me"),
            "the existing table is untouched"
        );
        // The default is "fail" too.
        assert_refused(
            &setup,
            p.target,
            &Job::mysql(DST, SRC, &[&db]),
            &db,
            "InvalidDBName.Exists",
        );
        let drop = Job::mysql(DST, SRC, &[&db]).option("existing_tables", "\"drop\"");
        let out = setup.run(&drop);
        out.assert_success();
        crate::common::assert_same(p.source, p.target, &db);
    }

    fn a_rejection_without_json_prints_error_code(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = tiny_db(flavour, "pc_human");
        let setup = Setup::new(p.source, p.target);
        let job = Job::mysql(SRC, SRC, &[&db]).write(&setup.files, "same.toml");
        let out = dbferry_testkit::dbferry(
            &crate::common::bin(),
            &[
                "run".as_ref(),
                "--config".as_ref(),
                setup.config.as_os_str(),
                job.as_os_str(),
            ],
        );
        assert_eq!(out.code, Some(2), "{}", out.describe());
        assert!(
            out.stderr.contains("error[InvalidParameter.SameInstance]: "),
            "{}",
            out.describe()
        );
        assert!(out.result.is_none(), "no JSON without --json\n{}", out.describe());
    }

    fn rule_5_an_instance_in_another_import_is_not_running(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("pc_busy");
        create_source(
            (p.source, p.target),
            &db,
            "utf8mb4",
            &format!(
                "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(64)); INSERT INTO t SELECT seq, LPAD(seq, 64, 'x') FROM {};",
                flavour.seq(100_000)
            ),
        );
        let other = tiny_db(flavour, "pc_busy_other");
        let setup = Setup::new(p.source, p.target);
        // A slow first import holds both instances...
        let slow = Job::mysql(DST, SRC, &[&db]).option("max_bytes_per_sec", "500000");
        let slow_path = slow.write(&setup.files, "slow.toml");
        let mut first = dbferry_testkit::spawn_run(&crate::common::bin(), &setup.config, &slow_path);
        assert!(
            first.wait_for_line(std::time::Duration::from_secs(60), |l| l.contains("\"phase\":\"copy\"")),
            "the first import reached its copy: {}",
            first.stdout_so_far()
        );
        // ...so a second one naming either of them is refused, changing nothing.
        assert_refused(
            &setup,
            p.target,
            &Job::mysql(DST, SRC, &[&other]),
            &other,
            "IncorrectDBInstanceState",
        );
        first.interrupt().expect("SIGINT");
        let ended = first.wait(std::time::Duration::from_secs(30));
        assert_eq!(ended.status(), Some("Cancelled"), "{}", ended.describe());
        // Once it ended, the instances are free again.
        assert_copied(&setup.run(&Job::mysql(DST, SRC, &[&other])), p.target, &other);
    }
}
