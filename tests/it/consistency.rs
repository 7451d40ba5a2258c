//! Consistent reads, and the privilege fallback.
//!
//! - With RELOAD (FTWRL) or BACKUP STAGE rights the source is read at one
//!   instant: a writer that keeps two tables in step (one row in each per
//!   transaction) during the copy cannot make the copies disagree.
//! - A source login without RELOAD and without the MariaDB BACKUP privilege
//!   still copies, with a warning, and the result records per-table
//!   consistency.
//!
//! Assumptions about the daemon's result object (daemon/src/import/outcome.rs):
//! `Consistency` is `"global"` or `"per_table"`, and `Warnings` is a list of
//! strings; the fallback warning mentions the consistency or the privilege.
//! The users are created on the shared source server (distinct names; they
//! affect no other test).

use std::time::Duration;

use dbferry_testkit::{ident, on_both_flavours, Flavour, Instance, Job};

use crate::common::{assert_same, count, create_source, pair_of, unique, Setup, DST, SRC};

fn consistency(out: &dbferry_testkit::Outcome) -> Option<String> {
    out.result.as_ref()?.get("Consistency")?.as_str().map(str::to_string)
}

fn warnings(out: &dbferry_testkit::Outcome) -> Vec<String> {
    out.result
        .as_ref()
        .and_then(|r| r.get("Warnings"))
        .and_then(|w| w.as_array())
        .map(|w| w.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Two tables of 2,000 rows.
fn data(flavour: Flavour) -> String {
    format!(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO a SELECT seq, 'x' FROM {seq};
         CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO b SELECT seq, 'y' FROM {seq};",
        seq = flavour.seq(2000)
    )
}

on_both_flavours! {
    fn a_source_login_without_reload_or_backup_falls_back_to_per_table_consistency(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("cons_fallback");
        create_source((p.source, p.target), &db, "utf8mb4", &data(flavour));
        let user = unique("weak");
        // Enough to read everything, but neither RELOAD nor BINLOG/BACKUP rights.
        p.source.create_user(
            &user,
            "weak-pw",
            &["SELECT, SHOW VIEW, TRIGGER, EVENT, EXECUTE, PROCESS, SHOW DATABASES ON *.*"],
        );
        let setup = Setup::with(
            Instance::mysql(SRC, p.source).login(&user, "weak-pw"),
            Instance::mysql(DST, p.target),
        );
        let out = setup.run(&Job::mysql(DST, SRC, &[&db]));
        out.assert_success();
        assert_eq!(consistency(&out).as_deref(), Some("per_table"), "{}", out.describe());
        let warned = warnings(&out)
            .iter()
            .chain(
                out.lines
                    .iter()
                    .filter_map(|l| l.get("message").and_then(|m| m.as_str()))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .any(|w| {
                let w = w.to_lowercase();
                w.contains("consisten") || w.contains("privilege") || w.contains("reload")
            });
        assert!(warned, "the fallback is announced as a warning\n{}", out.describe());
        assert_same(p.source, p.target, &db);
    }

    fn a_privileged_source_login_reads_one_global_snapshot(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("cons_global");
        create_source((p.source, p.target), &db, "utf8mb4", &data(flavour));
        let setup = Setup::new(p.source, p.target);
        let out = setup.copy(&[&db], &[]);
        out.assert_success();
        assert_eq!(consistency(&out).as_deref(), Some("global"), "{}", out.describe());
        assert_same(p.source, p.target, &db);
    }

    fn concurrent_writes_cannot_tear_a_global_snapshot(flavour: Flavour) {
        // A dedicated source: the writer hammers it for the whole copy.
        let source = flavour.start();
        let target = pair_of(flavour).target;
        let db = unique("cons_tear");
        create_source(
            (&source, target),
            &db,
            "utf8mb4",
            &format!(
                "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(500));
                 CREATE TABLE b (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(500));
                 INSERT INTO a (pad) SELECT REPEAT('a', 500) FROM {seq};
                 INSERT INTO b (pad) SELECT REPEAT('b', 500) FROM {seq};",
                seq = flavour.seq(4000)
            ),
        );
        source.exec(&format!(
            "CREATE DATABASE ctl; CREATE TABLE ctl.stop (x INT);
             DELIMITER $$
             CREATE PROCEDURE ctl.churn()
             BEGIN
               WHILE NOT EXISTS (SELECT 1 FROM ctl.stop) DO
                 START TRANSACTION;
                 INSERT INTO {db}.a (pad) VALUES (REPEAT('w', 500));
                 INSERT INTO {db}.b (pad) VALUES (REPEAT('w', 500));
                 COMMIT;
               END WHILE;
             END$$
             DELIMITER ;",
            db = ident(&db)
        ));
        std::thread::scope(|s| {
            let writer = s.spawn(|| source.exec("CALL ctl.churn()"));
            std::thread::sleep(Duration::from_millis(300));
            let setup = Setup::with(Instance::mysql(SRC, &source), Instance::mysql(DST, target));
            let out = setup.copy(&[&db], &[("max_bytes_per_sec", "2000000"), ("parallelism", "4")]);
            source.exec("INSERT INTO ctl.stop VALUES (1)");
            writer.join().expect("writer thread");
            out.assert_success();
            assert_eq!(consistency(&out).as_deref(), Some("global"), "{}", out.describe());
            let (na, nb) = (count(target, &db, "a"), count(target, &db, "b"));
            assert!(na > 4000, "the writer was running during the copy ({na} rows)");
            assert_eq!(na, nb, "both tables were read at the same instant");
            assert_eq!(out.rows(), Some(na + nb));
        });
    }
}
