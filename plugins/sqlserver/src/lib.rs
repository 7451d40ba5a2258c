//! The SQL Server engine plugin of dbferry (tiberius, TDS 7.3+).
//!
//! Reads each table with one streaming SELECT under SNAPSHOT isolation where
//! the database allows it (see [`snapshot`]), encodes rows in this plugin's
//! own batch format ([`encode`]), and writes by TDS bulk load into a staging
//! table followed by one `INSERT ... SELECT` per chunk that keeps IDENTITY
//! values ([`writer`] explains why). The destination database is created
//! under the name DBInfo maps the source to. Schema: tables first; keys,
//! indexes (clustered first), checks and foreign keys after the data, then
//! identity values, then views, functions, procedures and triggers in
//! dependency order. Optional copy by backup and restore: [`backup`].
//!
//! On Babelfish with `postgres_port`, the catalogue queries (probe and
//! describe) run through the PostgreSQL port ([`catalog_source`]), the
//! target loads by `COPY` ([`pgload`]), and a Babelfish source whose target
//! loads that way reads its tables out by `COPY` too ([`pgload::reader`]).
//!
//! Modules: [`conn`] (runtime, TLS, pool), [`probe`], [`describe`],
//! [`catalog_source`] (where catalogue queries run), [`cell`] (their rows),
//! [`detail`] (the `detail` JSON), [`types`], [`variant`], [`ddl`] (T-SQL
//! text), [`schema`] (target steps), [`encode`], [`reader`], [`writer`],
//! [`split`], [`range`], [`digest`], [`snapshot`], [`backup`], [`fit`] (what a
//! target cannot hold), [`quote`], [`pgload`] (Babelfish targets through
//! their PostgreSQL port), [`write_path`] (which of the two a chunk takes),
//! [`error`], [`feed`] (a chunk's batches to its writing task).
#![deny(missing_docs)]

pub mod backup;
pub mod catalog_source;
pub mod cell;
pub mod conn;
pub mod ddl;
pub mod describe;
pub mod detail;
pub mod digest;
pub mod encode;
pub mod error;
pub mod feed;
pub mod fit;
pub mod flavour;
pub mod interrupt;
pub mod long;
pub mod pgload;
pub mod pieces;
pub mod prelogin;
pub mod probe;
pub mod quote;
pub mod range;
pub mod reader;
pub mod schema;
pub mod snapshot;
pub mod split;
pub mod textform;
pub mod tls;
pub mod types;
pub mod variant;
pub mod write_path;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use dbferry_plugin_abi::export_plugin;
use dbferry_plugin_abi::plugin::{Engine, Session};
use dbferry_plugin_abi::protocol::{
    BackupProgress, BackupRestoreRequest, BackupStep, DatabaseSchema, Digest, DigestRequest, FinishRequest, KeyTuple,
    PluginError, PrepareRequest, ReadRequest, SchemaOutcome, ServerInfo, SessionConfig, SnapshotInfo, SplitRequest,
    TableIndexesRequest, VerifyMode, WriteRequest,
};

use crate::catalog_source::PgCatalog;
use crate::cell::{flag, int};
use crate::conn::{rows, runtime, Pool};
use crate::detail::{DatabaseDetail, TableDetail};
use crate::error::Result;
use crate::flavour::Flavour;
use crate::pgload::PgPort;
use crate::reader::SqlServerReader;
use crate::schema::Steps;
use crate::snapshot::Isolation;
use crate::write_path::ChunkWriter;

/// The engine: `engine = "sqlserver"` in the config.
pub struct SqlServerEngine;

/// A connection to one SQL Server instance.
pub struct SqlServerSession {
    pool: Arc<Pool>,
    flavour: Flavour,
    edition: Option<String>,
    /// How each described database is read.
    isolation: Mutex<BTreeMap<String, Isolation>>,
    /// The session id running a backup or restore, for progress.
    backup_spid: Mutex<Option<i64>>,
    /// Stops the digests and finish statements running now.
    interrupts: interrupt::Interrupts,
    /// A Babelfish instance's PostgreSQL port, when the config names it:
    /// targets load through it, sources read out through it for them.
    postgres: Option<PgPort>,
}

impl Engine for SqlServerEngine {
    type Session = SqlServerSession;

    fn connect(config: SessionConfig) -> std::result::Result<SqlServerSession, PluginError> {
        Ok(SqlServerSession::connect(&config)?)
    }
}

/// Runs `$body` (a future using `$c: &mut Conn`) on a pooled connection;
/// the connection is pooled again only on success.
macro_rules! with_conn {
    ($self:ident, |$c:ident| $body:expr) => {
        runtime()?.block_on(async {
            let mut lease = $self.pool.get().await?;
            let $c = lease.conn()?;
            let out = $body.await?;
            lease.release();
            Ok::<_, error::Error>(out)
        })
    };
}

/// Like `with_conn!`, but ends early when the session is interrupted: the
/// running request is dropped, the server told to stop it as its flavour
/// allows ([`interrupt::stop`]), the connection discarded, and the call
/// fails with [`error::Error::Interrupted`], naming `$doing`.
macro_rules! with_interruptible_conn {
    ($self:ident, $doing:expr, |$c:ident| $body:expr) => {
        runtime()?.block_on(async {
            let mut lease = $self.pool.get().await?;
            let mut interrupted = $self.interrupts.watch();
            let session = match $self.flavour.stops_requests_by() {
                flavour::RequestStop::Attention => None,
                flavour::RequestStop::CancelBackend => Some(lease.session_id()),
            };
            let finished = {
                let $c = lease.conn()?;
                tokio::select! {
                    out = $body => Some(out),
                    _ = interrupted.changed() => None,
                }
            };
            match finished {
                Some(out) => {
                    let out = out?;
                    lease.release();
                    Ok::<_, error::Error>(out)
                }
                None => {
                    // Discarded afterwards: the stopped request's answer may still be unread.
                    interrupt::stop(&$self.pool, lease.conn()?, session).await;
                    Err(error::Error::Interrupted($doing))
                }
            }
        })
    };
}

/// Runs a schema step (`$body`, a future using `$steps`: [`schema::Steps`])
/// as `with_interruptible_conn!` does, with a catalogue connection for its
/// checks where the session has one; the step's error returns early.
macro_rules! with_steps {
    ($self:ident, $doing:expr, |$steps:ident| $body:expr) => {{
        let mut catalog = $self.catalog()?;
        let out = with_interruptible_conn!($self, $doing, |c| {
            let $steps = Steps::new(c, catalog.as_mut());
            $body
        })?;
        $self.close_catalog(catalog);
        out
    }};
}

impl SqlServerSession {
    /// Connects (one login to check the credentials and TLS).
    pub fn connect(config: &SessionConfig) -> Result<Self> {
        let pool = Pool::new(config)?;
        let postgres_port = pgload::configured_port(config)?;
        let (flavour, postgres) = runtime()?.block_on(async {
            let mut lease = pool.get().await?;
            let flavour = pool
                .flavour()
                .ok_or_else(|| error::Error::Internal("a connection logged in without learning the server".into()))?;
            let postgres = match postgres_port {
                None => None,
                Some(port) => {
                    let tds_session = lease.session_id();
                    Some(pgload::open(config, port, flavour, lease.conn()?, tds_session).await?)
                }
            };
            lease.release();
            Ok::<_, error::Error>((flavour, postgres))
        })?;
        tracing::debug!(instance = %config.instance_id, ?flavour, "connected");
        Ok(Self {
            pool,
            flavour,
            edition: config
                .options
                .get("edition")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            isolation: Mutex::new(BTreeMap::new()),
            backup_spid: Mutex::new(None),
            interrupts: interrupt::Interrupts::default(),
            postgres,
        })
    }

    /// The server this session talks to.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// A reader of the chunk by `COPY` through a Babelfish source's
    /// PostgreSQL port, when the target takes its text
    /// ([`pgload::reader`]); `None` to read it over TDS.
    fn copy_reader(&self, request: &ReadRequest, detail: &TableDetail) -> Result<Option<SqlServerReader>> {
        let Some(port) = self.postgres.as_ref() else {
            return Ok(None);
        };
        if !pgload::reader::applies(request, detail)? {
            return Ok(None);
        }
        runtime()?.block_on(pgload::reader::open(port, request, detail))
    }

    /// A catalogue connection for a schema step's existence checks, on
    /// Babelfish with `postgres_port` ([`schema::Steps`]).
    fn catalog(&self) -> Result<Option<PgCatalog>> {
        match self.postgres.as_ref() {
            None => Ok(None),
            Some(port) => Ok(Some(runtime()?.block_on(PgCatalog::open(port))?)),
        }
    }

    /// Gives back the catalogue connection of a step that succeeded.
    fn close_catalog(&self, catalog: Option<PgCatalog>) {
        if let (Some(catalog), Some(port)) = (catalog, self.postgres.as_ref()) {
            catalog.close(port);
        }
    }

    /// How `database` is read: remembered from its description, else asked.
    fn isolation_of(&self, database: &str) -> Result<Isolation> {
        if let Some(i) = self
            .isolation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(database)
        {
            return Ok(*i);
        }
        let sql = format!(
            "SELECT snapshot_isolation_state, is_read_committed_snapshot_on FROM sys.databases WHERE name = {}",
            quote::string(database)
        );
        let found = with_conn!(self, |c| rows(c, &sql))?;
        let isolation = match found.first() {
            Some(r) => Isolation::decide(int(r, 0) == Some(1), flag(r, 1)),
            None => Isolation::TableLock,
        };
        self.remember(database, isolation);
        Ok(isolation)
    }

    fn remember(&self, database: &str, isolation: Isolation) {
        self.isolation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(database.to_string(), isolation);
    }

    fn set_spid(&self, spid: Option<i64>) {
        *self.backup_spid.lock().unwrap_or_else(PoisonError::into_inner) = spid;
    }
}

impl Session for SqlServerSession {
    type Reader = SqlServerReader;
    type Writer = ChunkWriter;

    fn probe(&self) -> std::result::Result<ServerInfo, PluginError> {
        let edition = self.edition.as_deref();
        let mut info = match self.postgres.as_ref() {
            Some(port) => runtime()?.block_on(async {
                let mut catalog = PgCatalog::open(port).await?;
                let info = probe::probe(&mut catalog, edition, self.flavour).await?;
                catalog.close(port);
                Ok::<_, error::Error>(info)
            })?,
            None => with_conn!(self, |c| probe::probe(c, edition, self.flavour))?,
        };
        info.transport = self.pool.transport();
        if let (Some(transport), Some(sql)) = (info.transport.as_mut(), self.flavour.tls_version_sql()) {
            if transport.encrypted {
                transport.tls_version = match self.postgres.as_ref().and_then(PgPort::tds_tls_version) {
                    Some(seen) => Some(seen.to_string()),
                    None => {
                        let version = with_conn!(self, |c| conn::rows(c, sql))?;
                        version.first().and_then(|r| cell::text(r, 0))
                    }
                };
            }
        }
        if self.postgres.is_some() {
            info.batch_formats.push(pgload::reader::COPY_TEXT.into());
        }
        Ok(info)
    }

    fn describe_database(&self, database: &str) -> std::result::Result<DatabaseSchema, PluginError> {
        let described = match self.postgres.as_ref() {
            Some(port) => runtime()?.block_on(async {
                let mut catalog = PgCatalog::open(port).await?;
                let schema = describe::describe(&mut catalog, database, self.flavour).await?;
                catalog.close(port);
                Ok(schema)
            }),
            None => with_conn!(self, |c| describe::describe(c, database, self.flavour)),
        };
        match described {
            Err(e @ error::Error::NotFound(_)) => Err(PluginError::from(e).with_code("InvalidDBName.NotFound")),
            Err(e) => Err(e.into()),
            Ok(schema) => {
                if let Ok(detail) = DatabaseDetail::from_json(&schema.detail) {
                    self.remember(
                        database,
                        Isolation::decide(detail.snapshot_isolation, detail.read_committed_snapshot),
                    );
                }
                Ok(schema)
            }
        }
    }

    fn split_points(&self, request: SplitRequest) -> std::result::Result<Vec<KeyTuple>, PluginError> {
        Ok(with_conn!(self, |c| split::split_points(c, &request))?)
    }

    fn begin_snapshot(&self, _readers: u32) -> std::result::Result<SnapshotInfo, PluginError> {
        let databases: Vec<(String, Isolation)> = self
            .isolation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        Ok(snapshot::snapshot_info(&databases))
    }

    fn end_snapshot(&self) -> std::result::Result<(), PluginError> {
        Ok(())
    }

    fn prepare_target(&self, request: PrepareRequest) -> std::result::Result<SchemaOutcome, PluginError> {
        let doing = format!("preparing {}", request.database);
        Ok(with_steps!(self, doing, |steps| schema::prepare(
            steps,
            &request,
            self.flavour
        )))
    }

    fn check_target(&self, request: PrepareRequest) -> std::result::Result<Vec<String>, PluginError> {
        Ok(fit::unheld(self.flavour, &request.schema)?)
    }

    fn finish_target(&self, request: FinishRequest) -> std::result::Result<SchemaOutcome, PluginError> {
        let doing = format!("finishing {}", request.database);
        Ok(with_steps!(self, doing, |steps| schema::finish(
            steps,
            &request,
            self.flavour
        )))
    }

    fn add_table_indexes(&self, request: TableIndexesRequest) -> std::result::Result<(), PluginError> {
        let doing = format!("adding the indexes of {}.{}", request.database, request.table.name);
        with_steps!(self, doing, |steps| schema::add_table_indexes(steps, &request));
        Ok(())
    }

    fn table_digest(&self, request: DigestRequest) -> std::result::Result<Digest, PluginError> {
        let doing = format!("the digest of {}.{}", request.database, request.table.name);
        if let (VerifyMode::Count, Some(port)) = (request.mode, self.postgres.as_ref()) {
            let detail = TableDetail::from_json(&request.table.detail)?;
            let mut interrupted = self.interrupts.watch();
            let rows = runtime()?.block_on(port.count_rows(&request.database, &detail, &mut interrupted, doing))?;
            return Ok(Digest { rows, checksum: None });
        }
        Ok(with_interruptible_conn!(self, doing, |c| digest::digest(
            c,
            &request,
            self.flavour
        ))?)
    }

    fn interrupt(&self) -> std::result::Result<(), PluginError> {
        self.interrupts.interrupt();
        Ok(())
    }

    fn open_reader(&self, request: ReadRequest) -> std::result::Result<SqlServerReader, PluginError> {
        let detail = TableDetail::from_json(&request.table.detail)?;
        if let Some(reader) = self.copy_reader(&request, &detail)? {
            return Ok(reader);
        }
        let isolation = self.isolation_of(&request.database)?;
        let pieces = pieces::Piecewise::plan(&request, &detail, isolation, self.flavour);
        let sql = reader::select_sql(&request, &detail, isolation, pieces.as_ref())?;
        let lease = runtime()?.block_on(self.pool.get())?;
        Ok(SqlServerReader::start(
            lease,
            &request.database,
            sql,
            detail.width(),
            request.batch_bytes,
            isolation,
            pieces,
        )?)
    }

    fn open_writer(&self, request: WriteRequest) -> std::result::Result<ChunkWriter, PluginError> {
        let detail = TableDetail::from_json(&request.table.detail)?;
        Ok(runtime()?.block_on(ChunkWriter::open(
            &self.pool,
            &request,
            &detail,
            self.flavour,
            self.postgres.as_ref(),
        ))?)
    }

    fn backup_restore(&self, request: BackupRestoreRequest) -> std::result::Result<SchemaOutcome, PluginError> {
        let path = request.backup_path.clone();
        let outcome = runtime()?.block_on(async {
            let mut lease = self.pool.get().await?;
            let conn = lease.conn()?;
            let spid = conn::session_id(conn).await?;
            self.set_spid(Some(spid));
            let out = match request.step {
                BackupStep::Backup => backup::backup(conn, &request.source_database, &path).await,
                BackupStep::Restore => backup::restore(conn, &request.database, &path).await,
                BackupStep::Cleanup => Ok(backup::cleanup(conn, &path).await),
            };
            self.set_spid(None);
            let out = out?;
            lease.release();
            Ok::<_, error::Error>(out)
        });
        match outcome {
            Err(e @ error::Error::Conflict(_)) => Err(e.into()),
            other => Ok(other?),
        }
    }

    fn backup_progress(&self) -> std::result::Result<BackupProgress, PluginError> {
        let spid = *self.backup_spid.lock().unwrap_or_else(PoisonError::into_inner);
        match spid {
            None => Ok(BackupProgress::default()),
            Some(spid) => Ok(with_conn!(self, |c| backup::progress(c, spid))?),
        }
    }
}

impl Drop for SqlServerSession {
    fn drop(&mut self) {
        if let Ok(rt) = runtime() {
            let _guard = rt.enter();
            self.pool.close_idle();
        }
    }
}

export_plugin!(SqlServerEngine, "sqlserver");

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_support {
    /// A port nothing listens on (bound, then released), for tests of
    /// connections that must fail.
    pub fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbferry_plugin_abi::protocol::ErrorKind;

    #[test]
    fn an_unreachable_server_is_a_connect_error_without_the_password() {
        let port = test_support::closed_port();
        let config = SessionConfig {
            instance_id: "rm-test".into(),
            host: "127.0.0.1".into(),
            port,
            user: "sa".into(),
            password: "S3cret-never-shown".into(),
            max_connections: 2,
            options: serde_json::Map::new(),
        };
        assert!(!format!("{config:?}").contains("S3cret"));
        let error = match SqlServerEngine::connect(config) {
            Err(e) => e,
            Ok(_) => panic!("nothing listens there"),
        };
        assert_eq!(error.kind, ErrorKind::Connect);
        assert!(error.message.contains("rm-test"), "{}", error.message);
        assert!(!error.message.contains("S3cret"), "{}", error.message);
    }

    #[test]
    fn a_bad_tls_setting_is_refused_before_connecting() {
        let mut options = serde_json::Map::new();
        options.insert("tls".into(), "sometimes".into());
        let config = SessionConfig {
            instance_id: "i".into(),
            host: "127.0.0.1".into(),
            port: 1,
            user: "u".into(),
            password: "p".into(),
            max_connections: 2,
            options,
        };
        let error = SqlServerEngine::connect(config).err().map(|e| e.kind);
        assert_eq!(error, Some(ErrorKind::InvalidRequest));
    }
}
