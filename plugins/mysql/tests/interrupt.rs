//! `Session::interrupt` against real MariaDB and MySQL servers: a digest
//! that waits on a metadata lock (another session holds `LOCK TABLES ...
//! WRITE`, and would for an hour) ends with an error as soon as the session
//! is interrupted from another thread, as a cancel during verification
//! does. Without the interrupt the digest would wait for the lock.

use std::time::{Duration, Instant};

use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::Session;
use dbferry_plugin_abi::protocol::{DigestsRequest, VerifyMode};
use dbferry_testkit::{literal, Server};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The ids of the sessions running `SELECT SLEEP(3600) AS <marker>`.
fn sleepers(server: &Server, marker: &str) -> Vec<String> {
    server
        .query(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE {} AND ID <> CONNECTION_ID()",
            literal(&format!("%SLEEP(3600) AS {marker}%"))
        ))
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect()
}

/// Whether some session of `server` waits for a metadata lock on `db`.
fn waits_for_the_lock(server: &Server, db: &str) -> bool {
    server
        .scalar(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE {} \
             AND STATE LIKE '%metadata lock%' AND ID <> CONNECTION_ID()",
            literal(&format!("%{db}%"))
        ))
        .is_some_and(|n| n != "0")
}

dbferry_testkit::on_both_flavours! {
fn a_digest_waiting_on_a_lock_ends_when_the_session_is_interrupted(flavour: Flavour) -> TestResult {
    let server: &'static Server = flavour.shared();
    let db = "interrupt_digest";
    server.exec(&format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT);
         INSERT INTO {db}.t VALUES (1, 1), (2, 2);"
    ));
    let session = MysqlSession::connect(&server.session_config("interrupt", 3))?;
    let table = session
        .describe_database(db)?
        .tables
        .into_iter()
        .next()
        .ok_or("no table")?;

    let marker = format!("lock_{}", flavour.name());
    let script = format!("LOCK TABLES {db}.t WRITE; SELECT SLEEP(3600) AS {marker}; UNLOCK TABLES;");
    let holder = std::thread::spawn(move || {
        // Ends when killed below; the client's error is expected.
        let _ = server.try_exec(&script);
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while sleepers(server, &marker).is_empty() {
        assert!(Instant::now() < deadline, "the lock holder started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let outcome = std::thread::scope(|scope| {
        let digest = scope.spawn(|| {
            session.table_digests(DigestsRequest {
                database: db.into(),
                tables: vec![table.clone()],
                mode: VerifyMode::Checksum,
                in_snapshot: false,
            })
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !waits_for_the_lock(server, db) {
            assert!(Instant::now() < deadline, "the digest waits for the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        let asked = Instant::now();
        session.interrupt().expect("interrupt");
        let outcome = digest.join().expect("the digest thread");
        (outcome, asked.elapsed())
    });
    for id in sleepers(server, &marker) {
        let _ = server.try_exec(&format!("KILL {id}"));
    }
    let _ = holder.join();

    let (digest, took) = outcome;
    assert!(digest.is_err(), "the interrupted digest fails: {digest:?}");
    assert!(took < Duration::from_secs(5), "it ended when interrupted, after {took:?}");
    // The session goes on: the same digest answers once the lock is gone.
    let digests = session.table_digests(DigestsRequest {
        database: db.into(),
        tables: vec![table],
        mode: VerifyMode::Count,
        in_snapshot: false,
    })?;
    assert_eq!(digests.first().map(|d| d.rows), Some(2));
    Ok(())
}
}
