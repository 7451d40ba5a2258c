//! Loading a Babelfish target through its PostgreSQL port.
//!
//! Babelfish's TDS bulk load is slow on the server side (it converts every
//! value through T-SQL's type I/O, and dbferry must stage through a temp
//! table to keep identity values), while the same server's PostgreSQL port
//! takes `COPY FROM STDIN` at the speed of its own storage. When the
//! instance's config names that port (`postgres_port`), each chunk is
//! written by one `COPY` in one transaction on its own PostgreSQL
//! connection ([`writer`]), in the text format of Babelfish's own types
//! ([`text`]). A Babelfish source with the port reads tables out by `COPY`
//! for such a target ([`reader`]); both look tables up alike ([`table`]).
//! Catalogue queries and row counts go through the port too
//! ([`crate::catalog_source`], [`PgPort::count_rows`]); everything that
//! changes the T-SQL catalogue (schema, identity reseeding, indexes after
//! the data) still goes over TDS, so it stays Babelfish's own. Warm
//! connections are kept for reuse ([`PgPort::give_back`]).
//!
//! The login is the instance's own: a Babelfish login is a PostgreSQL role
//! with the same password. The database is the one Babelfish keeps its
//! T-SQL databases in (`babelfishpg_tsql.database_name`). TLS follows the
//! instance's `tls` mode, as on TDS.
//!
//! Babelfish's binary types read a text's own bytes, not hex, so a table
//! with binary columns is copied into a session temp table whose binary
//! columns are `bytea`, then moved into the table by one `INSERT ...
//! SELECT` that casts them. A table the `COPY` path cannot carry
//! (sql_variant columns, a column whose name PostgreSQL shortened) goes
//! over TDS as before.

pub mod reader;
pub mod table;
pub mod text;
pub mod writer;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dbferry_plugin_abi::protocol::SessionConfig;
use dbferry_plugin_sdk::tls::{client_config, Check, TlsConfigError, SYSTEM_ROOTS};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::conn::{rows, Conn};
use crate::detail::TableDetail;
use crate::error::{Error, Result};
use crate::flavour::Flavour;
use crate::tls::Tls;
use crate::types::Transport;

/// How long a PostgreSQL login may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle connections kept for reuse, at most.
const IDLE_MAX: usize = 8;
/// Idle connections older than this are closed rather than reused: the
/// server may have ended them meanwhile.
const IDLE_FOR_AT_MOST: Duration = Duration::from_secs(30);

/// The config key naming the PostgreSQL port.
pub const PORT_OPTION: &str = "postgres_port";

/// Asks a Babelfish server (over TDS) for the PostgreSQL database that
/// holds its T-SQL databases.
pub const DATABASE_SQL: &str = "SELECT CAST(current_setting('babelfishpg_tsql.database_name') AS nvarchar(128))";

/// How to reach one Babelfish instance's PostgreSQL port.
#[derive(Clone)]
pub struct PgPort {
    instance: String,
    config: Arc<tokio_postgres::Config>,
    /// `None` under `tls = "off"`.
    tls: Option<Arc<tokio_postgres_rustls::MakeRustlsConnect>>,
    /// Connections given back with no transaction open and no session
    /// state changed, with when: a Babelfish backend's first statements
    /// load its caches (tens of milliseconds), so a warm one is worth
    /// keeping between a chunk and the next, or a copy and its count.
    idle: IdleClients,
    /// Catalogue connections ([`crate::catalog_source::PgCatalog`]) kept
    /// apart from `idle`: they `USE` databases, and their backends have
    /// the catalogue views' plans warm for the next probe or schema step.
    catalogs: IdleClients,
    /// The TLS version of the instance's TDS sessions, as PostgreSQL saw
    /// the one that opened this port (`None` when unencrypted).
    tds_tls_version: Option<String>,
}

impl std::fmt::Debug for PgPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password.
        f.debug_struct("PgPort")
            .field("instance", &self.instance)
            .field("port", &self.config.get_ports())
            .finish()
    }
}

/// The smallest table whose count PostgreSQL may share with parallel
/// workers (see [`PgPort::count_rows`]).
const PARALLEL_SCAN_FROM: &str = "256MB";

/// The port configured for `config`'s instance, if any.
pub fn configured_port(config: &SessionConfig) -> Result<Option<u16>> {
    let Some(value) = config.options.get(PORT_OPTION) else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .map(Some)
        .ok_or_else(|| Error::Invalid(format!("{PORT_OPTION} = {value} is not a TCP port")))
}

impl PgPort {
    /// The port `port` of `config`'s host, for the PostgreSQL database
    /// `database`, encrypted as `tls` says.
    pub fn new(config: &SessionConfig, port: u16, database: &str, tls: &Tls) -> Result<Self> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&config.host)
            .port(port)
            .user(&config.user)
            .password(&config.password)
            .dbname(database)
            .application_name("dbferry")
            .connect_timeout(CONNECT_TIMEOUT);
        let (mode, check, ca) = match tls {
            Tls::Off => (SslMode::Disable, None, None),
            Tls::Preferred => (SslMode::Prefer, Some(Check::Nothing), None),
            Tls::Trust => (SslMode::Require, Some(Check::Nothing), None),
            Tls::VerifyCa(ca) => (SslMode::Require, Some(Check::Chain), ca.as_deref()),
            Tls::On(ca) => (SslMode::Require, Some(Check::ChainAndName), ca.as_deref()),
        };
        pg.ssl_mode(mode);
        let tls = match check {
            None => None,
            Some(check) => {
                let roots = std::path::Path::new(ca.unwrap_or(SYSTEM_ROOTS));
                let rustls = client_config(check, roots, None).map_err(|e| match e {
                    TlsConfigError::Invalid(m) => Error::Invalid(m),
                    TlsConfigError::Internal(m) => Error::Internal(m),
                })?;
                Some(Arc::new(tokio_postgres_rustls::MakeRustlsConnect::new(
                    (*rustls).clone(),
                )))
            }
        };
        Ok(Self {
            instance: config.instance_id.clone(),
            config: Arc::new(pg),
            tls,
            idle: IdleClients::default(),
            catalogs: IdleClients::default(),
            tds_tls_version: None,
        })
    }

    /// The TLS version of the instance's TDS sessions, learnt when the
    /// port was opened; `None` when PostgreSQL did not show it.
    pub fn tds_tls_version(&self) -> Option<&str> {
        self.tds_tls_version.as_deref()
    }

    /// A connection: a recent idle one ([`Self::give_back`]), else a new one.
    pub async fn client(&self) -> Result<Client> {
        self.client_from(&self.idle).await
    }

    /// Keeps `client` for the next [`Self::client`]. Only for a client
    /// with no transaction open whose session settings are as
    /// [`Self::connect`] left them (no `USE`, no session `SET`).
    pub fn give_back(&self, client: Client) {
        self.idle.keep(client);
    }

    /// A connection for catalogue queries: one given back by
    /// [`Self::give_back_catalog`], else a new one.
    pub async fn catalog_client(&self) -> Result<Client> {
        self.client_from(&self.catalogs).await
    }

    /// Keeps a catalogue connection, with no transaction open, for the
    /// next [`Self::catalog_client`].
    pub fn give_back_catalog(&self, client: Client) {
        self.catalogs.keep(client);
    }

    async fn client_from(&self, idle: &IdleClients) -> Result<Client> {
        match idle.take() {
            Some(client) => Ok(client),
            None => self.connect().await,
        }
    }

    /// A new connection; its driver runs on the plugin's runtime until the
    /// client is dropped.
    pub async fn connect(&self) -> Result<Client> {
        let failed = |e: tokio_postgres::Error| self.connect_error(e);
        let client = match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(failed)?;
                tokio::spawn(connection);
                client
            }
            Some(tls) => {
                let (client, connection) = self.config.connect((**tls).clone()).await.map_err(failed)?;
                tokio::spawn(connection);
                client
            }
        };
        Ok(client)
    }

    /// The rows of `database`'s table `detail`, counted through this port:
    /// what `COUNT_BIG(*)` over TDS answers, without the T-SQL parse that
    /// a new TDS connection meets cold. When `interrupted` fires first, the
    /// server is told to cancel the count, and the call fails as
    /// [`Error::Interrupted`] naming `doing`.
    pub async fn count_rows(
        &self,
        database: &str,
        detail: &TableDetail,
        interrupted: &mut tokio::sync::watch::Receiver<u64>,
        doing: String,
    ) -> Result<u64> {
        let client = self.client().await?;
        let oid = table::oid(&client, database, detail).await?;
        let relation = table::relation(&client, oid, detail).await?;
        // A table under 256 MiB is counted by this backend alone: each
        // parallel worker is a new Babelfish backend, whose start (30-40 ms)
        // outweighs its share of the scan (200k rows, 35 MB: 11 ms alone,
        // 45 ms with PostgreSQL's default two workers). Bigger tables still
        // get workers, as many as PostgreSQL's size rule gives them.
        let sql = format!(
            "BEGIN READ ONLY; SET LOCAL min_parallel_table_scan_size = '{PARALLEL_SCAN_FROM}'; \
             SELECT count(*) FROM {relation}; COMMIT"
        );
        let counted = tokio::select! {
            messages = client.simple_query(&sql) => messages,
            _ = interrupted.changed() => {
                let token = client.cancel_token();
                let cancelled = match &self.tls {
                    None => token.cancel_query(NoTls).await,
                    Some(tls) => token.cancel_query((**tls).clone()).await,
                };
                if let Err(e) = cancelled {
                    tracing::debug!(error = %chain(&e), "cancelling a count");
                }
                return Err(Error::Interrupted(doing));
            }
        };
        let messages = counted.map_err(Error::postgres(format!("counting the rows of {relation}")))?;
        let count = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse::<i64>().ok()),
                _ => None,
            })
            .ok_or_else(|| Error::Internal(format!("counting the rows of {relation} answered no number")))?;
        self.give_back(client);
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn connect_error(&self, e: tokio_postgres::Error) -> Error {
        let port = self.config.get_ports().first().copied().unwrap_or_default();
        // SQLSTATE 28P01/28000: the login was refused.
        let refused = e.code().is_some_and(|c| c.code().starts_with("28"));
        let message = format!("its PostgreSQL port {port} ({PORT_OPTION}): {}", chain(&e));
        if refused {
            Error::LoginRefused {
                instance: self.instance.clone(),
                message,
            }
        } else {
            Error::Connect {
                instance: self.instance.clone(),
                message,
            }
        }
    }
}

/// Connections given back for reuse, each with when, shared by the
/// port's clones.
#[derive(Clone, Default)]
struct IdleClients(Arc<Mutex<Vec<(Client, Instant)>>>);

impl IdleClients {
    /// The newest connection still open and recent enough, if any.
    fn take(&self) -> Option<Client> {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((client, since)) = idle.pop() {
            if !client.is_closed() && since.elapsed() <= IDLE_FOR_AT_MOST {
                return Some(client);
            }
        }
        None
    }

    /// Keeps `client`, up to [`IDLE_MAX`].
    fn keep(&self, client: Client) {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_MAX && !client.is_closed() {
            idle.push((client, Instant::now()));
        }
    }
}

/// An error with its sources, for messages (tokio-postgres's own text
/// leaves out the server's message).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cur = inner.source();
    }
    text
}

/// Checks `postgres_port` for a session: the server must be Babelfish, and
/// the login must get in through that port as the `tls` mode says. `conn`
/// is a TDS connection of the session, whose id on the server is
/// `tds_session`.
pub async fn open(
    config: &SessionConfig,
    port: u16,
    flavour: Flavour,
    conn: &mut Conn,
    tds_session: i64,
) -> Result<PgPort> {
    if flavour != Flavour::Babelfish {
        return Err(Error::Invalid(format!(
            "{PORT_OPTION} is for Babelfish instances; {} is {}",
            config.instance_id,
            flavour.product()
        )));
    }
    let found = rows(conn, DATABASE_SQL).await?;
    let database = found
        .first()
        .and_then(|r| crate::cell::text(r, 0))
        .ok_or_else(|| Error::Internal("Babelfish named no database (babelfishpg_tsql.database_name)".into()))?;
    let tls = Tls::from_options(&config.options)?;
    let mut port = PgPort::new(config, port, &database, &tls)?;
    let client = port.connect().await?;
    // The TDS session's TLS version is asked here too: it is a PostgreSQL
    // backend like this one, and the same question over TDS would be the
    // first catalogue query of a cold T-SQL session (a tenth of a second).
    let tds_session = i32::try_from(tds_session).unwrap_or(0);
    let ssl = client
        .query_one(
            "SELECT (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()), \
             (SELECT version FROM pg_catalog.pg_stat_ssl WHERE pid = $1 AND ssl)",
            &[&tds_session],
        )
        .await;
    // Under `preferred` a server without TLS on this port is taken in
    // plaintext, as on TDS; the rows then cross unencrypted, which the
    // DBA must hear of.
    let encrypted = ssl
        .as_ref()
        .ok()
        .and_then(|row| row.try_get::<_, Option<bool>>(0).ok().flatten())
        .unwrap_or(false);
    port.tds_tls_version = ssl
        .ok()
        .and_then(|row| row.try_get::<_, Option<String>>(1).ok().flatten());
    if !encrypted && tls != Tls::Off {
        tracing::warn!(
            instance = %config.instance_id,
            "its PostgreSQL port ({PORT_OPTION}) offers no TLS: the rows loaded through it cross in plaintext"
        );
    }
    // A session's first calls are its probe and describe.
    port.give_back_catalog(client);
    Ok(port)
}

/// Whether `COPY` can carry every copied column of `detail`: not
/// sql_variant (three values, rebuilt by T-SQL), not a type T-SQL rebuilds
/// from its serialisation (CLR and spatial types, which Babelfish does not
/// hold anyway).
pub fn carries(detail: &TableDetail) -> bool {
    detail
        .copied()
        .all(|c| c.transport() != Transport::Variant && (c.base == "text" || c.rebuild_expr(&["x".to_string()]) == "x"))
}
