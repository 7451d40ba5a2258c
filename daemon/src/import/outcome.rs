//! What an import reports: progress events and the final result.

use dbferry_plugin_abi::protocol::Consistency;
use serde::Serialize;

use crate::codes::{ErrorCode, Rejection};

/// Import statuses (CONTRACT §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ImportStatus {
    /// Accepted, not started.
    Pending,
    /// Copying.
    Running,
    /// Every table copied and verified.
    Success,
    /// Rejected by a precheck, or failed while copying.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl ImportStatus {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Pending => "Pending",
            ImportStatus::Running => "Running",
            ImportStatus::Success => "Success",
            ImportStatus::Failed => "Failed",
            ImportStatus::Cancelled => "Cancelled",
        }
    }
}

/// One copied table.
#[derive(Clone, Debug, Serialize)]
pub struct TableOutcome {
    /// Target database.
    pub database: String,
    /// Table.
    pub table: String,
    /// Rows copied.
    pub rows: u64,
    /// How it was verified: `count`, `checksum` or `none`.
    pub verified: &'static str,
}

/// The end of an import.
#[derive(Clone, Debug, Serialize)]
pub struct ImportResult {
    /// The ImportId.
    pub import_id: u64,
    /// The RequestId.
    pub request_id: String,
    /// How it ended.
    pub status: ImportStatus,
    /// Whether a precheck refused it (nothing was changed).
    pub rejected: bool,
    /// Rows copied.
    pub rows: u64,
    /// Payload bytes copied.
    pub bytes: u64,
    /// The contract code, on failure.
    pub code: Option<ErrorCode>,
    /// Why it failed or was cancelled.
    pub message: Option<String>,
    /// How consistent the source reads were.
    pub consistency: Option<Consistency>,
    /// How the source was held still for its snapshot, when the engine
    /// says (MySQL: `flush_tables_with_read_lock`, `backup_stage`,
    /// `lock_instance_for_backup+lock_tables`, `lock_tables`).
    pub consistency_method: Option<String>,
    /// How each instance's connections travelled (encryption, TLS
    /// version, verification), once the prechecks connected.
    pub transport: Vec<super::precheck::InstanceTransport>,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// Objects created on the target (`database.kind:name`), also on failure,
    /// so a failed import can be cleaned up.
    pub created: Vec<String>,
    /// Per-table results.
    pub tables: Vec<TableOutcome>,
    /// After a stop short of success: what each table has on the target.
    pub table_states: Vec<super::TableState>,
    /// After a stop short of success: the command that resumes the import.
    pub resume_command: Option<String>,
    /// After a stop short of success: how to remove what it created instead.
    pub cleanup_hint: Option<String>,
    /// Wall time.
    pub elapsed_seconds: f64,
}

impl ImportResult {
    /// A result that has not ended yet.
    pub fn new(import_id: u64, request_id: String) -> Self {
        Self {
            import_id,
            request_id,
            status: ImportStatus::Running,
            rejected: false,
            rows: 0,
            bytes: 0,
            code: None,
            message: None,
            consistency: None,
            consistency_method: None,
            transport: Vec::new(),
            warnings: Vec::new(),
            created: Vec::new(),
            tables: Vec::new(),
            table_states: Vec::new(),
            resume_command: None,
            cleanup_hint: None,
            elapsed_seconds: 0.0,
        }
    }

    /// Ends the result as refused by a precheck.
    pub fn reject(&mut self, rejection: Rejection) {
        self.status = ImportStatus::Failed;
        self.rejected = true;
        self.code = Some(rejection.code);
        self.message = Some(rejection.message);
    }

    /// Clears how an attempt ended, before the import tries again after an
    /// outage; warnings and what it created stay.
    pub fn reset_for_retry(&mut self) {
        self.status = ImportStatus::Running;
        self.rejected = false;
        self.code = None;
        self.message = None;
        self.table_states.clear();
        self.tables.clear();
    }

    /// Ends the result as failed while changing the target.
    pub fn fail(&mut self, code: ErrorCode, message: String) {
        self.status = ImportStatus::Failed;
        self.code = Some(code);
        self.message = Some(message);
    }

    /// The final object of `run --json` (CONTRACT §1), with extra fields
    /// after the contract's own.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ImportId": self.import_id,
            "RequestId": self.request_id,
            "Status": self.status.as_str(),
            "Rows": self.rows,
            "Bytes": self.bytes,
            "Code": self.code.map(ErrorCode::as_str),
            "Message": self.message,
            "Rejected": self.rejected,
            "Consistency": self.consistency,
            "ConsistencyMethod": self.consistency_method,
            "Transport": self.transport,
            "Warnings": self.warnings,
            "Created": self.created,
            // A stopped import lists every table with its state instead.
            "Tables": if self.table_states.is_empty() {
                serde_json::json!(self.tables)
            } else {
                serde_json::json!(self.table_states)
            },
            "ResumeCommand": self.resume_command,
            "Cleanup": self.cleanup_hint,
            "ElapsedSeconds": self.elapsed_seconds,
        })
    }
}

/// Progress of one database.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DatabaseProgress {
    /// Target database.
    pub database: String,
    /// Rows copied so far.
    pub rows: u64,
    /// Bytes copied so far.
    pub bytes: u64,
    /// Estimated rows in all.
    pub estimated_rows: u64,
    /// Estimated bytes in all.
    pub estimated_bytes: u64,
}

/// Something that happened during an import.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ImportEvent {
    /// The import has its ids.
    Accepted {
        /// The ImportId.
        import_id: u64,
        /// The RequestId.
        request_id: String,
    },
    /// A new phase: `precheck`, `schema`, `copy`, `verify`, `finish`.
    Phase {
        /// Its name.
        phase: &'static str,
    },
    /// The copy is planned.
    Planned {
        /// Chunks to copy.
        chunks: usize,
        /// Per database totals.
        databases: Vec<DatabaseProgress>,
    },
    /// Periodic progress.
    Progress {
        /// Per database.
        databases: Vec<DatabaseProgress>,
        /// Rows copied so far.
        rows: u64,
        /// Bytes copied so far.
        bytes: u64,
        /// 0..1.
        ratio: f64,
    },
    /// A warning.
    Warning {
        /// What.
        message: String,
    },
    /// How each instance's connections travel, known once the prechecks
    /// connected (the result's `Transport`, while the import runs).
    Transport {
        /// Per instance.
        instances: Vec<super::precheck::InstanceTransport>,
    },
}

/// Receives events; must be cheap, it is called from the import's thread.
pub trait EventSink: Sync {
    /// One event.
    fn emit(&self, event: &ImportEvent);
}

/// Drops every event.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: &ImportEvent) {}
}
