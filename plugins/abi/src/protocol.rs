//! Control messages between host and plugin, carried as JSON.
//!
//! The host drives an import through a handful of session requests (probe,
//! describe, split, snapshot, prepare, finish, digest). Schema details that
//! only the engine understands travel as opaque `detail` JSON: the host
//! passes them from the source session to the target session untouched,
//! which keeps the host engine-neutral.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use dbferry_copy_core::checkpoint::ChunkStats;
pub use dbferry_copy_core::key::{KeyRange, KeyTuple, KeyValue};

pub use crate::detail::{Detail, KeptDetail};

/// How to reach one instance; built by the host from the daemon config.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The instance id from the config, for logs and errors.
    pub instance_id: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, read by the host from `password_file` or `password_env`.
    pub password: String,
    /// Connections the plugin may open at most (readers or writers plus control).
    pub max_connections: u32,
    /// Engine-specific settings from the config (for example TLS), as JSON.
    /// The host adds `state_dir` (a string): a directory of this engine's own
    /// for files that must outlive the process, which may not exist yet.
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("instance_id", &self.instance_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("options", &self.options)
            .finish()
    }
}

/// A control request to a session.
///
/// Externally tagged (`{"describe_database":{…}}`, `"probe"`): an internally
/// tagged enum is buffered whole before decoding, which cost a fifth of the
/// host's instructions on 1,000 small tables, and cannot hold a [`Detail`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Server facts for the prechecks. Answer: [`ServerInfo`].
    Probe,
    /// One database's schema. Answer: [`DatabaseSchema`].
    DescribeDatabase {
        /// The database.
        database: String,
        /// Keep the answer's details, numbered from this one (see
        /// [`crate::detail::number_details`]), so that the host need not
        /// send them back before naming them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_from: Option<u64>,
    },
    /// Cut points of a table's key. Answer: `Vec<KeyTuple>`.
    SplitPoints(SplitRequest),
    /// Open one consistent snapshot for `readers` reader connections.
    /// Answer: [`SnapshotInfo`].
    BeginSnapshot {
        /// How many readers will read under the snapshot.
        readers: u32,
    },
    /// Release the snapshot and its connections. Answer: `null`.
    EndSnapshot,
    /// Create a database's tables on the target, without the parts deferred
    /// until after the data. Answer: [`SchemaOutcome`].
    PrepareTarget(PrepareRequest),
    /// After the data: deferred indexes and constraints, then views,
    /// routines, triggers and events. Answer: [`SchemaOutcome`].
    FinishTarget(FinishRequest),
    /// While the copy goes on: add the deferred indexes of one table whose
    /// rows are all on the target, so that its index builds overlap the copy
    /// of the other tables (as myloader's per-table key building does).
    /// Foreign keys and everything else wait for [`Request::FinishTarget`],
    /// which skips the indexes that exist. Optional: engines without it
    /// answer [`ErrorKind::Unsupported`], and their indexes are all built by
    /// [`Request::FinishTarget`]. Answer: `null`.
    AddTableIndexes(TableIndexesRequest),
    /// Row count, and with `Checksum` an engine-computed content hash,
    /// identical for identical tables on source and target. Answer: [`Digest`].
    TableDigest(DigestRequest),
    /// [`Request::TableDigest`] of several tables of one database at once,
    /// which an engine may answer in one round trip. Answer: `Vec<Digest>`,
    /// in the order of the tables.
    TableDigests(DigestsRequest),
    /// [`Request::TableDigest`] of key ranges of one table (the chunks it was
    /// copied in), so that both sides can be compared range by range, on
    /// several lanes. Answer: `Vec<Digest>`, one per range, in their order.
    /// Optional: engines without it answer [`ErrorKind::Unsupported`], and
    /// the host compares whole tables instead.
    RangeDigests(RangeDigestsRequest),
    /// One step of a copy by native backup and restore (SQL Server's
    /// `method = "backup-restore"`). Optional: engines without it answer
    /// [`ErrorKind::Unsupported`]. Answer: [`SchemaOutcome`].
    BackupRestore(BackupRestoreRequest),
    /// Progress of the backup or restore this session is running, polled from
    /// another thread while [`Request::BackupRestore`] runs. Optional like it.
    /// Answer: [`BackupProgress`].
    BackupProgress,
    /// Keep these details for the rest of the session: later requests name
    /// each by its number instead of carrying it (see [`crate::detail`]).
    /// Answer: `null`.
    KeepDetails(Vec<KeptDetail>),
    /// What of the source's schema this target server cannot hold, asked at
    /// precheck before anything is written (for example what Babelfish
    /// lacks). Nothing is created. Answer: `Vec<String>`, every such object,
    /// empty when the target holds it all.
    CheckTarget(PrepareRequest),
    /// Stop what this session's verification and schema statements are
    /// running now (a digest, an index build), sent from another thread
    /// while they run, when the import is cancelled: the interrupted call
    /// fails soon after. Statements that write rows are not touched; the
    /// copy stops between chunks. Best effort, and a no-op where the
    /// engine cannot. Answer: `null`.
    Interrupt,
}

/// Facts about a server.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Product, e.g. `MariaDB`, `MySQL`, `SQL Server`.
    pub product: String,
    /// Version string as the server reports it.
    pub version: String,
    /// Edition where the engine has them (SQL Server).
    pub edition: Option<String>,
    /// The server refuses writes (read_only, or a read-only database state).
    pub read_only: bool,
    /// Storage in use on the instance, bytes.
    pub used_bytes: u64,
    /// The user databases.
    pub databases: Vec<DatabaseInfo>,
    /// Why the engine cannot be written to the way dbferry needs, if so
    /// (for example `local_infile` disabled); the precheck reports it.
    pub write_blockers: Vec<String>,
    /// How the session's connections travel, when the engine can tell.
    #[serde(default)]
    pub transport: Option<TransportInfo>,
    /// Privileges the login certainly lacks, per user database, for reading
    /// it as a source and for writing it as a target. Empty when the engine
    /// cannot tell for certain; the precheck refuses on what is listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_privileges: Vec<MissingPrivileges>,
    /// Batch formats this session's writers take besides the engine's own,
    /// which a reader of the same engine may produce instead for chunks it
    /// can (see [`ReadRequest::formats`]). For example, a Babelfish target
    /// loading through its PostgreSQL port takes `COPY` text rows as they
    /// are, which a Babelfish source can send without decoding them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch_formats: Vec<String>,
}

/// What the login lacks on one database (see [`ServerInfo::missing_privileges`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingPrivileges {
    /// The database, or [`MissingPrivileges::EVERY_DATABASE`] for a
    /// server-wide privilege (SQL Server's CREATE ANY DATABASE).
    pub database: String,
    /// Privileges needed to read it as a source, in the engine's words.
    pub to_read: Vec<String>,
    /// Privileges needed to write it as a target.
    pub to_write: Vec<String>,
}

impl MissingPrivileges {
    /// The `database` of a privilege lacking on every database.
    pub const EVERY_DATABASE: &'static str = "*";

    /// Whether this concerns `database`.
    pub fn concerns(&self, database: &str) -> bool {
        self.database == database || self.database == Self::EVERY_DATABASE
    }
}

/// How a session's connections travel (the instance's `tls` setting at work).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportInfo {
    /// The mode in force: `off`, `preferred`, `trust`, `verify-ca`, `on`.
    pub mode: String,
    /// Whether the connections are encrypted.
    pub encrypted: bool,
    /// The TLS version the server reports (`TLSv1.3`), when encrypted.
    pub tls_version: Option<String>,
    /// How the server's certificate was checked: `none`, `ca`, `ca-and-host`.
    pub verified: String,
}

/// Why a plugin refused a connection over TLS, as the contract names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsRefusal {
    /// The certificate does not verify, or does not name the host.
    Unverified,
    /// TLS is required and the server offers none.
    NotOffered,
    /// The server requires TLS and the mode is `off`.
    Required,
}

impl TlsRefusal {
    /// The contract's error code.
    pub fn code(self) -> &'static str {
        match self {
            TlsRefusal::Unverified => "IncorrectDBInstanceTls.Unverified",
            TlsRefusal::NotOffered => "IncorrectDBInstanceTls.NotOffered",
            TlsRefusal::Required => "IncorrectDBInstanceTls.Required",
        }
    }
}

/// One database on a server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Its name.
    pub name: String,
    /// Whether it is online and usable.
    pub online: bool,
    /// Data plus index size, bytes.
    pub size_bytes: u64,
    /// Whether it holds any table or other object.
    pub has_objects: bool,
}

/// Kinds of schema objects, for conflicts and for the list of created objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A base table.
    Table,
    /// A view.
    View,
    /// A stored procedure.
    Procedure,
    /// A stored function.
    Function,
    /// A trigger.
    Trigger,
    /// A scheduled event.
    Event,
    /// A sequence.
    Sequence,
    /// A schema (namespace) inside a database.
    Schema,
    /// A whole database.
    Database,
}

/// Names one schema object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// What it is.
    pub kind: ObjectKind,
    /// Its name within the database (`schema.name` where the engine has schemas).
    pub name: String,
}

/// A database's schema as the source engine sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DatabaseSchema {
    /// The database.
    pub database: String,
    /// Base tables, in creation order.
    pub tables: Vec<TableSchema>,
    /// Every object, tables included.
    pub objects: Vec<ObjectRef>,
    /// Engine-private detail (DDL of views, routines and so on).
    pub detail: Detail,
}

/// One table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TableSchema {
    /// Its name (`schema.name` where the engine has schemas).
    pub name: String,
    /// The chunking key (primary key or a NOT NULL unique key), in order.
    pub key: Option<Vec<String>>,
    /// Estimated rows.
    pub estimated_rows: u64,
    /// Estimated data bytes.
    pub estimated_bytes: u64,
    /// Engine-private detail (columns, DDL, deferred parts).
    pub detail: Detail,
}

/// Asks for the cut points of a table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SplitRequest {
    /// The database.
    pub database: String,
    /// The table, as described.
    pub table: TableSchema,
    /// How many slices are wanted.
    pub parts: u32,
}

/// How consistent the readers' view of the source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Every reader sees the same instant of every database.
    Global,
    /// Each table is read at one instant, tables at different instants; a
    /// table must then not be split across readers.
    PerTable,
}

/// What [`Request::BeginSnapshot`] achieved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The consistency the readers get.
    pub consistency: Consistency,
    /// Why it is weaker than `Global`, if it is.
    pub warning: Option<String>,
    /// How the source was held still while the readers opened their
    /// snapshots, when the engine says (MySQL: `backup_stage`,
    /// `flush_tables_with_read_lock`, `lock_instance_for_backup+lock_tables`
    /// or `lock_tables`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// What to do with a target table that already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExistingTables {
    /// Refuse the import.
    #[default]
    Fail,
    /// Drop it and copy anew.
    Drop,
}

/// Creates the tables of one database on the target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrepareRequest {
    /// The target database.
    pub database: String,
    /// The source's schema of the database.
    pub schema: DatabaseSchema,
    /// Policy for tables that already exist.
    pub existing_tables: ExistingTables,
    /// The import resumes: tables this import created earlier are kept.
    pub resume: bool,
    /// Tables estimated at most this many bytes are created with their
    /// secondary indexes: for a small table one `ALTER TABLE` after the load
    /// costs more than maintaining the indexes while loading. 0: defer all.
    /// An engine that never defers indexes ignores it.
    #[serde(default)]
    pub inline_index_max_bytes: u64,
    /// How many connections the engine may use at once for the DDL; 0 or 1
    /// means one.
    #[serde(default)]
    pub parallelism: u32,
}

/// Completes one database on the target after its data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinishRequest {
    /// The target database.
    pub database: String,
    /// The source's schema of the database.
    pub schema: DatabaseSchema,
    /// The import resumes: parts that already exist on the target (an index,
    /// a view) were added by an earlier attempt and are kept.
    #[serde(default)]
    pub resume: bool,
    /// How many connections the engine may use at once for the DDL; 0 or 1
    /// means one.
    #[serde(default)]
    pub parallelism: u32,
}

/// Adds one table's deferred indexes; see [`Request::AddTableIndexes`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableIndexesRequest {
    /// The target database.
    pub database: String,
    /// The source's schema of the table.
    pub table: TableSchema,
}

/// What a schema step did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SchemaOutcome {
    /// Objects created on the target.
    pub created: Vec<ObjectRef>,
    /// Objects dropped on the target (`existing_tables = "drop"`).
    pub dropped: Vec<ObjectRef>,
    /// Things the user should know (a rewritten DEFINER, say).
    pub warnings: Vec<String>,
}

/// How a copy is verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// No verification.
    None,
    /// Row counts per table.
    #[default]
    Count,
    /// Row counts and a content checksum per table.
    Checksum,
}

/// Asks for a table's digest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DigestRequest {
    /// The database on this session's server.
    pub database: String,
    /// The table, as described on the source.
    pub table: TableSchema,
    /// Count, or count and checksum.
    pub mode: VerifyMode,
    /// Read inside the session's snapshot (source side).
    pub in_snapshot: bool,
}

/// Asks for the digests of several tables of one database.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DigestsRequest {
    /// The database on this session's server.
    pub database: String,
    /// The tables, as described on the source.
    pub tables: Vec<TableSchema>,
    /// Count, or count and checksum.
    pub mode: VerifyMode,
    /// Read inside the session's snapshot (source side).
    pub in_snapshot: bool,
}

impl DigestsRequest {
    /// The request for the one table at `index`.
    pub fn one(&self, index: usize) -> Option<DigestRequest> {
        self.tables.get(index).map(|table| DigestRequest {
            database: self.database.clone(),
            table: table.clone(),
            mode: self.mode,
            in_snapshot: self.in_snapshot,
        })
    }
}

/// Asks for the digests of key ranges of one table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RangeDigestsRequest {
    /// The database on this session's server.
    pub database: String,
    /// The table, as described on the source.
    pub table: TableSchema,
    /// The ranges (`lower < key <= upper`); an empty list asks nothing and
    /// tells the host whether the engine answers range digests at all.
    pub ranges: Vec<KeyRange>,
    /// Count, or count and checksum.
    pub mode: VerifyMode,
    /// Read inside the session's snapshot (source side).
    pub in_snapshot: bool,
}

/// A table's digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Rows.
    pub rows: u64,
    /// Content checksum, when asked for.
    pub checksum: Option<String>,
}

/// Opens a reader on one chunk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The source database.
    pub database: String,
    /// The table, as described.
    pub table: TableSchema,
    /// The chunk's key range.
    pub range: KeyRange,
    /// Target size of one batch, bytes; a single wider row makes a wider batch.
    pub batch_bytes: u64,
    /// The batch formats the chunk's writer takes besides the engine's own:
    /// the target's [`ServerInfo::batch_formats`] when source and target are
    /// the same engine, else none. The reader may produce one of them; the
    /// writer tells them apart by each batch's header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<String>,
}

/// Opens a writer for one chunk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteRequest {
    /// The target database.
    pub database: String,
    /// The table, as described on the source.
    pub table: TableSchema,
    /// The chunk's key range.
    pub range: KeyRange,
    /// The range may already hold rows of an interrupted run: replace them.
    pub redo: bool,
}

/// Reads several small chunks whole in one exchange (`PluginApi::session_read_group`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadGroupRequest {
    /// The chunks, in order; `batch_bytes` is not used.
    pub chunks: Vec<ReadRequest>,
    /// The most payload bytes the group may hold. The chunk that would
    /// cross it ends the group: it and the ones after it are left unread.
    pub max_bytes: u64,
}

/// What a group read produced: the rows and bytes of each chunk read, in
/// order, their payloads back to back in the group's buffer. Fewer parts
/// than chunks asked for when the group reached its `max_bytes`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupRead {
    /// The chunks read, as a prefix of the request's.
    pub parts: Vec<ChunkStats>,
}

/// Writes chunks that a group read produced (`PluginApi::session_write_group`).
/// Every chunk is a whole table written for the first time (not `redo`),
/// into a table this import created, so each may commit alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteGroupRequest {
    /// The chunks, in order.
    pub chunks: Vec<WriteRequest>,
    /// Their payloads' sizes, in the same order.
    pub parts: Vec<ChunkStats>,
}

/// How each chunk of a group write ended, in order: the rows the target
/// accepted and committed, or why the chunk must be written again on its
/// own (as a redo, since some of its rows may be on the target).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupWritten {
    /// One outcome per chunk.
    pub chunks: Vec<Result<u64, PluginError>>,
}

/// What a committed writer wrote.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WriteSummary {
    /// Rows the target accepted.
    pub rows: u64,
    /// Warnings the target raised while loading.
    pub warnings: Vec<String>,
}

/// The steps of a backup-and-restore copy, in the order the host runs them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStep {
    /// On the source session: back `source_database` up to `backup_path`
    /// (copy-only, with checksums).
    #[default]
    Backup,
    /// On the target session: restore the backup as `database`, every file
    /// moved to the target's default paths, checksums verified.
    Restore,
    /// On either session: remove the backup file.
    Cleanup,
}

/// Asks for one step of a backup-and-restore copy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupRestoreRequest {
    /// Which step.
    #[serde(default)]
    pub step: BackupStep,
    /// The database on the source.
    pub source_database: String,
    /// The destination database on the target.
    pub database: String,
    /// The backup file, at a path both servers can reach.
    pub backup_path: String,
}

/// How far a running backup or restore is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupProgress {
    /// The running operation (`BACKUP DATABASE`, `RESTORE DATABASE`), if any.
    #[serde(default)]
    pub operation: Option<String>,
    /// Percent complete, 0 to 100, when the server reports it.
    #[serde(default)]
    pub percent: Option<f64>,
}

/// Broad classes of plugin errors; the host maps them to contract codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The server could not be reached or refused the login.
    Connect,
    /// The account lacks a privilege.
    Access,
    /// A named database or object does not exist.
    NotFound,
    /// A target object already exists.
    Conflict,
    /// Data the target refused or would have altered.
    Data,
    /// A statement failed.
    Query,
    /// Something this engine or server version cannot do.
    Unsupported,
    /// The request was malformed.
    InvalidRequest,
    /// The plugin panicked.
    Panic,
    /// Anything else.
    Internal,
}

/// An error from a plugin, as it crosses the boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct PluginError {
    /// Its class.
    pub kind: ErrorKind,
    /// A contract error code (CONTRACT §5) when the plugin knows the rule.
    pub code: Option<String>,
    /// What went wrong, for people.
    pub message: String,
}

impl PluginError {
    /// An error of `kind` with `message` and no contract code.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: None,
            message: message.into(),
        }
    }

    /// Attaches a contract error code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_crosses_a_request_as_the_same_json_text() {
        let detail = Detail::encode(&serde_json::json!({"create": "CREATE TABLE `t` (\n`a` int)", "n": [1, 2]}))
            .unwrap_or_default();
        let request = Request::TableDigest(DigestRequest {
            database: "d".into(),
            table: TableSchema {
                name: "t".into(),
                detail: detail.clone(),
                ..TableSchema::default()
            },
            mode: VerifyMode::Count,
            in_snapshot: false,
        });
        let wire = serde_json::to_vec(&request).unwrap_or_default();
        assert!(
            wire.starts_with(b"{\"table_digest\":"),
            "{}",
            String::from_utf8_lossy(&wire)
        );
        let Ok(Request::TableDigest(back)) = serde_json::from_slice::<Request>(&wire) else {
            panic!("the request must decode: {}", String::from_utf8_lossy(&wire));
        };
        assert_eq!(back.table.detail.as_json(), detail.as_json());
        let decoded: serde_json::Value = back.table.detail.decode().unwrap_or_default();
        assert_eq!(decoded["n"][1], 2);
        assert!(Detail::default().is_null());
        assert!(matches!(
            serde_json::from_str::<Request>("\"probe\""),
            Ok(Request::Probe)
        ));
    }
}
