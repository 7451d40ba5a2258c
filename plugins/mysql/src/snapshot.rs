//! One consistent snapshot shared by every reader connection.
//!
//! `begin` opens the reader connections first, then takes a short global
//! lock on a control connection (MariaDB 10.4+: `BACKUP STAGE START` +
//! `BACKUP STAGE BLOCK_COMMIT`, which stops commits without flushing
//! tables; otherwise `FLUSH TABLES WITH READ LOCK`), starts `START
//! TRANSACTION WITH CONSISTENT SNAPSHOT` on every reader while no commit can
//! happen, and releases the lock. `LOCK INSTANCE FOR BACKUP` alone is not
//! used on MySQL 8: it blocks DDL but not commits, so the readers' snapshots
//! could differ. Without the privilege the session falls back to per-table
//! consistency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dbferry_plugin_abi::protocol::{Consistency, SnapshotInfo};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::conn::{Lease, Pool, Role, ServerFacts};
use crate::error::{Context, Error, Result};

/// The reader connections of an open snapshot.
pub struct SnapshotSet {
    idle: Mutex<Vec<(Conn, OwnedSemaphorePermit)>>,
    alive: AtomicUsize,
    open: AtomicBool,
    returned: Notify,
}

impl SnapshotSet {
    /// A connection comes back after a clean read.
    pub fn put(&self, conn: Conn, permit: OwnedSemaphorePermit) {
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
    pub async fn take(self: &Arc<Self>) -> Result<Lease> {
        loop {
            let next = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            if let Some((conn, permit)) = next {
                return Ok(Lease::snapshot(conn, permit, self.clone()));
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
    fn close(&self) -> Vec<(Conn, OwnedSemaphorePermit)> {
        self.open.store(false, Ordering::SeqCst);
        let drained = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        self.alive.fetch_sub(drained.len(), Ordering::SeqCst);
        drained
    }
}

/// The snapshot state of a session.
#[derive(Default)]
pub struct Snapshot {
    state: Mutex<Option<(Consistency, Option<Arc<SnapshotSet>>)>>,
}

impl Snapshot {
    /// The open snapshot's connections, when there is a global snapshot.
    pub fn set(&self) -> Option<Arc<SnapshotSet>> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|(_, set)| set.clone())
    }

    /// Opens the snapshot for `readers` readers.
    pub async fn begin(&self, pool: &Arc<Pool>, facts: &ServerFacts, readers: u32, max: u32) -> Result<SnapshotInfo> {
        if let Some(set) = self.set() {
            let _ = close_set(pool, &set).await;
        }
        let readers = readers.clamp(1, max.saturating_sub(1).max(1)) as usize;
        // Readers first, so the lock is held only for the START TRANSACTIONs.
        let mut leases = Vec::with_capacity(readers);
        for _ in 0..readers {
            leases.push(pool.get_fresh(Role::Reader).await?);
        }
        let mut control = pool.get(Role::Control).await?;
        let backup_stage = facts.mariadb && facts.numbers >= (10, 4, 1);
        let (lock, unlock): (&[&str], &str) = if backup_stage {
            (&["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"], "BACKUP STAGE END")
        } else {
            (&["FLUSH TABLES WITH READ LOCK"], "UNLOCK TABLES")
        };
        let conn = control.conn()?;
        conn.query_drop("SET SESSION lock_wait_timeout = 60")
            .await
            .ctx(|| "setting lock_wait_timeout".into())?;
        let mut locked = Ok(());
        for statement in lock {
            if let Err(e) = conn
                .query_drop(*statement)
                .await
                .ctx(|| format!("{statement} on {}", pool.instance()))
            {
                locked = Err(e);
                break;
            }
        }
        if let Err(e) = locked {
            let _ = conn.query_drop(unlock).await;
            if !e.is_access_denied() {
                return Err(e);
            }
            control.release();
            for lease in leases {
                lease.release();
            }
            let warning = format!(
                "no global read lock on {} ({e}); every table is read consistently on its own, \
                 but different tables may reflect different moments",
                pool.instance()
            );
            tracing::warn!("{warning}");
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some((Consistency::PerTable, None));
            return Ok(SnapshotInfo {
                consistency: Consistency::PerTable,
                warning: Some(warning),
            });
        }
        let started = futures_util::future::join_all(leases.iter_mut().map(|lease| async move {
            lease
                .conn()?
                .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .ctx(|| "starting a consistent snapshot".into())
        }))
        .await;
        let unlocked = conn
            .query_drop(unlock)
            .await
            .ctx(|| format!("{unlock} on {}", pool.instance()));
        started.into_iter().collect::<Result<Vec<()>>>()?;
        unlocked?;
        control.release();
        let set = Arc::new(SnapshotSet {
            idle: Mutex::new(Vec::with_capacity(leases.len())),
            alive: AtomicUsize::new(leases.len()),
            open: AtomicBool::new(true),
            returned: Notify::new(),
        });
        for lease in leases {
            if let Some((conn, permit)) = lease.into_parts() {
                set.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((conn, permit));
            }
        }
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some((Consistency::Global, Some(set)));
        Ok(SnapshotInfo {
            consistency: Consistency::Global,
            warning: None,
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

async fn close_set(pool: &Arc<Pool>, set: &Arc<SnapshotSet>) -> Result<()> {
    for (mut conn, permit) in set.close() {
        if conn.query_drop("COMMIT").await.is_ok() {
            pool.adopt(conn, Role::Reader, permit);
        }
    }
    Ok(())
}
