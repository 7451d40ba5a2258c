//! Least-privilege accounts and sizes that do not trust cached statistics
//! (issue 20, items 3 and 4), on both flavours.
//!
//! - An account with exactly a cloud database's grant list (no RELOAD, no
//!   SUPER, no `*_ADMIN`) imports, and the copy is compared by the servers'
//!   own `CHECKSUM TABLE` and ordered row hashes.
//! - Each step of the snapshot ladder is taken by the account that may:
//!   RELOAD → `FLUSH TABLES WITH READ LOCK` (MariaDB: `BACKUP STAGE`);
//!   BACKUP_ADMIN without RELOAD (MySQL) → `LOCK INSTANCE FOR BACKUP` +
//!   `LOCK TABLES`; neither → `LOCK TABLES … READ`. The result says which
//!   (`ConsistencyMethod`) and that the snapshot is global.
//! - A refused login is named as such, not as an instance that is not
//!   Running; a privilege the account certainly lacks is a precheck refusal
//!   that names it, with nothing changed on the target.
//! - Tables loaded just before the import are planned and counted at their
//!   true size on MySQL, whose `information_schema.TABLES` still describes
//!   them as nearly empty.
//!
//! Assumptions about the daemon's result object: `Consistency` and
//! `ConsistencyMethod` (daemon/src/import/outcome.rs); the `planned` event's
//! `chunks`; `error[CODE]` codes of daemon/src/codes.rs.

use dbferry_testkit::{Flavour, Instance, Job, Outcome};

use crate::common::{
    assert_same, create_source, dedicated_pair_of, pair_of, planned_chunks, state, unique, Setup, DST, SRC,
};

/// The grant list of a cloud database account, as in the issue: no RELOAD,
/// SUPER or `*_ADMIN`.
const CLOUD_GRANTS: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, \
     CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER, EVENT, LOCK TABLES, EXECUTE, PROCESS, \
     REPLICATION CLIENT, REPLICATION SLAVE ON *.*";

fn result_str(out: &Outcome, key: &str) -> Option<String> {
    out.result.as_ref()?.get(key)?.as_str().map(str::to_string)
}

/// Two tables of `rows` rows each.
fn two_tables(flavour: Flavour, rows: u64) -> String {
    let seq = flavour.seq(rows);
    format!(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(40), f DOUBLE);
         INSERT INTO a SELECT seq, CONCAT('a', seq), seq / 7 FROM {seq};
         CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(40), d DATETIME);
         INSERT INTO b SELECT seq, CONCAT('b', seq), TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE FROM {seq};"
    )
}

dbferry_testkit::on_both_flavours! {
fn a_cloud_shaped_account_imports_with_one_consistent_snapshot(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("priv_cloud");
    create_source((p.source, p.target), &db, "utf8mb4", &two_tables(flavour, 3000));
    let user = unique("cloud");
    p.source.create_user(&user, "cloud-pw", &[CLOUD_GRANTS]);
    p.target.create_user(&user, "cloud-pw", &[CLOUD_GRANTS]);
    let setup = Setup::with(
        Instance::mysql(SRC, p.source).login(&user, "cloud-pw"),
        Instance::mysql(DST, p.target).login(&user, "cloud-pw"),
    );
    let out = setup.run(&Job::mysql(DST, SRC, &[&db]).option("verify", "\"checksum\""));
    out.assert_success();
    assert_eq!(result_str(&out, "Consistency").as_deref(), Some("global"), "{}", out.describe());
    assert_eq!(
        result_str(&out, "ConsistencyMethod").as_deref(),
        Some("lock_tables"),
        "without RELOAD or BACKUP_ADMIN the migrated tables are locked for the snapshot\n{}",
        out.describe()
    );
    assert_eq!(assert_same(p.source, p.target, &db), 6000);
}

fn each_step_of_the_snapshot_ladder_is_taken_by_the_account_that_may(flavour: Flavour) {
    let p = pair_of(flavour);
    let reader = "SELECT, SHOW VIEW, TRIGGER, EVENT, EXECUTE, PROCESS, SHOW DATABASES ON *.*";
    let mut steps = vec![
        ("RELOAD, LOCK TABLES ON *.*", if flavour == Flavour::MySql { "flush_tables_with_read_lock" } else { "backup_stage" }),
        ("LOCK TABLES ON *.*", "lock_tables"),
    ];
    if flavour == Flavour::MySql {
        steps.push(("LOCK TABLES ON *.*; GRANT BACKUP_ADMIN ON *.*", "lock_instance_for_backup+lock_tables"));
    }
    for (grants, method) in steps {
        let db = unique("priv_ladder");
        create_source((p.source, p.target), &db, "utf8mb4", &two_tables(flavour, 500));
        let user = unique("ladder");
        let extra: Vec<&str> = grants.split("; GRANT ").collect();
        let mut all = vec![reader];
        all.extend(extra);
        p.source.create_user(&user, "ladder-pw", &all);
        let setup = Setup::with(
            Instance::mysql(SRC, p.source).login(&user, "ladder-pw"),
            Instance::mysql(DST, p.target),
        );
        let out = setup.run(&Job::mysql(DST, SRC, &[&db]));
        out.assert_success();
        assert_eq!(result_str(&out, "Consistency").as_deref(), Some("global"), "{grants}\n{}", out.describe());
        assert_eq!(result_str(&out, "ConsistencyMethod").as_deref(), Some(method), "{grants}\n{}", out.describe());
        assert_eq!(assert_same(p.source, p.target, &db), 1000);
    }
}

fn a_missing_privilege_is_a_precheck_refusal_that_names_it(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("priv_missing");
    create_source((p.source, p.target), &db, "utf8mb4", &two_tables(flavour, 10));
    let before = state(p.target, &db);
    // A target account that may read and create, but not load or index.
    let writer = unique("nowrite");
    p.target.create_user(&writer, "nw-pw", &["SELECT, CREATE, ALTER, SHOW DATABASES ON *.*"]);
    let setup = Setup::with(
        Instance::mysql(SRC, p.source),
        Instance::mysql(DST, p.target).login(&writer, "nw-pw"),
    );
    let out = setup.run(&Job::mysql(DST, SRC, &[&db]));
    out.assert_rejected("IncorrectDBInstanceAccount.MissingPrivilege");
    let message = result_str(&out, "Message").unwrap_or_default();
    for privilege in ["INSERT", "DELETE", "INDEX"] {
        assert!(message.contains(privilege), "names {privilege}: {message}");
    }
    assert!(message.contains(DST) && message.contains(&db), "{message}");
    assert_eq!(state(p.target, &db), before, "nothing changed on the target");

    // A source account that sees the database but may not read it.
    let reader = unique("noread");
    p.source.create_user(&reader, "nr-pw", &["SHOW DATABASES, PROCESS ON *.*"]);
    let setup = Setup::with(
        Instance::mysql(SRC, p.source).login(&reader, "nr-pw"),
        Instance::mysql(DST, p.target),
    );
    let out = setup.run(&Job::mysql(DST, SRC, &[&db]));
    out.assert_rejected("IncorrectDBInstanceAccount.MissingPrivilege");
    let message = result_str(&out, "Message").unwrap_or_default();
    assert!(message.contains("SELECT") && message.contains(SRC), "{message}");
    assert_eq!(state(p.target, &db), before, "nothing changed on the target");
}

fn a_refused_login_is_named_and_changes_nothing(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("priv_login");
    create_source((p.source, p.target), &db, "utf8mb4", &two_tables(flavour, 10));
    let before = state(p.target, &db);
    let setup = Setup::with(
        Instance::mysql(SRC, p.source).login("ferry", "not-the-password"),
        Instance::mysql(DST, p.target),
    );
    let out = setup.run(&Job::mysql(DST, SRC, &[&db]));
    out.assert_rejected("IncorrectDBInstanceAccount.AccessDenied");
    let message = result_str(&out, "Message").unwrap_or_default();
    assert!(!message.contains("not Running"), "{message}");
    assert!(message.contains(SRC) && message.contains("login"), "{message}");
    assert_eq!(state(p.target, &db), before, "nothing changed on the target");
}
}

/// On MySQL a table filled a moment ago reads as a few KiB in
/// `information_schema.TABLES`; it must still be cut into chunks, and
/// count at its true size against the target's storage.
#[test]
fn freshly_loaded_tables_are_split_and_counted_at_their_true_size_on_mysql() {
    // Dedicated servers: the storage rule adds up everything on the target.
    let (source, target) = dedicated_pair_of(Flavour::MySql);
    let db = unique("fresh");
    let seq = Flavour::MySql.seq(200_000);
    create_source(
        (&source, &target),
        &db,
        "utf8mb4",
        &format!(
            "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(255));
             INSERT INTO big SELECT seq, REPEAT(CHAR(65 + seq % 26), 200) FROM {seq};"
        ),
    );
    let cached = source
        .scalar(&format!(
            "SELECT DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'big'"
        ))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let on_disk = 200_000u64 * 200;
    assert!(
        cached < on_disk / 10,
        "the premise: the server's statistics under-count a fresh table ({cached} bytes)"
    );

    // Storage: 0.02 GiB (21 MiB) is more than the cached figures but less
    // than the ~45 MB the table holds.
    let tiny = Setup::with(
        Instance::mysql(SRC, &source),
        Instance::mysql(DST, &target).storage_gb(0.02),
    );
    let refused = tiny.run(&Job::mysql(DST, SRC, &[&db]));
    refused.assert_rejected("InsufficientStorage");
    let message = result_str(&refused, "Message").unwrap_or_default();
    let incoming: u64 = message
        .split("the source databases ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(incoming >= on_disk, "counted at its true size: {message}");
    assert_eq!(target.objects(&db), Vec::new(), "nothing created on the refused target");

    let setup = Setup::new(&source, &target);
    let out = setup.copy(&[&db], &[("chunk_bytes", "4000000"), ("parallelism", "4")]);
    out.assert_success();
    let chunks = planned_chunks(&out).unwrap_or(0);
    assert!(
        chunks >= 5,
        "a 45 MB table in 4 MB chunks is split ({chunks} chunk(s))\n{}",
        out.describe()
    );
    assert_eq!(assert_same(&source, &target, &db), 200_000);
}

dbferry_testkit::on_both_flavours! {
/// A resumed import opens a new snapshot; a cloud-shaped account (no RELOAD)
/// locks the migrated tables for it, as the first attempt did, so that
/// what is copied again is read at one instant.
fn a_resumed_import_of_a_cloud_shaped_account_locks_its_tables_again(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("priv_resume");
    // One table of many chunks: it is unfinished when the cancel lands, so
    // the resume copies it again from its own snapshot.
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4",
        &format!(
            "CREATE TABLE a (id INT PRIMARY KEY, pad VARCHAR(1000));
             INSERT INTO a SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) FROM {};",
            flavour.seq(20_000)
        ),
    );
    let user = unique("cloudr");
    p.source.create_user(&user, "cloud-pw", &[CLOUD_GRANTS]);
    p.target.create_user(&user, "cloud-pw", &[CLOUD_GRANTS]);
    let setup = Setup::with(
        Instance::mysql(SRC, p.source).login(&user, "cloud-pw"),
        Instance::mysql(DST, p.target).login(&user, "cloud-pw"),
    );
    let job = crate::faults::slow_job(&setup.files, "resume.toml", &db, &[]);
    let mut running = dbferry_testkit::spawn_run(&crate::common::bin(), &setup.config, &job);
    crate::faults::wait_for_committed_rows(&mut running);
    let first = running.interrupt_expecting_cancel(std::time::Duration::from_secs(3));
    assert_eq!(result_str(&first, "ConsistencyMethod").as_deref(), Some("lock_tables"), "{}", first.describe());
    let resumed = crate::faults::resume(&setup.config, crate::faults::import_id(&first));
    resumed.assert_success();
    assert_eq!(result_str(&resumed, "Consistency").as_deref(), Some("global"), "{}", resumed.describe());
    assert_eq!(
        result_str(&resumed, "ConsistencyMethod").as_deref(),
        Some("lock_tables"),
        "{}",
        resumed.describe()
    );
    assert_eq!(assert_same(p.source, p.target, &db), 20_000);
}
}
