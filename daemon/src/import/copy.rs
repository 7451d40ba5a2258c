//! Binds the engine-neutral copy core to plugin sessions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dbferry_copy_core::error::BoxError;
use dbferry_copy_core::{
    BatchReader, BatchWriter, ChunkId, ChunkSink, ChunkSource, ChunkStats, ChunkTask, GroupOutcomes, GroupPayload,
    KeySplitter, KeyTuple, ProgressSink,
};
use dbferry_plugin_abi::protocol::{
    ErrorKind, ReadGroupRequest, ReadRequest, SplitRequest, TableSchema, WriteGroupRequest, WriteRequest,
};
use dbferry_plugin_host::{HostError, Session};

use super::outcome::DatabaseProgress;
use crate::metrics::Metrics;

/// Bytes a reader puts in one batch, for `lanes` lanes.
///
/// Each lane holds about eight batches outside the shared budget (being
/// filled, handed over, queued, being sent), so batches shrink as lanes are
/// added: peak RSS stays near 60 MiB from 1 to 32 lanes instead of growing
/// by about 11 MiB a lane.
pub fn batch_bytes(lanes: usize) -> u64 {
    ((4u64 << 20) / lanes.max(1) as u64).clamp(128 << 10, 1 << 20)
}

/// One table of the plan; `ChunkId::table` indexes a list of these.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PlannedTable {
    /// Index of its database in DBInfo order.
    pub database_index: usize,
    /// Source database.
    pub source_database: String,
    /// Target database.
    pub target_database: String,
    /// The table as the source describes it.
    pub schema: TableSchema,
}

/// Asks the source engine for a table's cut points.
pub struct SessionSplitter<'a> {
    /// The source session.
    pub session: &'a Session,
    /// The table.
    pub table: &'a PlannedTable,
}

impl KeySplitter for SessionSplitter<'_> {
    fn split_points(&self, parts: u32) -> Result<Vec<KeyTuple>, String> {
        self.session
            .split_points(SplitRequest {
                database: self.table.source_database.clone(),
                table: self.table.schema.clone(),
                parts,
            })
            .map_err(|e| e.to_string())
    }
}

/// Reads chunks from the source session.
pub struct SourceSide<'a> {
    /// The source session.
    pub session: &'a Session,
    /// The plan's tables.
    pub tables: &'a [PlannedTable],
    /// Bytes per batch ([`batch_bytes`]).
    pub batch_bytes: u64,
    /// The batch formats the target's writers take besides the engine's own.
    pub formats: &'a [String],
}

impl SourceSide<'_> {
    fn request(&self, chunk: &ChunkTask) -> Result<ReadRequest, BoxError> {
        let table = table_of(self.tables, chunk.id)?;
        Ok(ReadRequest {
            database: table.source_database.clone(),
            table: table.schema.clone(),
            range: chunk.range.clone(),
            batch_bytes: self.batch_bytes,
            formats: self.formats.to_vec(),
        })
    }
}

impl ChunkSource for SourceSide<'_> {
    fn open(&self, chunk: &ChunkTask) -> Result<Box<dyn BatchReader>, BoxError> {
        Ok(Box::new(self.session.open_reader(self.request(chunk)?)?))
    }

    fn read_group(&self, chunks: &[&ChunkTask], max_bytes: u64) -> Result<Option<GroupPayload>, BoxError> {
        let request = ReadGroupRequest {
            chunks: chunks
                .iter()
                .map(|chunk| self.request(chunk))
                .collect::<Result<_, _>>()?,
            max_bytes,
        };
        let Some((data, read)) = unsupported_as_none(self.session.read_group(request))? else {
            return Ok(None);
        };
        Ok(Some(GroupPayload {
            data,
            parts: read.parts,
        }))
    }
}

/// An engine without group copies answers `Unsupported`: not a failure.
fn unsupported_as_none<T>(answer: Result<T, HostError>) -> Result<Option<T>, BoxError> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.plugin_error().is_some_and(|e| e.kind == ErrorKind::Unsupported) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes chunks through the target session.
pub struct TargetSide<'a> {
    /// The target session.
    pub session: &'a Session,
    /// The plan's tables.
    pub tables: &'a [PlannedTable],
}

impl TargetSide<'_> {
    fn request(&self, chunk: &ChunkTask, redo: bool) -> Result<WriteRequest, BoxError> {
        let table = table_of(self.tables, chunk.id)?;
        Ok(WriteRequest {
            database: table.target_database.clone(),
            table: table.schema.clone(),
            range: chunk.range.clone(),
            redo,
        })
    }
}

impl ChunkSink for TargetSide<'_> {
    fn open(&self, chunk: &ChunkTask, redo: bool) -> Result<Box<dyn BatchWriter>, BoxError> {
        Ok(Box::new(self.session.open_writer(self.request(chunk, redo)?)?))
    }

    fn write_group(&self, chunks: &[&ChunkTask], payload: GroupPayload) -> Result<Option<GroupOutcomes>, BoxError> {
        let request = WriteGroupRequest {
            chunks: chunks
                .iter()
                .map(|chunk| self.request(chunk, false))
                .collect::<Result<_, _>>()?,
            parts: payload.parts,
        };
        let Some(written) = unsupported_as_none(self.session.write_group(request, payload.data))? else {
            return Ok(None);
        };
        Ok(Some(
            written
                .chunks
                .into_iter()
                .map(|outcome| outcome.map_err(BoxError::from))
                .collect(),
        ))
    }
}

fn table_of(tables: &[PlannedTable], id: ChunkId) -> Result<&PlannedTable, BoxError> {
    tables
        .get(id.table as usize)
        .ok_or_else(|| format!("chunk {id} names a table outside the plan").into())
}

/// Counts progress per database and feeds the transfer metrics.
pub struct Progress {
    tables: Vec<usize>,
    databases: Vec<(String, AtomicU64, AtomicU64, u64, u64)>,
    counters: Vec<(prometheus::IntCounter, prometheus::IntCounter)>,
    chunk_seconds: prometheus::Histogram,
    started: std::sync::Mutex<std::collections::HashMap<ChunkId, Instant>>,
    metrics: Metrics,
}

impl Progress {
    /// Progress for `tables`, labelled with the two instances.
    pub fn new(
        tables: &[PlannedTable],
        totals: &[DatabaseProgress],
        source: &str,
        target: &str,
        engine: &str,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let counters = totals
            .iter()
            .map(|db| {
                let labels = [source, target, db.database.as_str()];
                (
                    metrics.rows_transferred.with_label_values(&labels),
                    metrics.bytes_transferred.with_label_values(&labels),
                )
            })
            .collect();
        Arc::new(Self {
            tables: tables.iter().map(|t| t.database_index).collect(),
            databases: totals
                .iter()
                .map(|d| {
                    (
                        d.database.clone(),
                        AtomicU64::new(0),
                        AtomicU64::new(0),
                        d.estimated_rows,
                        d.estimated_bytes,
                    )
                })
                .collect(),
            counters,
            chunk_seconds: metrics.chunk_seconds.with_label_values(&[engine]),
            started: std::sync::Mutex::default(),
            metrics: metrics.clone(),
        })
    }

    /// A snapshot per database.
    pub fn snapshot(&self) -> Vec<DatabaseProgress> {
        self.databases
            .iter()
            .map(|(name, rows, bytes, est_rows, est_bytes)| DatabaseProgress {
                database: name.clone(),
                rows: rows.load(Ordering::Relaxed),
                bytes: bytes.load(Ordering::Relaxed),
                estimated_rows: *est_rows,
                estimated_bytes: *est_bytes,
            })
            .collect()
    }

    /// Counts a chunk an earlier attempt committed (not a transfer of this
    /// process, so the transfer counters stay as they are).
    pub fn committed_before(&self, id: ChunkId, stats: ChunkStats) {
        if let Some(progress) = self
            .tables
            .get(id.table as usize)
            .and_then(|&db| self.databases.get(db))
        {
            progress.1.fetch_add(stats.rows, Ordering::Relaxed);
            progress.2.fetch_add(stats.bytes, Ordering::Relaxed);
        }
    }

    /// The queue gauge follows the copy's memory budget.
    pub fn set_queued(&self, bytes: u64) {
        self.metrics.queued_bytes.set(bytes as i64);
    }
}

impl ProgressSink for Progress {
    fn batch_written(&self, id: ChunkId, _rows: u64, _bytes: u64) {
        // Rows count once their chunk commits: a batch sent may still roll back.
        let mut started = self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        started.entry(id).or_insert_with(Instant::now);
    }

    fn chunk_retried(&self, _id: ChunkId, _error: &dbferry_copy_core::CopyError) {
        self.metrics.chunk_retries.inc();
    }

    fn queued(&self, bytes: u64) {
        self.metrics.queued_bytes.set(bytes as i64);
    }

    fn chunk_committed(&self, id: ChunkId, stats: ChunkStats) {
        if let Some(&db) = self.tables.get(id.table as usize) {
            if let (Some(progress), Some((row_counter, byte_counter))) = (self.databases.get(db), self.counters.get(db))
            {
                progress.1.fetch_add(stats.rows, Ordering::Relaxed);
                progress.2.fetch_add(stats.bytes, Ordering::Relaxed);
                row_counter.inc_by(stats.rows);
                byte_counter.inc_by(stats.bytes);
            }
        }
        let mut started = self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = started.remove(&id) {
            self.chunk_seconds.observe(at.elapsed().as_secs_f64());
        }
    }
}
