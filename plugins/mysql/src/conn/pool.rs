//! A small pool of mysql_async connections to one instance, capped at
//! `max_connections`, that kills sessions lost to a network fault before
//! handing out the next one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dbferry_plugin_abi::protocol::SessionConfig;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::dial::Dialer;
use super::{runtime, Role, RAISE_ERROR_COUNT};
use crate::error::{Context, Error, Result};
use crate::group::InfileShelf;
use crate::lost::{Incarnation, Lost, LostSessions};
use crate::tls::TlsSettings;

/// Idle connections older than this are pinged before reuse.
const STALE_AFTER: Duration = Duration::from_secs(30);

struct Idle {
    conn: Conn,
    role: Role,
    permit: OwnedSemaphorePermit,
    since: Instant,
}

/// Connections to one instance, at most `max_connections` open at once.
pub struct Pool {
    dialer: Dialer,
    slow_reader_noted: std::sync::atomic::AtomicBool,
    /// Set once the server refused [`RAISE_ERROR_COUNT`] to this account.
    error_count_denied: std::sync::atomic::AtomicBool,
    infiles: InfileShelf,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    freed: Notify,
    /// Sessions of this server and account lost to a network fault; each is
    /// killed before the next connection is handed out.
    lost: LostSessions,
    /// When the server started, read on the first connection: what a lost
    /// session's id is valid for.
    incarnation: tokio::sync::OnceCell<Incarnation>,
}

/// A connection borrowed from a [`Pool`] (or from a snapshot set).
/// Dropping it discards the connection; [`Lease::release`] gives it back.
pub struct Lease {
    conn: Option<Conn>,
    role: Role,
    permit: Option<OwnedSemaphorePermit>,
    home: Home,
}

/// Where a lease goes back to.
#[derive(Clone)]
pub enum Home {
    /// The session's pool.
    Pool(Arc<Pool>),
    /// A snapshot's reader set.
    Snapshot(Arc<crate::snapshot::SnapshotSet>),
}

impl Lease {
    /// The connection.
    pub fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Internal("connection already released".into()))
    }

    /// Gives the connection back for reuse. Only call it when no result set
    /// is pending and no transaction is open (except on snapshot readers).
    pub fn release(mut self) {
        let (Some(conn), Some(permit)) = (self.conn.take(), self.permit.take()) else {
            return;
        };
        let idle = Idle {
            conn,
            role: self.role,
            permit,
            since: Instant::now(),
        };
        match &self.home {
            Home::Pool(pool) => pool.put(idle),
            Home::Snapshot(set) => set.put(idle.conn, idle.permit),
        }
    }

    /// Splits into the connection and its permit (for the snapshot set).
    pub fn into_parts(mut self) -> Option<(Conn, OwnedSemaphorePermit)> {
        Some((self.conn.take()?, self.permit.take()?))
    }

    /// Builds a lease around a connection that lives in a snapshot set.
    pub fn snapshot(conn: Conn, permit: OwnedSemaphorePermit, set: Arc<crate::snapshot::SnapshotSet>) -> Self {
        Self {
            conn: Some(conn),
            role: Role::Reader,
            permit: Some(permit),
            home: Home::Snapshot(set),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        match &self.home {
            Home::Pool(pool) => pool.note_if_lost(&conn),
            Home::Snapshot(set) => set.pool().note_if_lost(&conn),
        }
        // Discarded: close the socket; the server rolls back whatever was
        // open on it. Inside the runtime so the socket deregisters cleanly.
        if let Ok(rt) = runtime() {
            let _guard = rt.enter();
            drop(conn);
        }
        drop(self.permit.take());
        match &self.home {
            Home::Pool(pool) => pool.freed.notify_waiters(),
            Home::Snapshot(set) => set.lost(),
        }
    }
}

impl Pool {
    /// A pool for `config`; opens nothing yet.
    pub fn new(config: &SessionConfig) -> Result<Arc<Self>> {
        let infiles = InfileShelf::default();
        Ok(Arc::new(Self {
            dialer: Dialer::new(config, &infiles)?,
            slow_reader_noted: std::sync::atomic::AtomicBool::new(false),
            error_count_denied: std::sync::atomic::AtomicBool::new(false),
            infiles,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(config.max_connections.max(2) as usize)),
            freed: Notify::new(),
            lost: LostSessions::of(
                format!("{}@{}:{}", config.user, config.host, config.port),
                &config.instance_id,
                config
                    .options
                    .get("state_dir")
                    .and_then(|v| v.as_str())
                    .map(|dir| std::path::Path::new(dir).join("lost-sessions")),
            ),
            incarnation: tokio::sync::OnceCell::new(),
        }))
    }

    /// Notes `conn`, which is being let go, if a network fault took it.
    /// mysql_async leaves a connection disconnected after an I/O or protocol
    /// failure (not after a server's error): the server may not know, and
    /// keep the session with its transaction and locks.
    pub(crate) fn note_if_lost(&self, conn: &Conn) {
        if conn.is_disconnected() {
            self.note_lost(conn.id());
        }
    }

    /// Notes session `id` of this server, taken by a network fault, to be
    /// killed before the next connection is handed out.
    pub(crate) fn note_lost(&self, id: u32) {
        match self.incarnation.get() {
            Some(incarnation) => self.lost.note(Lost {
                id,
                incarnation: *incarnation,
            }),
            None => {
                tracing::debug!(instance = %self.instance(), session_id = id, "lost a session of a server whose start is unknown; it cannot be killed safely")
            }
        }
    }

    /// Kills the sessions noted lost, if any, over a connection of the
    /// pool's; for a caller about to stop using the server, which would
    /// otherwise leave them to the server's timeouts.
    pub async fn settle_lost(self: &Arc<Self>) -> Result<()> {
        if self.lost.is_empty() {
            return Ok(());
        }
        // Every lease settles the lost sessions before it is handed out.
        if let Some(lease) = self.try_get(Role::Control).await? {
            lease.release();
        }
        Ok(())
    }

    /// The instance's TLS settings.
    pub fn tls(&self) -> &TlsSettings {
        self.dialer.tls()
    }

    /// Whether the fast reader's absence was already logged; marks it logged.
    pub fn noted_slow_reader(&self) -> bool {
        self.slow_reader_noted.swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether connections go without TLS (mode `off`, or a `preferred`
    /// server that offers none).
    pub fn plaintext(&self) -> bool {
        self.dialer.plaintext()
    }

    /// Payloads served to `LOAD DATA LOCAL INFILE` statements by file name.
    pub fn infiles(&self) -> &InfileShelf {
        &self.infiles
    }

    /// How a [`crate::wire::WireConn`] logs in to this instance; `None`
    /// when it goes through a Unix socket, which the wire client does not speak.
    pub fn wire_login(&self) -> Option<crate::wire::Login> {
        self.dialer.wire_login()
    }

    /// The instance id, for messages.
    pub fn instance(&self) -> &str {
        self.dialer.instance()
    }

    fn put(&self, idle: Idle) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(idle);
        self.freed.notify_waiters();
    }

    fn take_idle(&self, role: Option<Role>) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let pos = match role {
            Some(role) => idle.iter().rposition(|i| i.role == role)?,
            None => idle.len().checked_sub(1)?,
        };
        Some(idle.swap_remove(pos))
    }

    /// Opens a fresh connection in `role` (no permit involved).
    async fn open(&self, role: Role) -> Result<Conn> {
        let mut conn = self.dialer.connect().await?;
        conn.query_drop(role.setup())
            .await
            .ctx(|| format!("setting up a session on {}", self.instance()))?;
        self.raise_error_count(&mut conn).await?;
        if self.incarnation.get().is_none() {
            match Incarnation::read(&mut conn).await {
                Ok(incarnation) => {
                    let _ = self.incarnation.set(incarnation);
                }
                Err(e) => tracing::debug!(instance = %self.instance(), error = %e, "reading when the server started"),
            }
        }
        Ok(conn)
    }

    /// Runs [`RAISE_ERROR_COUNT`] unless the server already refused it to
    /// this account; a refusal is logged once and otherwise harmless.
    async fn raise_error_count(&self, conn: &mut Conn) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.error_count_denied.load(Relaxed) {
            return Ok(());
        }
        match conn
            .query_drop(RAISE_ERROR_COUNT)
            .await
            .ctx(|| RAISE_ERROR_COUNT.into())
        {
            Err(e) if e.is_access_denied() => {
                if !self.error_count_denied.swap(true, Relaxed) {
                    tracing::info!(
                        instance = %self.instance(),
                        reason = %e,
                        "max_error_count stays at the server's default: a load with more warnings than that is refused"
                    );
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Whether loads on this instance see only the server's default number
    /// of warnings (the account may not raise `max_error_count`).
    pub fn error_count_limited(&self) -> bool {
        self.error_count_denied.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A permit for one more open connection if one is free now, or can be
    /// freed by closing an idle connection.
    fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        let idle = self.take_idle(None)?;
        drop(idle.conn);
        Some(idle.permit)
    }

    /// A permit for one more open connection: free, or freed by closing an
    /// idle connection, or the next one released.
    pub async fn permit(&self) -> OwnedSemaphorePermit {
        loop {
            if let Some(permit) = self.try_permit() {
                return permit;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.freed.notified()).await;
        }
    }

    /// A connection in `role`: an idle one if possible, else a new one.
    pub async fn get(self: &Arc<Self>, role: Role) -> Result<Lease> {
        match self.lease(role, true).await? {
            Some(lease) => Ok(lease),
            None => Err(Error::Internal("no connection although waiting for one".into())),
        }
    }

    /// Like [`Pool::get`], but `None` at once instead of waiting when every
    /// connection the pool may open is in use.
    pub async fn try_get(self: &Arc<Self>, role: Role) -> Result<Option<Lease>> {
        self.lease(role, false).await
    }

    async fn lease(self: &Arc<Self>, role: Role, wait: bool) -> Result<Option<Lease>> {
        loop {
            let (mut conn, permit, was, since) = match self.take_idle(Some(role)) {
                Some(idle) => (Some(idle.conn), idle.permit, idle.role, idle.since),
                None => {
                    let permit = if wait {
                        self.permit().await
                    } else {
                        match self.try_permit() {
                            Some(permit) => permit,
                            None => return Ok(None),
                        }
                    };
                    (None, permit, role, Instant::now())
                }
            };
            if let Some(c) = conn.as_mut() {
                let healthy = if was != role {
                    c.query_drop(role.setup()).await.is_ok()
                } else if since.elapsed() > STALE_AFTER {
                    c.ping().await.is_ok()
                } else {
                    true
                };
                if !healthy {
                    // Idle, so without locks; but a dead session still takes
                    // one of the account's connections on the server.
                    self.note_if_lost(c);
                    drop(conn);
                    drop(permit);
                    continue;
                }
            }
            let mut conn = match conn {
                Some(conn) => conn,
                None => self.open(role).await?,
            };
            // Nothing may lock rows here before the lost sessions' locks are gone.
            self.lost.settle(&mut conn).await?;
            return Ok(Some(Lease {
                conn: Some(conn),
                role,
                permit: Some(permit),
                home: Home::Pool(self.clone()),
            }));
        }
    }

    /// A new connection outside the pool's limit and idle list, for a
    /// short errand while every pooled one may be busy (interrupting them).
    pub async fn unpooled(&self) -> Result<Conn> {
        self.dialer.connect().await
    }

    /// A new connection with its own permit, outside the idle list (for
    /// snapshot readers, which keep their transaction).
    pub async fn get_fresh(self: &Arc<Self>, role: Role) -> Result<Lease> {
        let permit = self.permit().await;
        let mut conn = self.open(role).await?;
        self.lost.settle(&mut conn).await?;
        Ok(Lease {
            conn: Some(conn),
            role,
            permit: Some(permit),
            home: Home::Pool(self.clone()),
        })
    }

    /// Takes in a connection opened elsewhere (a snapshot reader) as idle.
    pub fn adopt(&self, conn: Conn, role: Role, permit: OwnedSemaphorePermit) {
        self.put(Idle {
            conn,
            role,
            permit,
            since: Instant::now(),
        });
    }

    /// Closes every idle connection.
    pub fn close_idle(&self) {
        let drained: Vec<Idle> = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(drained);
    }
}
