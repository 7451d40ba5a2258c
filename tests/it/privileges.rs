//! Least privilege on MySQL 9.7 and MariaDB 10.11.
//!
//! - An account with exactly the grants of a cloud instance's account (no
//!   RELOAD, SUPER or `*_ADMIN`) imports, on both sides, and the copy is
//!   checked by the servers' own checksums and row hashes. DEFINERs it may
//!   not set are rewritten with a warning.
//! - Each step of the snapshot ladder, with an account granted for exactly
//!   that step, holds one instant while a writer keeps two tables in step:
//!   the copies never disagree, and the result names the lock taken.
//!
//! Accounts are created on the shared servers under unique names.

use std::time::Duration;

use dbferry_testkit::{ident, Flavour, Instance, Job, Outcome, Server};

use crate::common::{count, create_source, fingerprint, pair_of, unique, Pair, Setup, DST, SRC};

/// The grants of a cloud instance's account, as issue 20 lists them.
pub const CLOUD_GRANTS: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, \
     CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER, EVENT, LOCK TABLES, EXECUTE, PROCESS, \
     REPLICATION CLIENT, REPLICATION SLAVE ON *.*";

const PASSWORD: &str = "Cloud-pw-1";

fn text(out: &Outcome, key: &str) -> Option<String> {
    out.result.as_ref()?.get(key)?.as_str().map(str::to_string)
}

fn warnings(out: &Outcome) -> Vec<String> {
    out.result
        .as_ref()
        .and_then(|r| r.get("Warnings"))
        .and_then(|w| w.as_array())
        .map(|w| w.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A config whose source and target log in as `source_user` and `target_user`.
fn setup_as(p: &Pair, source_user: &str, target_user: &str) -> Setup {
    Setup::with(
        Instance::mysql(SRC, p.source).login(source_user, PASSWORD),
        Instance::mysql(DST, p.target).login(target_user, PASSWORD),
    )
}

fn cloud_account(server: &Server, extra: &[&str]) -> String {
    let user = unique("cloud");
    let mut grants = vec![CLOUD_GRANTS];
    grants.extend_from_slice(extra);
    server.create_user(&user, PASSWORD, &grants);
    user
}

/// A source database of tables with a foreign key, a view, a trigger and a
/// procedure, all created by root.
fn cloud_database(p: &Pair, flavour: Flavour) -> String {
    let db = unique(&format!("cloud_{}", flavour.name()));
    let seq = flavour.seq(3000);
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4",
        &format!(
            "CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, KEY kn (name));
             CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, v DOUBLE, note TEXT,
               CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parent (id));
             INSERT INTO parent SELECT seq, CONCAT('p', seq) FROM {seq};
             INSERT INTO child SELECT seq, 1 + seq % 100, seq / 3, IF(seq % 7 = 0, NULL, REPEAT('n', seq % 50)) FROM {seq};
             CREATE VIEW big_parents AS SELECT id, name FROM parent WHERE id > 100;
             CREATE TRIGGER child_bi BEFORE INSERT ON child FOR EACH ROW SET NEW.v = IFNULL(NEW.v, 0);
             CREATE PROCEDURE count_children(OUT n INT) READS SQL DATA SELECT COUNT(*) INTO n FROM child;"
        ),
    );
    db
}

fn cloud_shaped_import(p: &Pair, flavour: Flavour) {
    let db = cloud_database(p, flavour);
    let source_user = cloud_account(p.source, &[]);
    let target_user = cloud_account(p.target, &[]);
    let out =
        setup_as(p, &source_user, &target_user).run(&Job::mysql(DST, SRC, &[&db]).option("verify", "\"checksum\""));
    out.assert_success();
    assert_eq!(
        text(&out, "Consistency").as_deref(),
        Some("global"),
        "{}",
        out.describe()
    );
    assert_eq!(
        text(&out, "SnapshotMethod").as_deref(),
        Some("LOCK TABLES READ"),
        "{}",
        out.describe()
    );
    // Independent check: every table's CHECKSUM TABLE and ordered row hash,
    // and the same objects on both sides.
    let (a, b) = (fingerprint(p.source, &db), fingerprint(p.target, &db));
    assert_eq!(a.tables, b.tables, "{db}: table contents differ");
    let names = |f: &crate::common::Fingerprint| f.objects.iter().map(|(k, n, _)| (*k, n.clone())).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "{db}: the same objects exist on both sides");
    // Objects whose DEFINER the account may not set are created with its
    // own, each named in a warning; every other object is identical.
    let warned = warnings(&out);
    for ((kind, name, create_a), (_, _, create_b)) in a.objects.iter().zip(&b.objects) {
        if create_a == create_b {
            continue;
        }
        assert!(
            warned
                .iter()
                .any(|w| w.contains(name.as_str()) && w.contains("DEFINER")),
            "{db}: SHOW CREATE {} {name} differs and no warning names its DEFINER\n{create_a}\n{create_b}\n{warned:?}",
            kind.keyword()
        );
        assert_eq!(
            create_b.replace(&format!("`{target_user}`@`%`"), "`root`@`localhost`"),
            *create_a,
            "{db}: {name} differs only by its DEFINER"
        );
    }
}

#[test]
fn mysql_a_cloud_shaped_account_imports() {
    // A target set up as cloud instances are: the binary log on (MySQL's
    // default) and log_bin_trust_function_creators ON, without which only
    // SUPER may create triggers (see the refusal test below).
    let pair = Pair {
        source: pair_of(Flavour::MySql).source,
        target: Flavour::MySql
            .start_with(&["--log-bin-trust-function-creators=ON"])
            .leak_until_exit(),
    };
    cloud_shaped_import(&pair, Flavour::MySql);
}

#[test]
fn mariadb_a_cloud_shaped_account_imports() {
    cloud_shaped_import(pair_of(Flavour::MariaDb), Flavour::MariaDb);
}

#[test]
fn mysql_a_trigger_the_target_account_cannot_create_is_refused_before_anything_changes() {
    // The shared target runs as MySQL ships: binary log on,
    // log_bin_trust_function_creators OFF.
    let p = pair_of(Flavour::MySql);
    assert_eq!(
        p.target
            .scalar("SELECT @@log_bin AND NOT @@log_bin_trust_function_creators")
            .as_deref(),
        Some("1"),
        "precondition: the binary log is on, log_bin_trust_function_creators OFF"
    );
    let db = cloud_database(p, Flavour::MySql);
    let source_user = cloud_account(p.source, &[]);
    let target_user = cloud_account(p.target, &[]);
    let before = p.target.objects(&db);
    let out = setup_as(p, &source_user, &target_user).run(&Job::mysql(DST, SRC, &[&db]));
    out.assert_rejected("IncorrectDBInstanceState");
    let message = out.message().unwrap_or_default();
    for needle in [
        "trigger child_bi",
        "SUPER",
        "log_bin_trust_function_creators",
        target_user.as_str(),
    ] {
        assert!(message.contains(needle), "the refusal names {needle}: {message}");
    }
    assert!(!message.contains("not Running"), "{message}");
    assert_eq!(p.target.objects(&db), before, "nothing changed on the target");
    assert!(before.is_empty());
}

#[test]
fn mysql_a_wrong_password_is_a_refused_login_not_an_unreachable_instance() {
    let p = pair_of(Flavour::MySql);
    let db = cloud_database(p, Flavour::MySql);
    let user = cloud_account(p.source, &[]);
    let setup = Setup::with(
        Instance::mysql(SRC, p.source).login(&user, "not-the-password"),
        Instance::mysql(DST, p.target),
    );
    let out = setup.run(&Job::mysql(DST, SRC, &[&db]));
    out.assert_rejected("IncorrectDBInstanceState");
    let message = out.message().unwrap_or_default();
    assert!(
        message.contains("refused the account")
            && message.contains("Access denied")
            && !message.contains("not Running"),
        "{message}"
    );
    assert!(p.target.objects(&db).is_empty(), "nothing changed on the target");
}

/// Copies two tables a writer keeps in step (one row in each per
/// transaction) with the source logging in as `source_user`; returns the
/// result after asserting the copies agree.
fn copy_under_writes(p: &Pair, flavour: Flavour, source_user: &str, source_password: &str) -> Outcome {
    let db = unique("ladder");
    let ctl = unique("ladder_ctl");
    let seq = flavour.seq(3000);
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4",
        &format!(
            "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(500));
             CREATE TABLE b (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(500));
             INSERT INTO a (pad) SELECT REPEAT('a', 500) FROM {seq};
             INSERT INTO b (pad) SELECT REPEAT('b', 500) FROM {seq};"
        ),
    );
    p.source.exec(&format!(
        "CREATE DATABASE {ctl}; CREATE TABLE {ctl}.stop (x INT);
         DELIMITER $$
         CREATE PROCEDURE {ctl}.churn()
         BEGIN
           WHILE NOT EXISTS (SELECT 1 FROM {ctl}.stop) DO
             START TRANSACTION;
             INSERT INTO {db}.a (pad) VALUES (REPEAT('w', 500));
             INSERT INTO {db}.b (pad) VALUES (REPEAT('w', 500));
             COMMIT;
           END WHILE;
         END$$
         DELIMITER ;",
        ctl = ident(&ctl),
        db = ident(&db)
    ));
    std::thread::scope(|s| {
        let writer = s.spawn(|| p.source.exec(&format!("CALL {}.churn()", ident(&ctl))));
        std::thread::sleep(Duration::from_millis(300));
        let setup = Setup::with(
            Instance::mysql(SRC, p.source).login(source_user, source_password),
            Instance::mysql(DST, p.target),
        );
        let out = setup.copy(&[&db], &[("max_bytes_per_sec", "1000000"), ("parallelism", "4")]);
        p.source.exec(&format!("INSERT INTO {}.stop VALUES (1)", ident(&ctl)));
        writer.join().expect("writer thread");
        out.assert_success();
        let (na, nb) = (count(p.target, &db, "a"), count(p.target, &db, "b"));
        assert!(na > 3000, "the writer was running during the copy ({na} rows)");
        assert_eq!(na, nb, "both tables were read at the same instant\n{}", out.describe());
        out
    })
}

fn assert_ladder_step(flavour: Flavour, extra: &[&str], method: &str) {
    let p = pair_of(flavour);
    let user = cloud_account(p.source, extra);
    let out = copy_under_writes(p, flavour, &user, PASSWORD);
    assert_eq!(
        text(&out, "Consistency").as_deref(),
        Some("global"),
        "{}",
        out.describe()
    );
    assert_eq!(
        text(&out, "SnapshotMethod").as_deref(),
        Some(method),
        "{}",
        out.describe()
    );
}

#[test]
fn mysql_ladder_reload_takes_a_global_read_lock() {
    assert_ladder_step(Flavour::MySql, &["RELOAD ON *.*"], "FLUSH TABLES WITH READ LOCK");
}

#[test]
fn mysql_ladder_backup_admin_takes_the_instance_backup_lock_and_table_locks() {
    assert_ladder_step(
        Flavour::MySql,
        &["BACKUP_ADMIN ON *.*"],
        "LOCK INSTANCE FOR BACKUP + LOCK TABLES READ",
    );
}

#[test]
fn mysql_ladder_lock_tables_alone_holds_one_instant() {
    assert_ladder_step(Flavour::MySql, &[], "LOCK TABLES READ");
}

#[test]
fn mariadb_ladder_reload_takes_backup_stage() {
    assert_ladder_step(Flavour::MariaDb, &["RELOAD ON *.*"], "BACKUP STAGE BLOCK_COMMIT");
}

#[test]
fn mariadb_ladder_lock_tables_alone_holds_one_instant() {
    assert_ladder_step(Flavour::MariaDb, &[], "LOCK TABLES READ");
}
