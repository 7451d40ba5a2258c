//! The weaker steps of the snapshot ladder hold one instant under writes:
//! a writer keeps two tables in step (one row in each per transaction)
//! during the copy, and the copies never disagree. The source logs in with
//! the cloud grant list (plus BACKUP_ADMIN for that step), so the step taken
//! is `lock_tables` or `lock_instance_for_backup+lock_tables`.

use std::time::Duration;

use dbferry_testkit::{ident, Flavour, Instance};

use crate::common::{count, create_source, pair_of, unique, Setup, DST, SRC};

const CLOUD_GRANTS: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, \
     CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER, EVENT, LOCK TABLES, EXECUTE, PROCESS, \
     REPLICATION CLIENT, REPLICATION SLAVE ON *.*";

fn step_holds_under_writes(flavour: Flavour, extra: &[&str], method: &str) {
    let p = pair_of(flavour);
    let db = unique("ladder_w");
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
    let user = unique("ladder_user");
    let mut grants = vec![CLOUD_GRANTS];
    grants.extend_from_slice(extra);
    p.source.create_user(&user, "Cloud-pw-1", &grants);
    std::thread::scope(|s| {
        let writer = s.spawn(|| p.source.exec(&format!("CALL {}.churn()", ident(&ctl))));
        std::thread::sleep(Duration::from_millis(300));
        let setup = Setup::with(
            Instance::mysql(SRC, p.source).login(&user, "Cloud-pw-1"),
            Instance::mysql(DST, p.target),
        );
        let out = setup.copy(&[&db], &[("max_bytes_per_sec", "1000000"), ("parallelism", "4")]);
        p.source.exec(&format!("INSERT INTO {}.stop VALUES (1)", ident(&ctl)));
        writer.join().expect("writer thread");
        out.assert_success();
        let result = out.result.as_ref().expect("a result");
        assert_eq!(
            result.get("Consistency").and_then(|v| v.as_str()),
            Some("global"),
            "{}",
            out.describe()
        );
        assert_eq!(
            result.get("ConsistencyMethod").and_then(|v| v.as_str()),
            Some(method),
            "{}",
            out.describe()
        );
        let (na, nb) = (count(p.target, &db, "a"), count(p.target, &db, "b"));
        assert!(na > 3000, "the writer was running during the copy ({na} rows)");
        assert_eq!(na, nb, "both tables were read at the same instant\n{}", out.describe());
    });
}

#[test]
fn mysql_lock_tables_alone_holds_one_instant_under_writes() {
    step_holds_under_writes(Flavour::MySql, &[], "lock_tables");
}

#[test]
fn mysql_instance_backup_lock_with_table_locks_holds_one_instant_under_writes() {
    step_holds_under_writes(
        Flavour::MySql,
        &["BACKUP_ADMIN ON *.*"],
        "lock_instance_for_backup+lock_tables",
    );
}

#[test]
fn mariadb_lock_tables_alone_holds_one_instant_under_writes() {
    step_holds_under_writes(Flavour::MariaDb, &[], "lock_tables");
}
