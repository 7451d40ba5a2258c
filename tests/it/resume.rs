//! An interrupted import and what comes after it.
//!
//! Besides `dbferry resume` (the fault suite), an interrupted import can be
//! run again: the tables the first run created make a second run with
//! `existing_tables = "fail"` refuse (nothing changed), and
//! `existing_tables = "drop"` replaces them and yields an exact copy with no
//! duplicated rows. On both flavours.
//!
//! Assumptions: the cancelled result lists what it created on the target in
//! `Created` (issue 2 §5: "the result lists what it had created").

use std::time::Duration;

use dbferry_testkit::{on_both_flavours, spawn_run, Job};

use crate::common::{assert_same, bin, create_source, pair_of, state, unique, Setup, DST, SRC};

on_both_flavours! {
    fn an_interrupted_import_is_redone_exactly_with_existing_tables_drop(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("resume");
        create_source(
            (p.source, p.target),
            &db,
            "utf8mb4",
            &format!(
                "CREATE TABLE a (id INT PRIMARY KEY, pad VARCHAR(1000));
                 INSERT INTO a SELECT seq, REPEAT('a', 1000) FROM {};
                 CREATE TABLE b (id INT PRIMARY KEY, v INT);
                 INSERT INTO b SELECT seq, seq FROM {};
                 CREATE VIEW v AS SELECT COUNT(*) AS n FROM a;",
                flavour.seq(5000),
                flavour.seq(1000)
            ),
        );
        let setup = Setup::new(p.source, p.target);
        let job = Job::mysql(DST, SRC, &[&db])
            .option("max_bytes_per_sec", "400000")
            .write(&setup.files, "slow.toml");
        let mut running = spawn_run(&bin(), &setup.config, &job);
        assert!(
            running.wait_for_line(Duration::from_secs(60), |l| l.contains("\"progress\"")),
            "the copy started\n{}",
            running.stdout_so_far()
        );
        std::thread::sleep(Duration::from_millis(800));
        running.interrupt().expect("SIGINT");
        let first = running.wait(Duration::from_secs(30));
        assert_eq!(first.code, Some(4), "{}", first.describe());
        let created = first
            .result
            .as_ref()
            .and_then(|r| r.get("Created"))
            .and_then(|c| c.as_array())
            .map(|c| c.len())
            .unwrap_or(0);
        assert!(
            created > 0,
            "the cancelled result lists what it created\n{}",
            first.describe()
        );
        let partial = state(p.target, &db).unwrap_or_default();
        assert!(!partial.is_empty(), "the interrupted run left tables behind");

        // Again with "fail": refused, and the partial copy is left as it was.
        let again = setup.copy(&[&db], &[]);
        again.assert_rejected("InvalidDBName.Exists");
        assert_eq!(state(p.target, &db).unwrap_or_default(), partial);

        // Again with "drop": an exact copy.
        let redo = setup.copy(&[&db], &[("existing_tables", "\"drop\"")]);
        redo.assert_success();
        assert_eq!(redo.rows(), Some(6000), "{}", redo.describe());
        assert_same(p.source, p.target, &db);
    }
}
