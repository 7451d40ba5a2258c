//! One consistent snapshot shared by every reader connection.
//!
//! `begin` opens the reader connections first, then holds the source still
//! on a control connection with the strongest lock the account may take
//! ([`Hold`]: `BACKUP STAGE BLOCK_COMMIT` on MariaDB, `FLUSH TABLES WITH READ
//! LOCK`, `LOCK INSTANCE FOR BACKUP` + `LOCK TABLES … READ` on MySQL, or
//! `LOCK TABLES … READ` on the migrated tables alone), starts `START
//! TRANSACTION WITH CONSISTENT SNAPSHOT` on every reader while nothing can
//! commit to those tables, and releases the lock. `LOCK INSTANCE FOR BACKUP`
//! alone is never enough: it blocks DDL but not commits, so the readers'
//! snapshots could differ. The result names the step taken
//! (`SnapshotInfo::method`). When every step is refused the session falls
//! back to per-table consistency, with a warning naming the privileges.
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
    /// The source's pool, which kills the sessions of readers lost to a
    /// network fault ([`crate::lost`]).
    pool: Arc<Pool>,
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
    fn new(members: Vec<(C, OwnedSemaphorePermit)>, pool: Arc<Pool>) -> Arc<Self> {
        Arc::new(Self {
            pool,
            alive: AtomicUsize::new(members.len()),
            idle: Mutex::new(members),
            open: AtomicBool::new(true),
            returned: Notify::new(),
        })
    }

    /// The source's pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
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
        if let Some((conn, _permit)) = self.member.take() {
            if conn.broken() {
                self.set.pool.note_lost(conn.id());
            }
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

/// How the source is held still while the readers start their consistent
/// snapshots: the ladder of [`Hold::ladder`], strongest first, each step
/// tried when the one before it is refused for lack of a privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// MariaDB 10.4.1+: `BACKUP STAGE START` + `BLOCK_COMMIT` (RELOAD):
    /// stops commits without flushing tables.
    BackupStage,
    /// `FLUSH TABLES WITH READ LOCK` (RELOAD).
    FlushTables,
    /// MySQL 8+: `LOCK INSTANCE FOR BACKUP` (BACKUP_ADMIN), which keeps DDL
    /// out but lets commits through, plus `LOCK TABLES … READ` on the
    /// migrated tables (LOCK TABLES), which stops writes to them.
    InstanceAndTables,
    /// `LOCK TABLES … READ` on the migrated tables (LOCK TABLES, SELECT), as
    /// MySQL Shell's dump does: the readers' snapshots agree on every
    /// migrated table; tables outside the import may move meanwhile.
    Tables,
}

impl Hold {
    /// The steps to try on this server, strongest first. `tables_known`:
    /// whether the tables to lock were described in this session.
    pub fn ladder(facts: &ServerFacts, tables_known: bool) -> Vec<Hold> {
        let mut steps = if facts.mariadb && facts.numbers >= (10, 4, 1) {
            vec![Hold::BackupStage]
        } else if !facts.mariadb && facts.numbers >= (8, 0, 0) {
            vec![Hold::FlushTables, Hold::InstanceAndTables]
        } else {
            vec![Hold::FlushTables]
        };
        steps.push(Hold::Tables);
        if !tables_known {
            steps.retain(|h| !matches!(h, Hold::InstanceAndTables | Hold::Tables));
        }
        steps
    }

    /// The name the import's result shows (`ConsistencyMethod`).
    pub fn method(self) -> &'static str {
        match self {
            Hold::BackupStage => "backup_stage",
            Hold::FlushTables => "flush_tables_with_read_lock",
            Hold::InstanceAndTables => "lock_instance_for_backup+lock_tables",
            Hold::Tables => "lock_tables",
        }
    }

    fn statements(self, tables: &[String]) -> Vec<String> {
        let lock_tables = || {
            let list: Vec<String> = tables.iter().map(|t| format!("{t} READ")).collect();
            format!("LOCK TABLES {}", list.join(", "))
        };
        match self {
            Hold::BackupStage => vec!["BACKUP STAGE START".into(), "BACKUP STAGE BLOCK_COMMIT".into()],
            Hold::FlushTables => vec!["FLUSH TABLES WITH READ LOCK".into()],
            Hold::InstanceAndTables => vec!["LOCK INSTANCE FOR BACKUP".into(), lock_tables()],
            Hold::Tables => vec![lock_tables()],
        }
    }

    async fn take(self, conn: &mut Conn, tables: &[String], instance: &str) -> Result<()> {
        for statement in self.statements(tables) {
            let shown: String = statement.chars().take(80).collect();
            conn.query_drop(statement.as_str())
                .await
                .ctx(|| format!("{shown} on {instance}"))?;
        }
        Ok(())
    }

    /// What releases the hold (harmless when it was not taken).
    pub fn release(self) -> &'static str {
        match self {
            Hold::BackupStage => "BACKUP STAGE END",
            Hold::FlushTables | Hold::Tables => "UNLOCK TABLES",
            Hold::InstanceAndTables => "UNLOCK TABLES; UNLOCK INSTANCE",
        }
    }
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

    /// Opens the snapshot for `readers` readers.
    /// `tables` are the base tables to be read (qualified and quoted), for
    /// the `LOCK TABLES` step of the ladder (see [`Hold`]).
    pub async fn begin(
        &self,
        pool: &Arc<Pool>,
        facts: &ServerFacts,
        tables: &[String],
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
        let mut refusals = Vec::new();
        let mut held = None;
        for hold in Hold::ladder(facts, !tables.is_empty()) {
            match hold.take(conn, tables, pool.instance()).await {
                Ok(()) => {
                    held = Some(hold);
                    break;
                }
                Err(e) => {
                    let _ = conn.query_drop(hold.release()).await;
                    if !e.is_access_denied() {
                        return Err(e);
                    }
                    tracing::debug!(instance = %pool.instance(), step = hold.method(), reason = %e, "snapshot lock refused; trying the next");
                    refusals.push(format!("{}: {e}", hold.method()));
                }
            }
        }
        let Some(hold) = held else {
            control.release();
            for lease in leases {
                lease.release();
            }
            drop(wire);
            if tables.is_empty() {
                refusals.push("lock_tables: the tables to lock are not known (none described)".into());
            }
            let why = refusals.join("; ");
            let warning = format!(
                "no lock could hold {} still while the readers opened their snapshots ({why}); every table is \
                 read consistently on its own, but different tables may reflect different moments. Grant RELOAD, \
                 BACKUP_ADMIN (MySQL) or LOCK TABLES for one consistent snapshot",
                pool.instance()
            );
            tracing::warn!("{warning}");
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some((Consistency::PerTable, None));
            return Ok(SnapshotInfo {
                consistency: Consistency::PerTable,
                warning: Some(warning),
                method: None,
            });
        };
        let unlock = hold.release();
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
        let unlocked = conn
            .query_drop(unlock)
            .await
            .ctx(|| format!("{unlock} on {}", pool.instance()));
        started.collect::<Result<Vec<()>>>()?;
        unlocked?;
        control.release();
        let set = if wire.is_empty() {
            Readers::Driver(SnapshotSet::new(
                leases.into_iter().filter_map(Lease::into_parts).collect(),
                pool.clone(),
            ))
        } else {
            Readers::Wire(WireSet::new(wire, pool.clone()))
        };
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some((Consistency::Global, Some(set)));
        if refusals.is_empty() {
            tracing::debug!(instance = %pool.instance(), method = hold.method(), "global snapshot opened");
        } else {
            tracing::info!(instance = %pool.instance(), method = hold.method(), refused = %refusals.join("; "), "global snapshot opened with a lesser lock");
        }
        Ok(SnapshotInfo {
            consistency: Consistency::Global,
            warning: slow_reader,
            method: Some(hold.method().to_string()),
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
    // Readers lost to a network fault may live on at the server with their
    // snapshots (holding back purge, and their tables' metadata locks
    // against DDL); the next lease would end them, but there may be none.
    if let Err(e) = pool.settle_lost().await {
        tracing::warn!(instance = %pool.instance(), error = %e, "cannot end the reader sessions lost to a network fault");
    }
    Ok(())
}
