//! The MySQL/MariaDB engine plugin of dbferry.
//!
//! Reads with the text protocol under one consistent snapshot, encodes rows
//! straight into `LOAD DATA` input (the target's ingest format, so batches
//! pass through the host untouched) and writes with `LOAD DATA LOCAL
//! INFILE` streamed from memory, one transaction per chunk. Schema: tables
//! as the source defines them, secondary indexes and foreign keys after the
//! data, then routines, views, triggers and events.
//!
//! Modules: [`conn`] (runtime, pool, session roles), [`probe`],
//! [`describe`] (introspection), [`detail`] (the `detail` JSON), [`ddl`]
//! (DDL text), [`schema`] (target DDL), [`encode`], [`reader`], [`writer`],
//! [`group`] (many small tables at once), [`fanout`] (DDL on several
//! connections), [`split`], [`range`],
//! [`digest`], [`snapshot`], [`lost`] (sessions lost to a network fault),
//! [`quote`], [`error`].
#![deny(missing_docs)]

pub mod conn;
pub mod creators;
pub mod ddl;
pub mod describe;
pub mod detail;
pub mod digest;
pub mod encode;
pub mod error;
pub mod fanout;
pub mod fit;
pub mod grants;
pub mod group;
pub mod indexes;
pub mod interrupt;
pub mod lost;
pub mod probe;
pub mod quote;
pub mod range;
pub mod reader;
pub mod schema;
pub mod sizes;
pub mod snapshot;
pub mod split;
pub mod tls;
pub mod wire;
pub mod writer;

use std::sync::Arc;

use bytes::Bytes;
use dbferry_plugin_abi::export_plugin;
use dbferry_plugin_abi::plugin::{Engine, Session};
use dbferry_plugin_abi::protocol::{
    DatabaseSchema, Digest, DigestRequest, DigestsRequest, FinishRequest, GroupRead, GroupWritten, KeyTuple,
    PluginError, PrepareRequest, RangeDigestsRequest, ReadGroupRequest, ReadRequest, SchemaOutcome, ServerInfo,
    SessionConfig, SnapshotInfo, SplitRequest, TableIndexesRequest, WriteGroupRequest, WriteRequest,
};

use crate::conn::{runtime, Pool, Role, ServerFacts};
use crate::detail::DetailCache;
use crate::error::Result;
use crate::reader::MysqlReader;
use crate::snapshot::{Readers, Snapshot};
use crate::writer::MysqlWriter;

/// The engine: `engine = "mysql"` in the config.
pub struct MysqlEngine;

/// A connection to one MySQL or MariaDB instance.
pub struct MysqlSession {
    pool: Arc<Pool>,
    facts: ServerFacts,
    max_connections: u32,
    snapshot: Snapshot,
    details: DetailCache,
    /// The base tables of each database described in this session, quoted
    /// and qualified: what the snapshot's `LOCK TABLES` step locks.
    described: std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// The connections running a digest or the finish now, which
    /// [`Session::interrupt`] stops.
    interruptible: interrupt::Interruptible,
}

impl Engine for MysqlEngine {
    type Session = MysqlSession;

    fn connect(config: SessionConfig) -> std::result::Result<MysqlSession, PluginError> {
        Ok(MysqlSession::connect(&config)?)
    }
}

impl MysqlSession {
    /// Connects and reads the server's facts.
    pub fn connect(config: &SessionConfig) -> Result<Self> {
        let pool = Pool::new(config)?;
        let facts = runtime()?.block_on(async {
            let mut lease = pool.get(Role::Control).await?;
            let facts = probe::facts(lease.conn()?).await?;
            lease.release();
            Ok::<_, error::Error>(facts)
        })?;
        tracing::debug!(
            instance = %config.instance_id,
            server = %facts.version,
            "connected"
        );
        Ok(Self {
            pool,
            facts,
            max_connections: config.max_connections.max(2),
            snapshot: Snapshot::default(),
            details: DetailCache::default(),
            described: Default::default(),
            interruptible: Default::default(),
        })
    }

    /// The server's facts.
    pub fn facts(&self) -> &ServerFacts {
        &self.facts
    }

    /// Whether the open global snapshot reads over [`wire`] connections
    /// rather than mysql_async ones.
    pub fn reads_over_wire(&self) -> bool {
        matches!(self.snapshot.readers(), Some(snapshot::Readers::Wire(_)))
    }
}

/// Runs `$body` (a future using `$c: &mut Conn`) on a pooled connection of
/// `$role`; the connection is pooled again only on success.
macro_rules! with_conn {
    ($self:ident, $role:expr, |$c:ident| $body:expr) => {
        runtime()?.block_on(async {
            let mut lease = $self.pool.get($role).await?;
            let $c = lease.conn()?;
            let out = $body.await?;
            lease.release();
            Ok::<_, error::Error>(out)
        })
    };
}

/// Runs `$body` (a future using `$c: DigestConn`) on a reader of the open
/// snapshot when `$in_snapshot` (there is one on the source), else on a
/// pooled reader; the connection goes back only on success.
macro_rules! with_digest_conn {
    ($self:ident, $in_snapshot:expr, |$c:ident| $body:expr) => {{
        let snapshot = if $in_snapshot { $self.snapshot.readers() } else { None };
        runtime()?.block_on(async {
            if let Some(Readers::Wire(set)) = &snapshot {
                let mut lease = set.take().await?;
                let conn = lease.conn()?;
                let running = $self.interruptible.enter(conn.id());
                let $c = digest::DigestConn::Wire(conn);
                let out = $body.await?;
                drop(running);
                lease.release();
                return Ok(out);
            }
            let mut lease = match &snapshot {
                Some(Readers::Driver(set)) => set.take().await?,
                _ => $self.pool.get(Role::Reader).await?,
            };
            let conn = lease.conn()?;
            let running = $self.interruptible.enter(conn.id());
            let $c = digest::DigestConn::Driver(conn);
            let out = $body.await?;
            drop(running);
            lease.release();
            Ok::<_, error::Error>(out)
        })
    }};
}

impl Session for MysqlSession {
    type Reader = MysqlReader;
    type Writer = MysqlWriter;

    fn probe(&self) -> std::result::Result<ServerInfo, PluginError> {
        Ok(with_conn!(self, Role::Control, |c| probe::probe(
            c,
            &self.facts,
            self.pool.tls().mode
        ))?)
    }

    fn describe_database(&self, database: &str) -> std::result::Result<DatabaseSchema, PluginError> {
        match with_conn!(self, Role::Control, |c| describe::describe(
            c,
            &self.facts,
            &self.details,
            database
        )) {
            Err(e @ error::Error::NotFound(_)) => Err(PluginError::from(e).with_code("InvalidDBName.NotFound")),
            Ok(schema) => {
                let tables = schema
                    .tables
                    .iter()
                    .map(|t| quote::qualified(database, &t.name))
                    .collect();
                self.described
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(database.to_string(), tables);
                Ok(schema)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn split_points(&self, request: SplitRequest) -> std::result::Result<Vec<KeyTuple>, PluginError> {
        Ok(with_conn!(self, Role::Reader, |c| split::split_points(c, &request))?)
    }

    fn begin_snapshot(&self, readers: u32) -> std::result::Result<SnapshotInfo, PluginError> {
        let tables: Vec<String> = self
            .described
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .flatten()
            .cloned()
            .collect();
        Ok(runtime()?.block_on(
            self.snapshot
                .begin(&self.pool, &self.facts, &tables, readers, self.max_connections),
        )?)
    }

    fn end_snapshot(&self) -> std::result::Result<(), PluginError> {
        Ok(runtime()?.block_on(self.snapshot.end(&self.pool))?)
    }

    fn prepare_target(&self, request: PrepareRequest) -> std::result::Result<SchemaOutcome, PluginError> {
        match with_conn!(self, Role::Control, |c| schema::prepare(
            c,
            &self.pool,
            &self.facts,
            &self.details,
            &request
        )) {
            Err(e @ error::Error::NotFound(_)) => Err(PluginError::from(e).with_code("InvalidDBName.NotFound")),
            other => Ok(other?),
        }
    }

    fn check_target(&self, request: PrepareRequest) -> std::result::Result<Vec<String>, PluginError> {
        Ok(with_conn!(self, Role::Control, |c| fit::unheld(
            c,
            &self.facts,
            &request.schema
        ))?)
    }

    fn finish_target(&self, request: FinishRequest) -> std::result::Result<SchemaOutcome, PluginError> {
        Ok(with_conn!(self, Role::Control, |c| async {
            let _running = self.interruptible.enter(c.id());
            schema::finish(c, &self.pool, &self.details, &self.interruptible, &request).await
        })?)
    }

    fn add_table_indexes(&self, request: TableIndexesRequest) -> std::result::Result<(), PluginError> {
        Ok(with_conn!(self, Role::Control, |c| async {
            let _running = self.interruptible.enter(c.id());
            indexes::add_table_indexes(c, &self.details, &request).await
        })?)
    }

    fn interrupt(&self) -> std::result::Result<(), PluginError> {
        let stopped = runtime()?.block_on(self.interruptible.interrupt(&self.pool))?;
        tracing::info!(instance = %self.pool.instance(), connections = ?stopped, "interrupted the running statements");
        Ok(())
    }

    fn table_digest(&self, request: DigestRequest) -> std::result::Result<Digest, PluginError> {
        let name = request.table.name.clone();
        self.table_digests(DigestsRequest {
            database: request.database,
            tables: vec![request.table],
            mode: request.mode,
            in_snapshot: request.in_snapshot,
        })?
        .pop()
        .ok_or_else(|| error::Error::Internal(format!("no digest of {name}")).into())
    }

    fn table_digests(&self, request: DigestsRequest) -> std::result::Result<Vec<Digest>, PluginError> {
        Ok(with_digest_conn!(self, request.in_snapshot, |conn| digest::digests(
            conn, &request
        ))?)
    }

    fn range_digests(&self, request: RangeDigestsRequest) -> std::result::Result<Vec<Digest>, PluginError> {
        Ok(with_digest_conn!(self, request.in_snapshot, |conn| {
            digest::range_digests(conn, &request)
        })?)
    }

    fn open_reader(&self, request: ReadRequest) -> std::result::Result<MysqlReader, PluginError> {
        let detail = self.details.table(&request.table.detail)?;
        let sql = reader::select_sql(&request, &detail)?;
        let rt = runtime()?;
        let snapshot = self.snapshot.readers();
        if let Some(Readers::Wire(set)) = &snapshot {
            let lease = rt.block_on(set.take())?;
            return Ok(MysqlReader::start_wire(lease, sql, request.batch_bytes));
        }
        let lease = rt.block_on(async {
            match &snapshot {
                Some(Readers::Driver(set)) => set.take().await,
                _ => self.pool.get(Role::Reader).await,
            }
        })?;
        Ok(MysqlReader::start(lease, sql, request.batch_bytes, snapshot.is_none())?)
    }

    fn read_group(&self, request: ReadGroupRequest) -> std::result::Result<(Bytes, GroupRead), PluginError> {
        let selects = request
            .chunks
            .iter()
            .map(|chunk| reader::select_sql(chunk, &*self.details.table(&chunk.table.detail)?))
            .collect::<Result<Vec<_>>>()?;
        let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
        let snapshot = self.snapshot.readers();
        let (data, parts) = runtime()?.block_on(async {
            if let Some(Readers::Wire(set)) = &snapshot {
                let mut lease = set.take().await?;
                let read = group::read_wire(lease.conn()?, &selects, max_bytes).await;
                // A server's error ends its query cleanly; anything else
                // may leave the connection mid-result.
                if matches!(read, Ok(_) | Err(error::Error::Wire { .. })) {
                    lease.release();
                }
                return read;
            }
            let mut lease = match &snapshot {
                Some(Readers::Driver(set)) => set.take().await?,
                _ => self.pool.get(Role::Reader).await?,
            };
            let read = group::read_driver(lease.conn()?, &selects, max_bytes, snapshot.is_none()).await?;
            lease.release();
            Ok::<_, error::Error>(read)
        })?;
        Ok((data, GroupRead { parts }))
    }

    fn write_group(&self, request: WriteGroupRequest, data: Bytes) -> std::result::Result<GroupWritten, PluginError> {
        let loads = group_loads(&self.details, &self.facts, request, data)?;
        Ok(GroupWritten {
            chunks: runtime()?.block_on(group::write(&self.pool, loads, &self.facts))?,
        })
    }

    fn open_writer(&self, request: WriteRequest) -> std::result::Result<MysqlWriter, PluginError> {
        let detail = self.details.table(&request.table.detail)?;
        let facts = &self.facts;
        Ok(runtime()?.block_on(async {
            let lease = self.pool.get(Role::Writer).await?;
            MysqlWriter::start(lease, &request, &detail, facts).await
        })?)
    }
}

/// A group write's loads, each with its slice of `data`.
fn group_loads(
    details: &DetailCache,
    facts: &ServerFacts,
    request: WriteGroupRequest,
    data: Bytes,
) -> Result<Vec<group::Load>> {
    let total = request.parts.iter().try_fold(0u64, |sum, p| sum.checked_add(p.bytes));
    if request.parts.len() != request.chunks.len() || total != Some(data.len() as u64) {
        return Err(error::Error::Invalid(format!(
            "a group write of {} chunks came with {} parts of {total:?} bytes and {} bytes of data",
            request.chunks.len(),
            request.parts.len(),
            data.len()
        )));
    }
    let mut at = 0usize;
    request
        .chunks
        .iter()
        .zip(&request.parts)
        .map(|(chunk, part)| {
            if chunk.redo || !chunk.range.is_whole() {
                return Err(error::Error::Invalid(format!(
                    "a group write holds {}, which is not a whole table written for the first time",
                    chunk.table.name
                )));
            }
            let detail = details.table(&chunk.table.detail)?;
            let file = group::file_name();
            let len = usize::try_from(part.bytes).unwrap_or(usize::MAX);
            let load = group::Load {
                sql: writer::load_sql(chunk, &detail, facts, &file),
                file,
                data: data.slice(at..at + len),
                rows: part.rows,
                table: quote::qualified(&chunk.database, &chunk.table.name),
            };
            at += len;
            Ok(load)
        })
        .collect()
}

impl Drop for MysqlSession {
    fn drop(&mut self) {
        if let Ok(rt) = runtime() {
            let _ = rt.block_on(self.snapshot.end(&self.pool));
            let _guard = rt.enter();
            self.pool.close_idle();
        }
    }
}

export_plugin!(MysqlEngine, "mysql");
