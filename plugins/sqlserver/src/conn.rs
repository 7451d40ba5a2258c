//! Connections: the plugin's tokio runtime, tiberius configuration (SQL
//! authentication, the certificate trust of `tls`), session settings and a
//! small pool capped at `max_connections`, which settles every connection's
//! encryption level once ([`crate::tls`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dbferry_plugin_abi::protocol::SessionConfig;
use dbferry_plugin_abi::protocol::{TlsRefusal, TransportInfo};
use tiberius::{AuthMethod, Client, Config};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::error::{code, Context, Error, Result};
use crate::flavour::Flavour;
use crate::prelogin;
use crate::tls::{Settled, Tls};

/// A connected client.
pub type Conn = Client<Compat<TcpStream>>;

/// How long a new connection may take to log in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle connections older than this are checked before reuse.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// Session settings of every connection: the ANSI options SQL Server needs
/// for indexed views, computed columns and filtered indexes; no silent
/// truncation or arithmetic rounding; unlimited `TEXTSIZE` so (max) values
/// arrive whole; `XACT_ABORT` so a failed statement rolls its transaction back.
pub const SESSION_SETUP: &str = "SET ANSI_NULLS ON; SET ANSI_PADDING ON; SET ANSI_WARNINGS ON; \
     SET ARITHABORT ON; SET CONCAT_NULL_YIELDS_NULL ON; SET QUOTED_IDENTIFIER ON; \
     SET NUMERIC_ROUNDABORT OFF; SET XACT_ABORT ON; SET TEXTSIZE 2147483647; \
     SET DATEFORMAT ymd; SET LOCK_TIMEOUT -1; SET NOCOUNT ON; \
     SET TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// The process-wide runtime every plugin call blocks on.
pub fn runtime() -> Result<&'static Runtime> {
    dbferry_plugin_sdk::runtime::runtime("dbferry-sqlserver").map_err(Error::Internal)
}

/// The tiberius configuration for `config` (never logged: it holds the password).
pub fn client_config(config: &SessionConfig) -> Result<Config> {
    let mut out = Config::new();
    out.host(&config.host);
    out.port(config.port);
    out.application_name("dbferry");
    out.authentication(AuthMethod::sql_server(&config.user, &config.password));
    // tiberius 0.13 bounds every server round trip by 30 s by default, a
    // bulk load's acknowledgement and a long index build included; an
    // import's statements take as long as their data does.
    out.command_timeout(None);
    // The encryption level is the pool's to settle (Pool::settle).
    Tls::from_options(&config.options)?.trust(&mut out)?;
    Ok(out)
}

/// Runs a batch and drains its results.
pub async fn exec(conn: &mut Conn, sql: &str) -> Result<()> {
    conn.simple_query(sql)
        .await
        .ctx(|| format!("running {}", abbreviate(sql)))?
        .into_results()
        .await
        .ctx(|| format!("running {}", abbreviate(sql)))?;
    Ok(())
}

/// Runs a query and returns the rows of its first result.
pub async fn rows(conn: &mut Conn, sql: &str) -> Result<Vec<tiberius::Row>> {
    conn.simple_query(sql)
        .await
        .ctx(|| format!("running {}", abbreviate(sql)))?
        .into_first_result()
        .await
        .ctx(|| format!("reading the result of {}", abbreviate(sql)))
}

/// The query of a connection's session id (`@@SPID`; on Babelfish, its
/// PostgreSQL backend's process id).
const SESSION_ID: &str = "SELECT CAST(@@SPID AS int)";

/// Asked of every new connection with its settings, in the same round trip
/// (on Babelfish each statement a new connection meets costs a parse by a
/// cold T-SQL parser): its session id, and what the server is
/// ([`crate::flavour::DETECT_SQL`]'s answer).
const OPENING_SQL: &str = "SELECT CAST(@@SPID AS int), CAST(SERVERPROPERTY('babelfish') AS int)";

/// This connection's session id (see [`Lease::session_id`], which knows it
/// without asking).
pub async fn session_id(conn: &mut Conn) -> Result<i64> {
    session_id_of(&rows(conn, SESSION_ID).await?)
}

fn session_id_of(found: &[tiberius::Row]) -> Result<i64> {
    found
        .first()
        .and_then(|r| crate::cell::int(r, 0))
        .ok_or_else(|| Error::Internal("no @@SPID".into()))
}

/// The first 200 characters of a statement, for messages.
pub fn abbreviate(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

struct Idle {
    conn: Conn,
    session_id: i64,
    permit: OwnedSemaphorePermit,
    since: Instant,
}

/// Connections to one instance, at most `max_connections` open at once.
pub struct Pool {
    /// Everything but the encryption level, which `settled` holds.
    config: Config,
    tls: Tls,
    /// Settled from the server's PRELOGIN answer by the first connection.
    settled: tokio::sync::OnceCell<Settled>,
    /// What the server is, as its first connection found.
    flavour: std::sync::OnceLock<Flavour>,
    instance: String,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    freed: Notify,
}

/// A connection borrowed from a [`Pool`]. Dropping it discards the
/// connection (the server rolls back whatever it had open);
/// [`Lease::release`] gives it back.
pub struct Lease {
    conn: Option<Conn>,
    session_id: i64,
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<Pool>,
}

impl Lease {
    /// The connection.
    pub fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Internal("connection already released".into()))
    }

    /// The connection's session id on the server, learnt when it logged in.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// Gives the connection back. Only when no result is pending and no
    /// transaction is open.
    pub fn release(mut self) {
        if let (Some(conn), Some(permit)) = (self.conn.take(), self.permit.take()) {
            self.pool.put(Idle {
                conn,
                session_id: self.session_id,
                permit,
                since: Instant::now(),
            });
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if let Ok(rt) = runtime() {
            let _guard = rt.enter();
            drop(conn);
        }
        drop(self.permit.take());
        self.pool.freed.notify_waiters();
    }
}

impl Pool {
    /// A pool for `config`; opens nothing yet.
    pub fn new(config: &SessionConfig) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            config: client_config(config)?,
            tls: Tls::from_options(&config.options)?,
            settled: tokio::sync::OnceCell::new(),
            flavour: std::sync::OnceLock::new(),
            instance: config.instance_id.clone(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(config.max_connections.max(2) as usize)),
            freed: Notify::new(),
        }))
    }

    /// The instance id, for messages.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn put(&self, idle: Idle) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(idle);
        self.freed.notify_waiters();
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// What the server is, once a connection has logged in.
    pub fn flavour(&self) -> Option<Flavour> {
        self.flavour.get().copied()
    }

    /// How this instance's connections travel, once one has logged in.
    pub fn transport(&self) -> Option<TransportInfo> {
        self.settled.get().map(|settled| self.tls.transport(*settled))
    }

    /// The encryption level every connection asks for, settled once from
    /// what the server answers about encryption ([`Tls::settle`]).
    async fn settle(&self) -> Result<Settled> {
        let settled = self
            .settled
            .get_or_try_init(|| async {
                let answer = prelogin::ask(&self.config.get_addr(), self.tls.asks(), CONNECT_TIMEOUT)
                    .await
                    .map_err(|e| Error::Connect {
                        instance: self.instance.clone(),
                        message: format!("asking the server about encryption (PRELOGIN): {e}"),
                    })?;
                let settled = self.tls.settle(answer).map_err(|(refusal, message)| Error::Tls {
                    instance: self.instance.clone(),
                    refusal,
                    message,
                })?;
                if !settled.encrypted && self.tls == Tls::Preferred {
                    tracing::warn!(
                        instance = %self.instance,
                        "the server offers no TLS: connections are not encrypted (tls is preferred)"
                    );
                }
                Ok::<_, Error>(settled)
            })
            .await?;
        Ok(*settled)
    }

    async fn open(&self) -> Result<(Conn, i64)> {
        let instance = || self.instance.clone();
        let mut config = self.config.clone();
        config.encryption(self.settle().await?.level);
        let connect = async {
            let tcp = TcpStream::connect(config.get_addr())
                .await
                .map_err(|e| Error::Connect {
                    instance: instance(),
                    message: e.to_string(),
                })?;
            tcp.set_nodelay(true).map_err(|e| Error::Connect {
                instance: instance(),
                message: e.to_string(),
            })?;
            Client::connect(config, tcp.compat_write()).await.map_err(|e| match e {
                // tiberius reports a refused certificate as a TLS error
                // naming rustls's reason; other TLS errors (no TLS
                // offered, a broken handshake) stay connect errors.
                tiberius::error::Error::Tls(message) if message.contains("certificate was rejected") => Error::Tls {
                    instance: instance(),
                    refusal: TlsRefusal::Unverified,
                    message: format!("the server's certificate did not verify: {message}"),
                },
                tiberius::error::Error::Server(e) if e.code() == code::LOGIN_FAILED => Error::LoginRefused {
                    instance: instance(),
                    message: e.message().to_string(),
                },
                other => Error::Connect {
                    instance: instance(),
                    message: other.to_string(),
                },
            })
        };
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| Error::Connect {
                instance: instance(),
                message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            })??;
        // One round trip for both: the settings make no result set.
        let opened = rows(&mut conn, &format!("{SESSION_SETUP}; {OPENING_SQL}")).await?;
        let session_id = session_id_of(&opened)?;
        let babelfish = opened.first().and_then(|r| crate::cell::int(r, 1));
        let _ = self.flavour.set(Flavour::from_babelfish_property(babelfish));
        Ok((conn, session_id))
    }

    /// A new connection outside the pool's limit and idle list, for a
    /// short errand while every pooled one may be busy (interrupting them).
    pub async fn unpooled(&self) -> Result<Conn> {
        Ok(self.open().await?.0)
    }

    async fn permit(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return permit;
            }
            if let Some(idle) = self.take_idle() {
                drop(idle.conn);
                return idle.permit;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.freed.notified()).await;
        }
    }

    /// A connection: an idle one if it still answers, else a new one.
    pub async fn get(self: &Arc<Self>) -> Result<Lease> {
        loop {
            let ((conn, session_id), permit) = match self.take_idle() {
                Some(mut idle) => {
                    let healthy = idle.since.elapsed() <= STALE_AFTER || exec(&mut idle.conn, "SELECT 1").await.is_ok();
                    if !healthy {
                        drop(idle);
                        continue;
                    }
                    ((idle.conn, idle.session_id), idle.permit)
                }
                None => {
                    let permit = self.permit().await;
                    (self.open().await?, permit)
                }
            };
            return Ok(Lease {
                conn: Some(conn),
                session_id,
                permit: Some(permit),
                pool: self.clone(),
            });
        }
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
    fn statements_are_abbreviated_for_messages() {
        assert_eq!(abbreviate("SELECT  1\n FROM x"), "SELECT 1 FROM x");
        let long = "x".repeat(500);
        assert_eq!(abbreviate(&long).len(), 203);
    }

    #[test]
    fn sessions_set_what_the_copy_relies_on() {
        for setting in [
            "XACT_ABORT ON",
            "TEXTSIZE 2147483647",
            "QUOTED_IDENTIFIER ON",
            "ANSI_WARNINGS ON",
        ] {
            assert!(SESSION_SETUP.contains(setting), "{setting}");
        }
    }
}
