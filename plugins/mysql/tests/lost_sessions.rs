//! Ending sessions lost to a network fault, against real MariaDB and MySQL
//! servers: a session that holds a row lock and that the client no longer
//! reaches is killed by the same least-privileged account, its lock is free
//! once `settle` returns, and one noted for an earlier run of the server is
//! left alone. The journal brings a session noted by an earlier process back.
//! (A real silent network is `tests/it/blackhole.rs`.)

use dbferry_mysql::conn::runtime;
use dbferry_mysql::lost::{journal::Journal, Incarnation, Lost, LostSessions};
use dbferry_testkit::Server;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PASSWORD: &str = "lost-Sessions-9";

/// `{db}.t` with rows 1 and 2, and an account `{db}` that may only read
/// and change its rows (no `PROCESS`, `SUPER` or `CONNECTION_ADMIN`).
fn setup(server: &Server, db: &str) {
    server.exec(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT NOT NULL);
         INSERT INTO {db}.t VALUES (1, 0), (2, 0);"
    ));
    server.create_user(db, PASSWORD, &[&format!("SELECT, UPDATE ON {db}.*")]);
}

/// A connection as the account `db`.
async fn connect(server: &Server, db: &str) -> Result<Conn, mysql_async::Error> {
    Conn::new(
        OptsBuilder::default()
            .ip_or_hostname(server.host())
            .tcp_port(server.port())
            .user(Some(db))
            .pass(Some(PASSWORD)),
    )
    .await
}

/// A session that locks row `id` of `{db}.t` and is then left as a lost
/// one would be: open on the server, never used again by the client.
async fn locking_session(server: &Server, db: &str, id: u32) -> Result<Conn, mysql_async::Error> {
    let mut conn = connect(server, db).await?;
    conn.query_drop(format!(
        "START TRANSACTION; UPDATE {db}.t SET v = v + 1 WHERE id = {id}"
    ))
    .await?;
    Ok(conn)
}

async fn listed(conn: &mut Conn, id: u32) -> Result<bool, mysql_async::Error> {
    let found: Option<u64> = conn
        .query_first(format!("SELECT ID FROM information_schema.PROCESSLIST WHERE ID = {id}"))
        .await?;
    Ok(found.is_some())
}

/// Whether row `id` can be locked within a second.
async fn lockable(conn: &mut Conn, db: &str, id: u32) -> Result<bool, mysql_async::Error> {
    conn.query_drop("SET SESSION innodb_lock_wait_timeout = 1").await?;
    let locked = conn
        .query_drop(format!("UPDATE {db}.t SET v = v + 10 WHERE id = {id}"))
        .await;
    match locked {
        Ok(()) => Ok(true),
        Err(mysql_async::Error::Server(e)) if e.code == 1205 => Ok(false),
        Err(e) => Err(e),
    }
}

dbferry_testkit::on_both_flavours! {
fn a_lost_session_is_killed_with_its_locks_and_one_of_an_earlier_run_is_not(flavour: Flavour) -> TestResult {
    let server = flavour.shared();
    let db = format!("lost_kill_{flavour:?}").to_lowercase();
    setup(server, &db);
    runtime()?.block_on(async {
        let mut lost_one = locking_session(server, &db, 1).await?;
        let earlier_run = locking_session(server, &db, 2).await?;
        let mut probe = connect(server, &db).await?;
        let now = Incarnation::read(&mut probe).await?;
        let sessions = LostSessions::of(format!("{db}@{}:{}", server.host(), server.port()), "test", None);
        sessions.note(Lost { id: lost_one.id(), incarnation: now });
        sessions.note(Lost { id: earlier_run.id(), incarnation: Incarnation(now.0 - 3600) });
        assert!(!lockable(&mut probe, &db, 1).await?, "the lost session holds its lock");

        sessions.settle(&mut probe).await?;

        assert!(sessions.is_empty());
        assert!(!listed(&mut probe, lost_one.id()).await?, "killed and gone");
        assert!(lockable(&mut probe, &db, 1).await?, "its lock went with it");
        assert!(listed(&mut probe, earlier_run.id()).await?, "a session of another run is never killed");
        assert!(lost_one.ping().await.is_err(), "the killed session's connection is closed");
        drop(earlier_run);
        Ok(())
    })
}

fn a_session_journaled_by_an_earlier_process_is_killed_by_the_next(flavour: Flavour) -> TestResult {
    let server = flavour.shared();
    let db = format!("lost_journal_{flavour:?}").to_lowercase();
    setup(server, &db);
    let dir = std::env::temp_dir().join(format!("dbferry-lost-sessions-{}-{flavour:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = format!("{db}@{}:{}", server.host(), server.port());
    runtime()?.block_on(async {
        let lost_one = locking_session(server, &db, 1).await?;
        let mut probe = connect(server, &db).await?;
        let now = Incarnation::read(&mut probe).await?;
        // What the earlier process wrote before it gave up.
        Journal::new(dir.clone()).add(&key, Lost { id: lost_one.id(), incarnation: now })?;

        let sessions = LostSessions::of(key.clone(), "test", Some(dir.clone()));
        assert_eq!(sessions.pending().len(), 1);
        sessions.settle(&mut probe).await?;

        assert!(!listed(&mut probe, lost_one.id()).await?);
        assert!(lockable(&mut probe, &db, 1).await?);
        assert!(Journal::new(dir.clone()).load(&key).is_empty(), "taken out of the journal");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
}
