//! One consistent snapshot shared by every reader connection.
//!
//! `begin` opens the reader connections first, then on a control
//! connection takes the strongest lock the account may (see [`ladder`]:
//! MariaDB's `BACKUP STAGE BLOCK_COMMIT`, `FLUSH TABLES WITH READ LOCK`,
//! MySQL's `LOCK INSTANCE FOR BACKUP` with `LOCK TABLES … READ` on the
//! migrated tables, or those table locks alone), starts `START TRANSACTION
//! WITH CONSISTENT SNAPSHOT` on every reader while no commit to those
//! tables can happen, and releases the lock. `LOCK INSTANCE FOR BACKUP`
//! alone is never enough: it blocks DDL but not commits. Without any of
//! them the session falls back to per-table consistency. The result names
//! the lock taken (`SnapshotInfo::method`).
//!
//! The readers are [`WireConn`]s when the server lets them log in (TCP,
//! `mysql_native_password` or `caching_sha2_password`, TLS as the mode
//! says): they read chunks without mysql_async's per-row cost. Otherwise
//! they are mysql_async connections; the snapshot's warning says why, so
//! the import's result names it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dbferry_plugin_abi::protocol::{Consistency, SnapshotInfo};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::conn::{Lease, Pool, Role, ServerFacts, CONNECT_TIMEOUT};
use crate::error::{Context, Error, Result};
use crate::wire::WireConn;

/// The reader connections of an open snapshot, all of one kind.
pub struct Members<C> {
    idle: Mutex<Vec<(C, OwnedSemaphorePermit)>>,
    alive: AtomicUsize,
    open: AtomicBool,
    returned: Notify,
}

/// Snapshot readers on mysql_async connections.
pub type SnapshotSet = Members<Conn>;
/// Snapshot readers on [`WireConn`]s.
pub type WireSet = Members<WireConn>;

/// The readers of an open global snapshot.
#[derive(Clone)]
pub enum Readers {
    /// mysql_async connections.
    Driver(Arc<SnapshotSet>),
    /// Wire connections.
    Wire(Arc<WireSet>),
}

impl<C> Members<C> {
    fn new(members: Vec<(C, OwnedSemaphorePermit)>) -> Arc<Self> {
        Arc::new(Self {
            alive: AtomicUsize::new(members.len()),
            idle: Mutex::new(members),
            open: AtomicBool::new(true),
            returned: Notify::new(),
        })
    }

    /// A connection comes back after a clean read.
    pub fn put(&self, conn: C, permit: OwnedSemaphorePermit) {
        if self.open.load(Ordering::SeqCst) {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((conn, permit));
        } else {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
        self.returned.notify_waiters();
    }

    /// A connection was discarded (a reader stopped mid-result).
    pub fn lost(&self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
        self.returned.notify_waiters();
    }

    /// Waits for a free snapshot connection.
    async fn take_member(&self) -> Result<(C, OwnedSemaphorePermit)> {
        loop {
            let next = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            if let Some(member) = next {
                return Ok(member);
            }
            if !self.open.load(Ordering::SeqCst) {
                return Err(Error::Invalid("the snapshot has ended".into()));
            }
            if self.alive.load(Ordering::SeqCst) == 0 {
                return Err(Error::Internal(
                    "every snapshot connection was lost; the snapshot cannot serve more readers".into(),
                ));
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.returned.notified()).await;
        }
    }

    /// Closes the set and hands back its idle connections.
    fn close(&self) -> Vec<(C, OwnedSemaphorePermit)> {
        self.open.store(false, Ordering::SeqCst);
        let drained = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        self.alive.fetch_sub(drained.len(), Ordering::SeqCst);
        drained
    }
}

impl SnapshotSet {
    /// Waits for a free snapshot connection.
    pub async fn take(self: &Arc<Self>) -> Result<Lease> {
        let (conn, permit) = self.take_member().await?;
        Ok(Lease::snapshot(conn, permit, self.clone()))
    }
}

impl WireSet {
    /// Waits for a free snapshot connection.
    pub async fn take(self: &Arc<Self>) -> Result<WireLease> {
        let member = self.take_member().await?;
        Ok(WireLease {
            member: Some(member),
            set: self.clone(),
        })
    }
}

/// A wire connection borrowed from a [`WireSet`]. Dropping it discards the
/// connection (it may be mid-result); [`WireLease::release`] gives it back.
pub struct WireLease {
    member: Option<(WireConn, OwnedSemaphorePermit)>,
    set: Arc<WireSet>,
}

impl WireLease {
    /// The connection.
    pub fn conn(&mut self) -> Result<&mut WireConn> {
        self.member
            .as_mut()
            .map(|(conn, _)| conn)
            .ok_or_else(|| Error::Internal("connection already released".into()))
    }

    /// Gives the connection back after a clean read.
    pub fn release(mut self) {
        if let Some((conn, permit)) = self.member.take() {
            self.set.put(conn, permit);
        }
    }
}

impl Drop for WireLease {
    fn drop(&mut self) {
        if self.member.take().is_some() {
            self.set.lost();
        }
    }
}

/// Opens `n` wire readers, or says why they can't be used.
async fn open_wire(pool: &Pool, n: usize) -> Result<Vec<(WireConn, OwnedSemaphorePermit)>> {
    let login = pool
        .wire_login()
        .ok_or_else(|| Error::Unsupported("a Unix socket".into()))?;
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = pool.permit().await;
        let mut conn = WireConn::connect(&login, CONNECT_TIMEOUT).await?;
        conn.execute(&Role::Reader.setup())
            .await
            .map_err(|e| e.during(|| "setting up a reader".into()))?;
        members.push((conn, permit));
    }
    Ok(members)
}

/// The snapshot state of a session.
#[derive(Default)]
pub struct Snapshot {
    state: Mutex<Option<(Consistency, Option<Readers>)>>,
}

impl Snapshot {
    /// The open snapshot's connections, when there is a global snapshot.
    pub fn readers(&self) -> Option<Readers> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|(_, set)| set.clone())
    }

    /// Opens the snapshot for `readers` readers over the tables of
    /// `databases` (the ones the import described).
    pub async fn begin(
        &self,
        pool: &Arc<Pool>,
        facts: &ServerFacts,
        databases: &[String],
        readers: u32,
        max: u32,
    ) -> Result<SnapshotInfo> {
        if let Some(set) = self.readers() {
            let _ = close_set(pool, &set).await;
        }
        let readers = readers.clamp(1, max.saturating_sub(1).max(1)) as usize;
        // Readers first, so the lock is held only for the START TRANSACTIONs.
        let mut slow_reader = None;
        let mut wire = match open_wire(pool, readers).await {
            Ok(members) => members,
            // A refused certificate or missing TLS refuses the import: the
            // driver would be refused the same way, never in plaintext.
            Err(e @ Error::Tls { .. }) => return Err(e),
            Err(e) => {
                let note = format!(
                    "the fast reader is not used on {} ({e}); rows are read through mysql_async, which costs more CPU",
                    pool.instance()
                );
                if !pool.noted_slow_reader() {
                    tracing::info!(instance = %pool.instance(), reason = %e, "the fast reader is not used");
                }
                slow_reader = Some(note);
                Vec::new()
            }
        };
        let mut leases = Vec::with_capacity(readers);
        if wire.is_empty() {
            for _ in 0..readers {
                leases.push(pool.get_fresh(Role::Reader).await?);
            }
        }
        let mut control = pool.get(Role::Control).await?;
        let conn = control.conn()?;
        conn.query_drop("SET SESSION lock_wait_timeout = 60")
            .await
            .ctx(|| "setting lock_wait_timeout".into())?;
        let tables = base_tables(conn, databases).await?;
        let mut refused = Vec::new();
        let mut held = None;
        for lock in ladder(facts, &tables) {
            match lock.take(conn).await {
                Ok(()) => {
                    held = Some(lock);
                    break;
                }
                Err(e) => {
                    lock.release(conn).await;
                    if !e.is_access_denied() {
                        return Err(e);
                    }
                    refused.push(format!("{}: {e}", lock.name));
                }
            }
        }
        let Some(lock) = held else {
            control.release();
            for lease in leases {
                lease.release();
            }
            drop(wire);
            let warning = format!(
                "no lock that holds commits back on {} ({}); every table is read consistently on its own, \
                 but different tables may reflect different moments. Grant the source account RELOAD, \
                 or LOCK TABLES on the migrated databases, for one consistent snapshot",
                pool.instance(),
                refused.join("; ")
            );
            tracing::warn!("{warning}");
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some((Consistency::PerTable, None));
            return Ok(SnapshotInfo {
                consistency: Consistency::PerTable,
                warning: Some(warning),
                method: None,
            });
        };
        if !refused.is_empty() {
            tracing::info!(
                instance = %pool.instance(),
                lock = lock.name,
                refused = %refused.join("; "),
                "snapshot lock"
            );
        }
        const START: &str = "START TRANSACTION WITH CONSISTENT SNAPSHOT";
        let driver = futures_util::future::join_all(leases.iter_mut().map(|lease| async move {
            lease
                .conn()?
                .query_drop(START)
                .await
                .ctx(|| "starting a consistent snapshot".into())
        }));
        let wired = futures_util::future::join_all(wire.iter_mut().map(|(conn, _)| async move {
            conn.execute(START)
                .await
                .map_err(|e| e.during(|| "starting a consistent snapshot".into()))
        }));
        let (driver, wired) = futures_util::future::join(driver, wired).await;
        let started = driver.into_iter().chain(wired);
        let unlocked = lock.release_checked(conn, pool.instance()).await;
        started.collect::<Result<Vec<()>>>()?;
        unlocked?;
        control.release();
        let set = if wire.is_empty() {
            Readers::Driver(SnapshotSet::new(
                leases.into_iter().filter_map(Lease::into_parts).collect(),
            ))
        } else {
            Readers::Wire(WireSet::new(wire))
        };
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some((Consistency::Global, Some(set)));
        Ok(SnapshotInfo {
            consistency: Consistency::Global,
            warning: slow_reader,
            method: Some(lock.name.to_string()),
        })
    }

    /// Ends the snapshot: commits the readers' transactions and pools them.
    pub async fn end(&self, pool: &Arc<Pool>) -> Result<()> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((_, Some(set))) = state {
            close_set(pool, &set).await?;
        }
        Ok(())
    }
}

/// One way to hold commits back while the readers open their snapshots.
struct Lock {
    /// What the import's result calls it.
    name: &'static str,
    take: Vec<String>,
    release: &'static [&'static str],
}

impl Lock {
    async fn take(&self, conn: &mut Conn) -> Result<()> {
        for statement in &self.take {
            let shown: String = statement.chars().take(80).collect();
            conn.query_drop(statement.as_str())
                .await
                .ctx(|| format!("taking the snapshot lock ({shown})"))?;
        }
        Ok(())
    }

    /// Releases whatever part was taken, ignoring errors (after a refusal).
    async fn release(&self, conn: &mut Conn) {
        for statement in self.release {
            let _ = conn.query_drop(*statement).await;
        }
    }

    async fn release_checked(&self, conn: &mut Conn, instance: &str) -> Result<()> {
        for statement in self.release {
            conn.query_drop(*statement)
                .await
                .ctx(|| format!("{statement} on {instance}"))?;
        }
        Ok(())
    }
}

/// The locks to try, strongest first; each needs fewer privileges than the
/// one before.
///
/// - MariaDB 10.4+: `BACKUP STAGE BLOCK_COMMIT` (RELOAD) stops commits
///   without flushing tables.
/// - `FLUSH TABLES WITH READ LOCK` (RELOAD): the whole instance.
/// - MySQL 8.0+: `LOCK INSTANCE FOR BACKUP` (BACKUP_ADMIN) with `LOCK TABLES
///   … READ` on the migrated tables. The instance lock alone blocks DDL
///   but not commits, so the table locks are what hold the data still.
/// - `LOCK TABLES … READ` on the migrated tables (LOCK TABLES and SELECT):
///   as MySQL Shell's dump does without RELOAD. It waits for transactions
///   that wrote to those tables to end and lets no new write in, so every
///   reader's snapshot sees them at one instant; other tables are not
///   copied and not held.
fn ladder(facts: &ServerFacts, tables: &[(String, String)]) -> Vec<Lock> {
    let mut ladder = Vec::new();
    if facts.mariadb && facts.numbers >= (10, 4, 1) {
        ladder.push(Lock {
            name: "BACKUP STAGE BLOCK_COMMIT",
            take: vec!["BACKUP STAGE START".into(), "BACKUP STAGE BLOCK_COMMIT".into()],
            release: &["BACKUP STAGE END"],
        });
    }
    ladder.push(Lock {
        name: "FLUSH TABLES WITH READ LOCK",
        take: vec!["FLUSH TABLES WITH READ LOCK".into()],
        release: &["UNLOCK TABLES"],
    });
    if tables.is_empty() {
        return ladder;
    }
    let lock_tables = format!(
        "LOCK TABLES {}",
        tables
            .iter()
            .map(|(db, table)| format!("{} READ", crate::quote::qualified(db, table)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !facts.mariadb && facts.numbers >= (8, 0, 0) {
        ladder.push(Lock {
            name: "LOCK INSTANCE FOR BACKUP + LOCK TABLES READ",
            take: vec!["LOCK INSTANCE FOR BACKUP".into(), lock_tables.clone()],
            release: &["UNLOCK TABLES", "UNLOCK INSTANCE"],
        });
    }
    ladder.push(Lock {
        name: "LOCK TABLES READ",
        take: vec![lock_tables],
        release: &["UNLOCK TABLES"],
    });
    ladder
}

/// The base tables of `databases`, as (database, table).
async fn base_tables(conn: &mut Conn, databases: &[String]) -> Result<Vec<(String, String)>> {
    if databases.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = databases.iter().map(|d| crate::quote::hex_str(d)).collect();
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ({}) ORDER BY 1, 2",
        list.join(", ")
    );
    let rows: Vec<(Vec<u8>, Vec<u8>)> = conn.query(sql.as_str()).await.ctx(|| format!("running {sql}"))?;
    Ok(rows
        .into_iter()
        .map(|(db, table)| {
            (
                String::from_utf8_lossy(&db).into_owned(),
                String::from_utf8_lossy(&table).into_owned(),
            )
        })
        .collect())
}

async fn close_set(pool: &Arc<Pool>, set: &Readers) -> Result<()> {
    match set {
        Readers::Driver(set) => {
            for (mut conn, permit) in set.close() {
                if conn.query_drop("COMMIT").await.is_ok() {
                    pool.adopt(conn, Role::Reader, permit);
                }
            }
        }
        // Wire connections only ever read snapshots: they close with it.
        Readers::Wire(set) => {
            for (mut conn, _permit) in set.close() {
                let _ = conn.execute("COMMIT").await;
            }
        }
    }
    Ok(())
}
