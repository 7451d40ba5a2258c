//! A table's deferred indexes, added on the target as soon as the copy has
//! committed all its rows, while the other tables are still being copied.
//!
//! The index builds then overlap the copy instead of following it, as
//! myloader's per-table key building does: on MySQL, four sysbench tables'
//! `k_1` builds were a quarter of an import run after the copy. It is best
//! effort. A build that fails, or a table whose copy ends last, is left to
//! the finish phase, which adds whatever index is missing and reports
//! errors as it always has.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use dbferry_copy_core::{CancelToken, ChunkId, ChunkStats, CopyError, ProgressSink};
use dbferry_plugin_abi::protocol::{ErrorKind, TableIndexesRequest};
use dbferry_plugin_host::Session;

use super::copy::PlannedTable;
use super::interrupt;

/// Forwards the copy's progress to `inner`, and names to the builder each
/// table whose rows are all on the target.
pub(super) struct Announcer<'a> {
    /// The progress the copy reports anyway.
    pub inner: &'a dyn ProgressSink,
    /// Where copied tables go.
    pub copied: Sender<u32>,
}

impl ProgressSink for Announcer<'_> {
    fn batch_written(&self, id: ChunkId, rows: u64, bytes: u64) {
        self.inner.batch_written(id, rows, bytes);
    }

    fn chunk_committed(&self, id: ChunkId, stats: ChunkStats) {
        self.inner.chunk_committed(id, stats);
    }

    fn table_copied(&self, table: u32) {
        self.inner.table_copied(table);
        // The builder may have stopped (the engine cannot): nothing to do then.
        let _ = self.copied.send(table);
    }

    fn chunk_retried(&self, id: ChunkId, error: &CopyError) {
        self.inner.chunk_retried(id, error);
    }

    fn queued(&self, bytes: u64) {
        self.inner.queued(bytes);
    }
}

/// Adds copied tables' deferred indexes, one table at a time, until the
/// copy is over.
pub(super) struct EarlyIndexes<'a> {
    target: &'a Session,
    /// The plan's tables, by index.
    tables: &'a [PlannedTable],
    /// The import's cancel: a build in progress is interrupted.
    cancel: &'a CancelToken,
    /// Set when the copy is over: the tables not started by then are the
    /// finish phase's, which builds several at once.
    copy_over: AtomicBool,
    /// A build is running now.
    building: AtomicBool,
}

impl<'a> EarlyIndexes<'a> {
    /// A builder for `tables` on `target`.
    pub fn new(target: &'a Session, tables: &'a [PlannedTable], cancel: &'a CancelToken) -> Self {
        Self {
            target,
            tables,
            cancel,
            copy_over: AtomicBool::new(false),
            building: AtomicBool::new(false),
        }
    }

    /// Builds as `copied` names tables; returns how many tables it did.
    pub fn run(&self, copied: Receiver<u32>) -> usize {
        let mut built = 0;
        while let Ok(table) = copied.recv() {
            if self.copy_over.load(Ordering::SeqCst) || self.cancel.is_cancelled() {
                break;
            }
            let Some(planned) = self.tables.get(table as usize) else {
                continue;
            };
            let request = TableIndexesRequest {
                database: planned.target_database.clone(),
                table: planned.schema.clone(),
            };
            self.building.store(true, Ordering::SeqCst);
            let added = interrupt::interruptible(self.cancel, &[self.target], || {
                Ok(self.target.add_table_indexes(request))
            });
            self.building.store(false, Ordering::SeqCst);
            match added {
                Ok(Ok(())) => built += 1,
                Ok(Err(error)) if error.plugin_error().is_some_and(|e| e.kind == ErrorKind::Unsupported) => break,
                Ok(Err(error)) => tracing::warn!(
                    database = %planned.target_database,
                    table = %planned.schema.name,
                    %error,
                    "adding a table's indexes during the copy failed; the finish adds them"
                ),
                // Cancelled: the import stops.
                Err(_) => break,
            }
        }
        built
    }

    /// The copy is over: start no other table.
    pub fn stop(&self) {
        self.copy_over.store(true, Ordering::SeqCst);
    }

    /// The import stops: start no other table, and interrupt the build in
    /// progress rather than wait for it (a lock may hold it for long).
    pub fn abandon(&self) {
        self.stop();
        if self.building.load(Ordering::SeqCst) {
            if let Err(error) = self.target.interrupt() {
                tracing::debug!(%error, "could not interrupt the index build of the stopped copy");
            }
        }
    }
}
