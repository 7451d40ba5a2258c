//! Connections: the plugin's tokio runtime, tiberius configuration (SQL
//! authentication, TLS off/on/trust), session settings and a small pool
//! capped at `max_connections`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dbferry_plugin_abi::protocol::SessionConfig;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::error::{code, Context, Error, Result};

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

/// TLS as the instance's config sets it, in the MySQL engine's words:
/// `tls = "off" | "trust" | "verify-ca" | "on"`, absent = preferred, and
/// `tls_ca` (a PEM file) for the two verifying modes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Only the login packet is encrypted (TDS always encrypts the login
    /// when the server can); its certificate is not checked, and every
    /// packet after the login crosses in clear.
    Off,
    /// Everything encrypted when the server offers it, the certificate not
    /// checked (MySQL's `preferred`). The default.
    Preferred,
    /// Everything encrypted; the certificate is accepted as presented
    /// (`TrustServerCertificate=true`).
    Trust,
    /// Everything encrypted; the certificate must chain to `tls_ca` (or the
    /// system roots). tiberius checks the host name too: it cannot check
    /// one without the other, so this is as strict as `On`.
    VerifyCa(Option<String>),
    /// Everything encrypted; the certificate must chain to `tls_ca` (or the
    /// system roots) and name the host.
    On(Option<String>),
}

impl Tls {
    /// Reads `options["tls"]` and `options["tls_ca"]`.
    pub fn from_options(options: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let ca = options
            .get("tls_ca")
            .or_else(|| options.get("tls_ca_file"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let mode = match options.get("tls").and_then(|v| v.as_str()) {
            None | Some("" | "preferred") => Tls::Preferred,
            Some("off") => Tls::Off,
            Some("trust") => Tls::Trust,
            Some("verify-ca") => Tls::VerifyCa(ca.clone()),
            Some("on") => Tls::On(ca.clone()),
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "tls = {other:?} is not one of \"off\", \"trust\", \"verify-ca\", \"on\" (absent: preferred)"
                )))
            }
        };
        if ca.is_some() && !matches!(mode, Tls::VerifyCa(_) | Tls::On(_)) {
            return Err(Error::Invalid(
                "tls_ca is only used with tls = \"verify-ca\" or \"on\"".into(),
            ));
        }
        Ok(mode)
    }
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
    match Tls::from_options(&config.options)? {
        Tls::Off => {
            out.encryption(EncryptionLevel::Off);
            out.trust_cert();
        }
        Tls::Preferred => {
            out.encryption(EncryptionLevel::On);
            out.trust_cert();
        }
        Tls::Trust => {
            out.encryption(EncryptionLevel::Required);
            out.trust_cert();
        }
        Tls::VerifyCa(ca) | Tls::On(ca) => {
            out.encryption(EncryptionLevel::Required);
            if let Some(ca) = ca {
                if !std::path::Path::new(&ca).is_file() {
                    return Err(Error::Invalid(format!("tls_ca {ca:?} is not a readable file")));
                }
                out.trust_cert_ca(ca);
            }
        }
    }
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

/// This connection's session id (`@@SPID`; on Babelfish, its PostgreSQL
/// backend's process id).
pub async fn session_id(conn: &mut Conn) -> Result<i64> {
    let found = rows(conn, "SELECT CAST(@@SPID AS int)").await?;
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
    permit: OwnedSemaphorePermit,
    since: Instant,
}

/// Connections to one instance, at most `max_connections` open at once.
pub struct Pool {
    config: Config,
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

    /// Gives the connection back. Only when no result is pending and no
    /// transaction is open.
    pub fn release(mut self) {
        if let (Some(conn), Some(permit)) = (self.conn.take(), self.permit.take()) {
            self.pool.put(Idle {
                conn,
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

    async fn open(&self) -> Result<Conn> {
        let instance = || self.instance.clone();
        let connect = async {
            let tcp = TcpStream::connect(self.config.get_addr())
                .await
                .map_err(|e| Error::Connect {
                    instance: instance(),
                    message: e.to_string(),
                })?;
            tcp.set_nodelay(true).map_err(|e| Error::Connect {
                instance: instance(),
                message: e.to_string(),
            })?;
            Client::connect(self.config.clone(), tcp.compat_write())
                .await
                .map_err(|e| match e {
                    // tiberius reports a refused certificate as a TLS error
                    // naming rustls's reason; other TLS errors (no TLS
                    // offered, a broken handshake) stay connect errors.
                    tiberius::error::Error::Tls(message) if message.contains("certificate was rejected") => {
                        Error::TlsUnverified {
                            instance: instance(),
                            message,
                        }
                    }
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
        exec(&mut conn, SESSION_SETUP).await?;
        Ok(conn)
    }

    /// A new connection outside the pool's limit and idle list, for a
    /// short errand while every pooled one may be busy (interrupting them).
    pub async fn unpooled(&self) -> Result<Conn> {
        self.open().await
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
            let (conn, permit) = match self.take_idle() {
                Some(mut idle) => {
                    let healthy = idle.since.elapsed() <= STALE_AFTER || exec(&mut idle.conn, "SELECT 1").await.is_ok();
                    if !healthy {
                        drop(idle);
                        continue;
                    }
                    (idle.conn, idle.permit)
                }
                None => {
                    let permit = self.permit().await;
                    (self.open().await?, permit)
                }
            };
            return Ok(Lease {
                conn: Some(conn),
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

    fn options(tls: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        if let Some(tls) = tls {
            map.insert("tls".into(), tls.into());
        }
        map
    }

    #[test]
    fn tls_modes_parse() {
        assert_eq!(Tls::from_options(&options(None)).ok(), Some(Tls::Preferred));
        assert_eq!(Tls::from_options(&options(Some("off"))).ok(), Some(Tls::Off));
        assert_eq!(Tls::from_options(&options(Some("on"))).ok(), Some(Tls::On(None)));
        assert_eq!(
            Tls::from_options(&options(Some("verify-ca"))).ok(),
            Some(Tls::VerifyCa(None))
        );
        assert_eq!(Tls::from_options(&options(Some("trust"))).ok(), Some(Tls::Trust));
        assert!(Tls::from_options(&options(Some("maybe"))).is_err());
        let mut with_ca = options(Some("on"));
        with_ca.insert("tls_ca".into(), "/ca.pem".into());
        assert_eq!(Tls::from_options(&with_ca).ok(), Some(Tls::On(Some("/ca.pem".into()))));
        let mut stray_ca = options(Some("trust"));
        stray_ca.insert("tls_ca".into(), "/ca.pem".into());
        assert!(Tls::from_options(&stray_ca).is_err(), "tls_ca without a verifying mode");
    }

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
