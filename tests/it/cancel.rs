//! A cancel acted on within a second in the phases whose single statements
//! can run for hours: an index build of the finish phase, and a digest of
//! the verify phase, each waiting on a metadata lock which another session
//! of the target holds (for a day, by the server's `lock_wait_timeout`).
//! Ctrl-C must end the import `Cancelled` at once, not when the statement
//! ends, and `resume` then finishes an exact copy.

use std::time::{Duration, Instant};

use dbferry_testkit::{ident, literal, spawn_run, Job, Server};

use crate::common::{assert_same, bin, create_source, pair_of, unique, Setup, DST, SRC};
use crate::faults::{import_id, resume, slow_job, slow_source_of, ROWS};

/// Rows of the keyless table of the verify-phase test.
const KEYLESS_ROWS: u64 = 3_000;

/// A session of `server` that holds a metadata lock until it is dropped.
struct MetadataLock {
    server: &'static Server,
    marker: String,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl MetadataLock {
    /// A shared lock on `db.t` (an open transaction that read it): rows may
    /// be written, but no `ALTER TABLE` finish.
    fn shared(server: &'static Server, db: &str) -> Self {
        Self::hold(
            server,
            &format!("BEGIN; SELECT COUNT(*) FROM {}.t", ident(db)),
            "COMMIT",
        )
    }

    /// `LOCK TABLES db.table WRITE`: no other session may read `table`.
    fn exclusive(server: &'static Server, db: &str, table: &str) -> Self {
        Self::hold(
            server,
            &format!("LOCK TABLES {}.{} WRITE", ident(db), ident(table)),
            "UNLOCK TABLES",
        )
    }

    /// Runs `take`, sleeps, then `release` (when the sleep is not killed).
    fn hold(server: &'static Server, take: &str, release: &str) -> Self {
        let marker = unique("dbferry_test_lock");
        let script = format!("{take}; SELECT SLEEP(3600) AS {marker}; {release};");
        let holder = std::thread::spawn(move || {
            // Killed by Drop: the client then fails, which is expected.
            let _ = server.try_exec(&script);
        });
        let lock = Self {
            server,
            marker,
            holder: Some(holder),
        };
        lock.wait_until(|n| n > 0, "the lock holder to start sleeping");
        lock
    }

    /// The ids of the holder's sessions (not the asking one, whose own
    /// text holds the pattern too).
    fn sessions(&self) -> Vec<String> {
        self.server
            .query(&format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE {} AND ID <> CONNECTION_ID()",
                literal(&format!("%SLEEP(3600) AS {}%", self.marker))
            ))
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect()
    }

    fn wait_until(&self, done: impl Fn(usize) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self.sessions().len()) {
            assert!(Instant::now() < deadline, "waited 60 s for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MetadataLock {
    fn drop(&mut self) {
        for id in self.sessions() {
            let _ = self.server.try_exec(&format!("KILL {id}"));
        }
        if let Some(holder) = self.holder.take() {
            let _ = holder.join();
        }
    }
}

/// Waits until the target runs a statement starting with `statement` on
/// `db` that waits for a metadata lock, behind a [`MetadataLock`].
fn wait_for_a_blocked(statement: &str, target: &Server, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let blocked = target
            .scalar(&format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE (DB = {} OR INFO LIKE {}) \
                 AND INFO LIKE {} AND STATE LIKE '%metadata lock%' AND ID <> CONNECTION_ID()",
                literal(db),
                literal(&format!("%{db}%")),
                literal(&format!("{statement}%"))
            ))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if blocked > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no {statement} on {db} waited for the lock");
        std::thread::sleep(Duration::from_millis(100));
    }
}

dbferry_testkit::on_both_flavours! {
    fn ctrl_c_while_an_index_build_waits_cancels_at_once_and_resume_finishes(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("cancel_finish");
        create_source(
            (p.source, p.target),
            &db,
            "utf8mb4",
            &format!(
                "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(100), KEY by_v (v));
                 INSERT INTO t SELECT seq, LPAD(seq, 100, 'v') FROM {};
                 ANALYZE TABLE t;",
                flavour.seq(100_000)
            ),
        );
        let setup = Setup::new(p.source, p.target);
        // Some 14 MB, past the size whose indexes are built with the table
        // (8 MiB), so that `by_v` is built after the data: as soon as `t` is
        // copied, or by the finish if the copy ends first. Slowed so that
        // the lock is taken while the copy runs.
        let job = Job::mysql(DST, SRC, &[&db])
            .option("max_bytes_per_sec", "4000000")
            .write(&setup.files, "cancel_finish.toml");
        let running = spawn_run(&bin(), &setup.config, &job);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !p.target.tables(&db).contains(&"t".to_string()) {
            assert!(Instant::now() < deadline, "the schema phase created t\n{}", running.stdout_so_far());
            std::thread::sleep(Duration::from_millis(20));
        }
        let lock = MetadataLock::shared(p.target, &db);
        wait_for_a_blocked("ALTER TABLE", p.target, &db);

        let first = running.interrupt_expecting_cancel(Duration::from_secs(3));
        assert!(!first.stderr.contains("error["), "{}", first.describe());
        drop(lock);

        let resumed = resume(&setup.config, import_id(&first));
        resumed.assert_success();
        assert_same(p.source, p.target, &db);
    }

    fn ctrl_c_while_a_digest_waits_cancels_at_once_and_resume_finishes(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("cancel_verify");
        slow_source_of(flavour, p.source, p.target, &db);
        // A table without a key is copied as one chunk, and the pipeline
        // takes the largest chunks first: its 3 MB go before `a`'s 1 MiB
        // chunks, so it is complete on the target seconds before the slowed
        // copy of `a` ends. Locked then, it stops the verify phase and
        // nothing before.
        p.source.exec_in(
            &db,
            &format!(
                "CREATE TABLE keyless (n INT, pad VARCHAR(1000));
                 INSERT INTO keyless SELECT seq, REPEAT('k', 1000) FROM {};",
                flavour.seq(KEYLESS_ROWS)
            ),
        );
        let setup = Setup::new(p.source, p.target);
        let job = slow_job(&setup.files, "cancel_verify.toml", &db, &[("verify", "\"checksum\"")]);
        let mut running = spawn_run(&bin(), &setup.config, &job);
        let deadline = Instant::now() + Duration::from_secs(60);
        let keyless_copied = || {
            p.target.tables(&db).contains(&"keyless".to_string())
                && p.target.scalar(&format!("SELECT COUNT(*) FROM {}.keyless", ident(&db)))
                    == Some(KEYLESS_ROWS.to_string())
        };
        while !keyless_copied() {
            assert!(Instant::now() < deadline, "keyless was copied\n{}", running.stdout_so_far());
            std::thread::sleep(Duration::from_millis(20));
        }
        let lock = MetadataLock::exclusive(p.target, &db, "keyless");
        assert!(
            !running.stdout_so_far().contains("\"phase\":\"verify\""),
            "the lock was taken while the copy still ran\n{}",
            running.stdout_so_far()
        );
        assert!(
            running.wait_for_line(Duration::from_secs(120), |l| l.contains("\"phase\":\"verify\"")),
            "the import reached its verify phase\n{}",
            running.stdout_so_far()
        );
        wait_for_a_blocked("SELECT", p.target, &db);

        let first = running.interrupt_expecting_cancel(Duration::from_secs(3));
        assert!(!first.stderr.contains("error["), "{}", first.describe());
        assert_eq!(first.rows(), Some(ROWS + KEYLESS_ROWS), "every row was committed before the verify\n{}", first.describe());
        drop(lock);

        let resumed = resume(&setup.config, import_id(&first));
        resumed.assert_success();
        assert_same(p.source, p.target, &db);
    }
}
