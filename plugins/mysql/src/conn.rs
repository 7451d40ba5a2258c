//! Connections: the plugin's tokio runtime, connection options, per-role
//! session settings and a small pool capped at `max_connections`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dbferry_plugin_abi::protocol::SessionConfig;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::runtime::Runtime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::error::{Context, Error, Result};
use crate::group::InfileShelf;
use crate::lost::{Incarnation, Lost, LostSessions};
use crate::tls::{Refusal, TlsMode, TlsSettings};

/// How long a new connection may take to log in.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection silent this long gets TCP keepalive probes: a peer gone
/// without a reset (packets dropped) is found even while we only wait.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// Pause between two keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes after which the connection is dead.
pub const KEEPALIVE_PROBES: u32 = 4;
/// Data sent and not acknowledged for this long ends the connection
/// (TCP_USER_TIMEOUT). Backpressure pauses never leave data unacknowledged
/// (a paused side sends nothing; the peer's kernel acks what it buffers),
/// so only a silent network reaches it.
pub const USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Puts [`guard_socket`] on every TCP socket of this process whose peer
/// is `port`. mysql_async 0.37 sets only the keepalive time and never shows
/// its socket, so after it connects the socket is found by its peer; another
/// connection to the same port gets the same guards, which it wants too.
pub fn guard_connections_to(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in fds.flatten() {
        let Some(raw) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the calls below; one
        // closed meanwhile makes them fail, and they are then skipped.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let socket = socket2::SockRef::from(&fd);
        let is_server = socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
            && socket
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a.port() == port);
        if is_server {
            if let Err(e) = guard_socket(socket) {
                tracing::debug!(error = %e, "guarding a server connection");
            }
        }
    }
}

/// Puts the silent-network guards on a connected socket: keepalive
/// probes after [`KEEPALIVE_IDLE`] and [`USER_TIMEOUT`]. A dead peer is
/// then found within about 35 s of silence, or 60 s of unacknowledged data.
pub fn guard_socket(socket: socket2::SockRef<'_>) -> std::io::Result<()> {
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    socket.set_tcp_user_timeout(Some(USER_TIMEOUT))
}

/// Idle connections older than this are pinged before reuse.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// The `sql_mode` of writer connections while loading.
///
/// - `STRICT_ALL_TABLES`: a value the target would truncate or alter is an
///   error (with `LOCAL` the server reports it as a warning, which the
///   writer turns into an error), never a silent change.
/// - no `NO_ZERO_DATE`/`NO_ZERO_IN_DATE`, plus `ALLOW_INVALID_DATES`:
///   whatever dates the source holds (zero dates, `2020-02-31` written under
///   a lax mode) load unchanged; these are values, not truncations.
/// - `NO_AUTO_VALUE_ON_ZERO`: a 0 in an AUTO_INCREMENT column stays 0.
/// - `NO_ENGINE_SUBSTITUTION`: never silently change a table's engine.
/// - nothing else: no `ANSI_QUOTES`, `PAD_CHAR_TO_FULL_LENGTH`,
///   `NO_BACKSLASH_ESCAPES` or `ORACLE` that would change how our SQL parses.
pub const LOAD_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES,NO_ENGINE_SUBSTITUTION";

/// A neutral `sql_mode` for our own statements (reads, catalogue queries).
pub const PLAIN_SQL_MODE: &str = "NO_ENGINE_SUBSTITUTION";

/// The process-wide runtime every plugin call blocks on.
pub fn runtime() -> Result<&'static Runtime> {
    dbferry_plugin_sdk::runtime::runtime("dbferry-mysql").map_err(Error::Internal)
}

/// What a connection is used for; each role has its own session settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Catalogue queries and DDL.
    Control,
    /// Reading rows: results arrive as stored bytes.
    Reader,
    /// Loading rows.
    Writer,
}

impl Role {
    /// Statements that put a connection into this role, whatever it was before.
    /// Every role sets the same variables, so switching roles is one round trip.
    /// None of them needs a privilege on MySQL 9.7 or MariaDB 10.11 (a
    /// cloud-shaped account has no `SESSION_VARIABLES_ADMIN`); the one that
    /// does, `max_error_count`, is raised apart, where permitted
    /// ([`RAISE_ERROR_COUNT`]).
    pub fn setup(self) -> String {
        let (results, mode, checks, isolation) = match self {
            Role::Control => ("utf8mb4", PLAIN_SQL_MODE, 1, "REPEATABLE READ"),
            // No conversion: text and binary columns arrive as stored bytes.
            Role::Reader => ("binary", PLAIN_SQL_MODE, 1, "REPEATABLE READ"),
            // READ COMMITTED: clearing a chunk's range before a redo takes no
            // gap locks, so neighbouring chunks load in parallel without deadlocks.
            Role::Writer => ("utf8mb4", LOAD_SQL_MODE, 0, "READ COMMITTED"),
        };
        // Long net timeouts: backpressure may pause a result set (reader)
        // or a LOAD DATA stream (writer) for a while.
        format!(
            "SET NAMES utf8mb4, time_zone = '+00:00', character_set_results = {results}, \
             sql_mode = '{mode}', foreign_key_checks = {checks}, unique_checks = {checks}, \
             net_read_timeout = 3600, net_write_timeout = 3600; \
             SET SESSION TRANSACTION ISOLATION LEVEL {isolation}"
        )
    }
}

/// Lets a writer see every warning of a `LOAD DATA` (MySQL's default is
/// 1,024, MariaDB's 64), so that it can tell benign ones from altered values.
/// MySQL 8.0.26+ wants `SESSION_VARIABLES_ADMIN` for it: without that, only
/// the server's default number of warnings can be inspected, and a load with
/// more warnings than that is refused rather than trusted blindly.
pub const RAISE_ERROR_COUNT: &str = "SET SESSION max_error_count = 65535";

/// Facts about the server, read once at connect.
#[derive(Clone, Debug, Default)]
pub struct ServerFacts {
    /// `@@version`.
    pub version: String,
    /// MariaDB rather than MySQL.
    pub mariadb: bool,
    /// Major, minor, patch.
    pub numbers: (u16, u16, u16),
    /// `@@max_allowed_packet`.
    pub max_allowed_packet: u64,
}

impl ServerFacts {
    /// `MariaDB` or `MySQL`.
    pub fn product(&self) -> &'static str {
        if self.mariadb {
            "MariaDB"
        } else {
            "MySQL"
        }
    }

    /// Makes `information_schema.TABLES` on `conn` report sizes as the
    /// storage engine has them now. MySQL 8.0+ caches those statistics for
    /// `information_schema_stats_expiry` seconds (a day by default), so a
    /// table bulk-loaded after it was created reads as a few KiB: the
    /// planner would read it whole on one connection and the storage
    /// precheck would under-count it. The variable needs no privilege.
    /// MariaDB has no such cache (nor the variable).
    pub async fn fresh_statistics(&self, conn: &mut Conn) -> Result<()> {
        if self.mariadb || self.numbers < (8, 0, 0) {
            return Ok(());
        }
        conn.query_drop("SET SESSION information_schema_stats_expiry = 0")
            .await
            .ctx(|| "asking for uncached table statistics".into())
    }

    /// Whether `CAST(x AS DOUBLE)` exists (MariaDB 10.4+, MySQL 8.0.17+).
    pub fn has_cast_double(&self) -> bool {
        let (a, b, c) = self.numbers;
        if self.mariadb {
            (a, b) >= (10, 4)
        } else {
            (a, b, c) >= (8, 0, 17)
        }
    }
}

/// Parses `10.11.6-MariaDB-0+deb12u1` or `8.0.36`.
pub fn parse_version(version: &str) -> (u16, u16, u16) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u16>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// Driver options for `config`. Engine options understood: `prefer_socket`
/// (bool, default false), `socket` (path); TLS comes from `tls`.
pub fn options(config: &SessionConfig, infiles: &InfileShelf, tls: &TlsSettings) -> Opts {
    let prefer_socket = config
        .options
        .get("prefer_socket")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let socket = config
        .options
        .get("socket")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    OptsBuilder::default()
        .ip_or_hostname(config.host.clone())
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(Some(config.password.clone()))
        .prefer_socket(prefer_socket)
        .socket(socket)
        // The client never limits packet size: one row may be 64 MiB or more;
        // only the server's own max_allowed_packet applies.
        .max_allowed_packet(Some(1 << 30))
        .stmt_cache_size(0)
        .tcp_nodelay(true)
        // mysql_async sets only the idle time (the kernel's probe interval
        // and count apply); its sockets are not reachable for more.
        .tcp_keepalive(Some(KEEPALIVE_IDLE))
        .local_infile_handler(Some(infiles.clone()))
        .ssl_opts(tls.ssl_opts())
        .into()
}

struct Idle {
    conn: Conn,
    role: Role,
    permit: OwnedSemaphorePermit,
    since: Instant,
}

/// Connections to one instance, at most `max_connections` open at once.
pub struct Pool {
    opts: Opts,
    /// The same without TLS, for a `preferred` server that offers none.
    plain_opts: Opts,
    /// The same with unchecked TLS: tells a server that refuses plaintext
    /// logins (MariaDB says only "Access denied") from a wrong password.
    trust_opts: Opts,
    /// Set once a `preferred` server turned out to offer no TLS.
    plaintext: std::sync::atomic::AtomicBool,
    slow_reader_noted: std::sync::atomic::AtomicBool,
    /// Set once the server refused [`RAISE_ERROR_COUNT`] to this account.
    error_count_denied: std::sync::atomic::AtomicBool,
    tls: TlsSettings,
    /// The rustls configuration of wire readers; `None` for `off`.
    wire_tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    infiles: InfileShelf,
    instance: String,
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
        if let Home::Pool(pool) = &self.home {
            pool.note_if_lost(&conn);
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
        crate::tls::install_crypto_provider();
        let infiles = InfileShelf::default();
        let tls = TlsSettings::from_options(&config.options)?;
        let plain = TlsSettings {
            mode: TlsMode::Off,
            ..tls.clone()
        };
        Ok(Arc::new(Self {
            opts: options(config, &infiles, &tls),
            plain_opts: options(config, &infiles, &plain),
            trust_opts: options(
                config,
                &infiles,
                &TlsSettings {
                    mode: TlsMode::Trust,
                    ..tls.clone()
                },
            ),
            plaintext: std::sync::atomic::AtomicBool::new(tls.mode == TlsMode::Off),
            wire_tls: match tls.mode {
                TlsMode::Off => None,
                _ => Some(tls.client_config()?),
            },
            slow_reader_noted: std::sync::atomic::AtomicBool::new(false),
            error_count_denied: std::sync::atomic::AtomicBool::new(false),
            tls,
            infiles,
            instance: config.instance_id.clone(),
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
    fn note_if_lost(&self, conn: &Conn) {
        if !conn.is_disconnected() {
            return;
        }
        match self.incarnation.get() {
            Some(incarnation) => self.lost.note(Lost {
                id: conn.id(),
                incarnation: *incarnation,
            }),
            None => {
                tracing::debug!(instance = %self.instance, session_id = conn.id(), "lost a session of a server whose start is unknown; it cannot be killed safely")
            }
        }
    }

    /// The instance's TLS settings.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// Whether the fast reader's absence was already logged; marks it logged.
    pub fn noted_slow_reader(&self) -> bool {
        self.slow_reader_noted.swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether connections go without TLS (mode `off`, or a `preferred`
    /// server that offers none).
    pub fn plaintext(&self) -> bool {
        self.plaintext.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Payloads served to `LOAD DATA LOCAL INFILE` statements by file name.
    pub fn infiles(&self) -> &InfileShelf {
        &self.infiles
    }

    /// How a [`crate::wire::WireConn`] logs in to this instance; `None`
    /// when it goes through a Unix socket, which the wire client does not speak.
    pub fn wire_login(&self) -> Option<crate::wire::Login> {
        if self.opts.socket().is_some() || self.opts.prefer_socket() {
            return None;
        }
        Some(crate::wire::Login {
            host: self.opts.ip_or_hostname().to_string(),
            port: self.opts.tcp_port(),
            user: self.opts.user()?.to_string(),
            password: self.opts.pass().unwrap_or_default().to_string(),
            tls: if self.plaintext() { TlsMode::Off } else { self.tls.mode },
            tls_config: self.wire_tls.clone(),
            instance: self.instance.clone(),
        })
    }

    /// The instance id, for messages.
    pub fn instance(&self) -> &str {
        &self.instance
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

    /// Logs in, with TLS as the mode says.
    async fn connect(&self) -> Result<Conn> {
        let opts = if self.plaintext() { &self.plain_opts } else { &self.opts };
        match self.connect_with(opts.clone()).await {
            Ok(conn) => Ok(conn),
            Err(Error::Tls {
                refusal: Refusal::NotOffered,
                ..
            }) if self.tls.mode == TlsMode::Preferred => {
                if !self.plaintext.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        instance = %self.instance,
                        "the server offers no TLS: connections are not encrypted (tls is preferred)"
                    );
                }
                self.connect_with(self.plain_opts.clone()).await
            }
            Err(e) if self.plaintext() && e.server_code() == Some(crate::error::code::ACCESS_DENIED) => {
                // MariaDB refuses a plaintext login under
                // require_secure_transport as "Access denied"; the same
                // login over TLS tells that apart from a wrong password.
                match self.connect_with(self.trust_opts.clone()).await {
                    Ok(conn) => {
                        drop(conn);
                        Err(Error::Tls {
                            instance: self.instance.clone(),
                            refusal: Refusal::Required,
                            message: format!(
                                "tls = \"{}\", but the server requires TLS: it refused the plaintext login ({e}) \
                                 and accepted the same login over TLS",
                                self.tls.mode.as_str()
                            ),
                        })
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn connect_with(&self, opts: Opts) -> Result<Conn> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
            Ok(Ok(conn)) => {
                guard_connections_to(self.opts.tcp_port());
                Ok(conn)
            }
            Ok(Err(e)) => Err(crate::error::connect_error(&self.instance, self.tls.mode, e)),
            Err(_) => Err(Error::Connect {
                instance: self.instance.clone(),
                message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                server_code: None,
            }),
        }
    }

    /// Opens a fresh connection in `role` (no permit involved).
    async fn open(&self, role: Role) -> Result<Conn> {
        let mut conn = self.connect().await?;
        conn.query_drop(role.setup())
            .await
            .ctx(|| format!("setting up a session on {}", self.instance))?;
        self.raise_error_count(&mut conn).await?;
        if self.incarnation.get().is_none() {
            match Incarnation::read(&mut conn).await {
                Ok(incarnation) => {
                    let _ = self.incarnation.set(incarnation);
                }
                Err(e) => tracing::debug!(instance = %self.instance, error = %e, "reading when the server started"),
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
                        instance = %self.instance,
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
        self.connect().await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("10.11.6-MariaDB-0+deb12u1"), (10, 11, 6));
        assert_eq!(parse_version("8.0.36"), (8, 0, 36));
        assert_eq!(parse_version("5.5.5-10.4.1-MariaDB"), (5, 5, 5));
        assert_eq!(parse_version(""), (0, 0, 0));
    }

    #[test]
    fn every_role_sets_the_same_variables() {
        let vars = [
            "SET NAMES utf8mb4",
            "time_zone = '+00:00'",
            "character_set_results = ",
            "sql_mode = ",
            "foreign_key_checks = ",
            "unique_checks = ",
            "net_read_timeout = ",
            "net_write_timeout = ",
            "SET SESSION TRANSACTION ISOLATION LEVEL ",
        ];
        for role in [Role::Control, Role::Reader, Role::Writer] {
            let sql = role.setup();
            for var in vars {
                assert!(sql.contains(var), "{role:?} lacks {var}");
            }
        }
        assert!(Role::Reader.setup().contains("character_set_results = binary"));
        assert!(Role::Writer.setup().contains(LOAD_SQL_MODE));
    }

    #[test]
    fn no_role_sets_a_variable_that_needs_a_privilege() {
        // SESSION_VARIABLES_ADMIN on MySQL 8.0.26+; cloud accounts lack it.
        for role in [Role::Control, Role::Reader, Role::Writer] {
            let sql = role.setup().to_ascii_lowercase();
            for restricted in [
                "max_error_count",
                "sql_log_bin",
                "binlog_format",
                "gtid_next",
                "pseudo_",
            ] {
                assert!(!sql.contains(restricted), "{role:?} sets {restricted}");
            }
        }
    }
}

/// Helpers to read result cells whatever the protocol delivered.
pub mod cell {
    use mysql_async::{Row, Value};

    /// Raw bytes of a cell; `None` for NULL.
    pub fn bytes(row: &Row, i: usize) -> Option<Vec<u8>> {
        match row.as_ref(i)? {
            Value::NULL => None,
            Value::Bytes(b) => Some(b.clone()),
            Value::Int(v) => Some(v.to_string().into_bytes()),
            Value::UInt(v) => Some(v.to_string().into_bytes()),
            Value::Float(v) => Some(v.to_string().into_bytes()),
            Value::Double(v) => Some(v.to_string().into_bytes()),
            other => Some(other.as_sql(true).into_bytes()),
        }
    }

    /// A cell as text; `None` for NULL. Describing 1,000 tables reads some
    /// 60,000 cells, so text is not copied through `bytes` first.
    pub fn text(row: &Row, i: usize) -> Option<String> {
        match row.as_ref(i)? {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => bytes(row, i).map(|b| String::from_utf8_lossy(&b).into_owned()),
        }
    }

    /// A cell as text, NULL as empty.
    pub fn string(row: &Row, i: usize) -> String {
        text(row, i).unwrap_or_default()
    }

    /// A cell as an unsigned number; NULL or garbage as 0.
    pub fn u64(row: &Row, i: usize) -> u64 {
        match row.as_ref(i) {
            Some(Value::Bytes(b)) => std::str::from_utf8(b).map_or(0, number),
            _ => text(row, i).map_or(0, |t| number(&t)),
        }
    }

    /// Text as an unsigned number (a decimal's integer part); garbage as 0.
    pub fn number(text: &str) -> u64 {
        text.trim().split('.').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    }
}

#[cfg(test)]
mod socket_guard_tests {
    use super::*;

    #[test]
    fn connections_to_a_port_are_found_and_guarded_and_others_are_not() -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let other = std::net::TcpListener::bind("127.0.0.1:0")?;
        let server = std::net::TcpStream::connect(listener.local_addr()?)?;
        let unrelated = std::net::TcpStream::connect(other.local_addr()?)?;
        guard_connections_to(listener.local_addr()?.port());
        assert_eq!(socket2::SockRef::from(&server).tcp_user_timeout()?, Some(USER_TIMEOUT));
        assert_eq!(socket2::SockRef::from(&unrelated).tcp_user_timeout()?, None);
        Ok(())
    }

    #[test]
    fn a_guarded_socket_probes_an_idle_peer_and_bounds_unacknowledged_data() -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let stream = std::net::TcpStream::connect(listener.local_addr()?)?;
        let socket = socket2::SockRef::from(&stream);
        assert!(!socket.keepalive()?, "off before the guard");
        guard_socket(socket2::SockRef::from(&stream))?;
        assert!(socket.keepalive()?);
        assert_eq!(socket.tcp_keepalive_time()?, KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval()?, KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries()?, KEEPALIVE_PROBES);
        assert_eq!(socket.tcp_user_timeout()?, Some(USER_TIMEOUT));
        Ok(())
    }
}
