//! The logical copy of one attempt, phase by phase: the target's schema,
//! the source's snapshot and the chunk plan, the copy, its verification,
//! and the finish (indexes, views, routines, triggers, events).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use dbferry_copy_core::{
    plan_table, run_copy, CancelToken, ChunkId, ChunkTask, CopyError, CopySettings, TableEstimate,
};
use dbferry_plugin_abi::protocol::{
    Consistency, ErrorKind, FinishRequest, PrepareRequest, SchemaOutcome, SnapshotInfo,
};
use dbferry_plugin_host::{HostError, Session};

use super::copy::{self, PlannedTable, Progress, SessionSplitter, SourceSide, TargetSide};
use super::early_indexes::{Announcer, EarlyIndexes};
use super::outcome::{DatabaseProgress, EventSink, ImportEvent, ImportResult};
use super::{
    code_from_str, host_failure, interrupt, planned_tables, precheck, resume, verify, CopyTuning, ImportContext,
    ImportStore, Stop, StoredPlan, CHUNK_RETRIES, COPY_GROUP_CHUNKS,
};
use crate::codes::ErrorCode;
use crate::job::Job;
use crate::metrics::Metrics;

/// One attempt's logical copy of every database of the job, from the
/// servers the prechecks connected to.
pub(super) struct LogicalCopy<'a> {
    pub ctx: &'a ImportContext,
    pub job: &'a Job,
    pub import_id: u64,
    pub tuning: &'a CopyTuning,
    pub resolved: &'a precheck::Resolved<'a>,
    pub checked: &'a precheck::Checked,
    /// Whether an earlier attempt saved the plan (and maybe copied chunks).
    pub resume: bool,
    pub store: &'a dyn ImportStore,
    pub events: &'a dyn EventSink,
    pub cancel: &'a CancelToken,
}

impl LogicalCopy<'_> {
    /// Every phase in turn; `plan` gains its chunks the first time.
    pub fn run(&self, plan: &mut StoredPlan, result: &mut ImportResult) -> Result<(), Stop> {
        self.create_schema(plan, result)?;
        let snapshot = self.open_snapshot(result)?;
        let tables = &planned_tables(self.resolved, &plan.schemas);
        self.plan(tables, plan, &snapshot, result)?;
        let chunks = plan.chunks.as_deref().unwrap_or_default();
        // What an earlier attempt committed is not copied again, nor checksummed again.
        let earlier: HashSet<ChunkId> = chunks
            .iter()
            .filter(|c| self.store.committed(c.id).is_some())
            .map(|c| c.id)
            .collect();
        self.copy(tables, chunks, result)?;
        self.verify(tables, chunks, &earlier, snapshot.consistency, result)?;
        self.finish(plan, result)
    }

    fn source(&self) -> &Session {
        &self.checked.source
    }

    fn target(&self) -> &Session {
        &self.checked.target
    }

    /// Notes a warning in the result and the events.
    fn warn(&self, result: &mut ImportResult, message: String) {
        // Logged at info: `run` shows warnings through its events, once.
        tracing::info!(warning = %message, "import warning");
        self.events.emit(&ImportEvent::Warning {
            message: message.clone(),
        });
        result.warnings.push(message);
    }

    /// Creates (or, resuming, checks) each destination database's tables.
    fn create_schema(&self, plan: &StoredPlan, result: &mut ImportResult) -> Result<(), Stop> {
        self.events.emit(&ImportEvent::Phase { phase: "schema" });
        for ((_, dst), schema) in self.resolved.mapping.iter().zip(&plan.schemas) {
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            let outcome = self
                .target()
                .prepare_target(PrepareRequest {
                    database: dst.clone(),
                    schema: schema.clone(),
                    existing_tables: self.job.options.existing_tables,
                    resume: self.resume,
                    inline_index_max_bytes: self.tuning.inline_index_max_bytes,
                    parallelism: self.job.options.parallelism,
                })
                .map_err(|e| host_failure(&format!("creating the tables of {dst} on the target"), e))?;
            self.record_schema(result, dst, outcome);
        }
        Ok(())
    }

    /// Opens the source's snapshot; the result says which consistency it gave.
    fn open_snapshot(&self, result: &mut ImportResult) -> Result<SnapshotInfo, Stop> {
        let snapshot = self
            .source()
            .begin_snapshot(self.job.options.parallelism)
            .map_err(|e| host_failure("opening a consistent snapshot on the source", e))?;
        result.consistency = Some(snapshot.consistency);
        result.consistency_method = snapshot.method.clone();
        if let Some(warning) = &snapshot.warning {
            self.warn(result, warning.clone());
        }
        Ok(snapshot)
    }

    /// Resuming: forgets partly copied tables, which are copied again whole
    /// from the new snapshot. First time: plans the chunks and saves them.
    fn plan(
        &self,
        tables: &[PlannedTable],
        plan: &mut StoredPlan,
        snapshot: &SnapshotInfo,
        result: &mut ImportResult,
    ) -> Result<(), Stop> {
        if let (true, Some(chunks)) = (self.resume, plan.chunks.as_deref()) {
            let restarted = resume::restart_unfinished(tables, chunks, self.store)
                .map_err(|e| Stop::Failed(ErrorCode::InternalError, format!("forgetting partial tables: {e}")))?;
            if restarted.kept > 0 {
                result.consistency = Some(Consistency::PerTable);
                self.warn(
                    result,
                    format!(
                        "consistency is per table: the import resumed without the source snapshot it started with \
                         (that snapshot ended with the interrupted attempt), so the {} table(s) finished before the \
                         interruption were read at an earlier instant than the rest; {} partly copied table(s) were \
                         copied again whole from a new snapshot",
                        restarted.kept, restarted.restarted
                    ),
                );
            }
        }
        if plan.chunks.is_none() {
            plan.chunks = Some(self.plan_chunks(tables, snapshot.consistency)?);
            plan.consistency = Some(snapshot.consistency);
            self.store
                .save_plan(plan)
                .map_err(|e| Stop::Failed(ErrorCode::InternalError, format!("saving the plan: {e}")))?;
        }
        Ok(())
    }

    fn plan_chunks(&self, tables: &[PlannedTable], consistency: Consistency) -> Result<Vec<ChunkTask>, Stop> {
        let mut chunks = Vec::new();
        for (index, table) in tables.iter().enumerate() {
            let estimate = TableEstimate {
                rows: table.schema.estimated_rows,
                bytes: table.schema.estimated_bytes,
                key: table.schema.key.clone(),
            };
            let splitter = SessionSplitter {
                session: self.source(),
                table,
            };
            let name = format!("{}.{}", table.source_database, table.schema.name);
            let split = consistency == Consistency::Global;
            let planned = plan_table(
                index as u32,
                &name,
                &estimate,
                self.job.options.chunk_bytes,
                self.tuning.max_chunks_per_table,
                split,
                &splitter,
            )
            .map_err(|e| Stop::Failed(ErrorCode::InternalError, e.to_string()))?;
            chunks.extend(planned);
        }
        Ok(chunks)
    }

    /// Copies every chunk not committed before, reporting progress, while
    /// [`EarlyIndexes`] adds the deferred indexes of each table copied; the
    /// result then counts what is committed.
    fn copy(&self, tables: &[PlannedTable], chunks: &[ChunkTask], result: &mut ImportResult) -> Result<(), Stop> {
        let totals = self.totals(tables);
        self.events.emit(&ImportEvent::Planned {
            chunks: chunks.len(),
            databases: totals.clone(),
        });
        self.events.emit(&ImportEvent::Phase { phase: "copy" });
        let resolved = self.resolved;
        let progress = Progress::new(
            tables,
            &totals,
            &resolved.source.id,
            &resolved.target.id,
            &resolved.source.engine,
            &self.ctx.metrics,
        );
        for chunk in chunks {
            if let Some(stats) = self.store.committed(chunk.id) {
                progress.committed_before(chunk.id, stats);
            }
        }
        let lanes = self.job.options.parallelism as usize;
        let settings = CopySettings {
            lanes,
            queue_depth: self.tuning.queue_depth,
            memory_budget: self.tuning.memory_budget,
            max_bytes_per_sec: self.job.options.max_bytes_per_sec,
            resumed: self.resume,
            retries: CHUNK_RETRIES,
            inline_chunk_bytes: copy::batch_bytes(lanes),
            group_chunks: COPY_GROUP_CHUNKS,
        };
        // Dropped when the copy is over, which wakes the reporter at once.
        let (copy_running, done) = std::sync::mpsc::channel::<()>();
        let early_indexes = EarlyIndexes::new(self.target(), tables, self.cancel);
        let (announce, copied) = std::sync::mpsc::channel();
        let report = std::thread::scope(|scope| {
            let reporter = {
                let progress = &progress;
                scope.spawn(move || report_progress(progress, done, self.import_id, &self.ctx.metrics, self.events))
            };
            let builder = scope.spawn(|| early_indexes.run(copied));
            let announcer = Announcer {
                inner: progress.as_ref(),
                copied: announce,
            };
            let report = run_copy(
                chunks,
                &settings,
                &SourceSide {
                    session: self.source(),
                    tables,
                    batch_bytes: copy::batch_bytes(settings.lanes),
                    formats: &self.checked.batch_formats,
                },
                &TargetSide {
                    session: self.target(),
                    tables,
                },
                self.store,
                &announcer,
                self.cancel,
            );
            // The verification waits for the build in progress: its reads
            // would queue behind the build's metadata lock anyway.
            if report.is_ok() {
                early_indexes.stop();
            } else {
                early_indexes.abandon();
            }
            drop(announcer);
            match builder.join() {
                Ok(built) => tracing::debug!(tables = built, "tables given their indexes during the copy"),
                Err(_) => tracing::warn!("the early index builder panicked; the finish adds every index"),
            }
            drop(copy_running);
            let _ = reporter.join();
            report
        });
        let report = match report {
            Ok(report) => report,
            Err(CopyError::Cancelled) => return Err(Stop::Cancelled),
            Err(error) => {
                let side = if matches!(error, CopyError::Read { .. }) {
                    "source"
                } else {
                    "target"
                };
                self.ctx.metrics.chunk_failures.with_label_values(&[side]).inc();
                return Err(copy_failure(error));
            }
        };
        progress.set_queued(0);
        let (rows, bytes) = chunks
            .iter()
            .filter_map(|c| self.store.committed(c.id))
            .fold((0, 0), |(r, b), s| (r + s.rows, b + s.bytes));
        result.rows = rows;
        result.bytes = bytes;
        tracing::info!(
            rows = report.rows,
            bytes = report.bytes,
            chunks = report.chunks_copied,
            peak_queued_bytes = report.peak_queued_bytes,
            "data copied"
        );
        Ok(())
    }

    /// Each destination database with the estimated size of its tables.
    fn totals(&self, tables: &[PlannedTable]) -> Vec<DatabaseProgress> {
        let mut totals: Vec<DatabaseProgress> = self
            .resolved
            .mapping
            .iter()
            .map(|(_, dst)| DatabaseProgress {
                database: dst.clone(),
                ..DatabaseProgress::default()
            })
            .collect();
        for table in tables {
            if let Some(total) = totals.get_mut(table.database_index) {
                total.estimated_rows += table.schema.estimated_rows;
                total.estimated_bytes += table.schema.estimated_bytes;
            }
        }
        totals
    }

    /// Compares every table as `verify` asks; chunks committed by an
    /// earlier attempt (`earlier`) are counted, not checksummed again.
    fn verify(
        &self,
        tables: &[PlannedTable],
        chunks: &[ChunkTask],
        earlier: &HashSet<ChunkId>,
        consistency: Consistency,
        result: &mut ImportResult,
    ) -> Result<(), Stop> {
        self.events.emit(&ImportEvent::Phase { phase: "verify" });
        let rows: Vec<u64> = (0..tables.len())
            .map(|index| copied_rows(self.store, chunks, index as u32))
            .collect();
        let checks = verify::Checks {
            source: self.source(),
            target: self.target(),
            mode: self.job.options.verify,
            consistency,
        };
        let copied = verify::Copied {
            chunks,
            earlier,
            rows: &rows,
        };
        result.tables = interrupt::interruptible(self.cancel, &[self.source(), self.target()], || {
            checks.all(tables, &copied, self.job.options.parallelism as usize, self.cancel)
        })?;
        Ok(())
    }

    /// Adds each destination database's indexes, views, routines,
    /// triggers and events.
    fn finish(&self, plan: &StoredPlan, result: &mut ImportResult) -> Result<(), Stop> {
        self.events.emit(&ImportEvent::Phase { phase: "finish" });
        for ((_, dst), schema) in self.resolved.mapping.iter().zip(&plan.schemas) {
            let outcome = interrupt::interruptible(self.cancel, &[self.target()], || {
                self.target()
                    .finish_target(FinishRequest {
                        database: dst.clone(),
                        schema: schema.clone(),
                        resume: self.resume,
                        parallelism: self.job.options.parallelism,
                    })
                    .map_err(|e| {
                        host_failure(
                            &format!("adding indexes, views, routines, triggers and events to {dst}"),
                            e,
                        )
                    })
            })?;
            self.record_schema(result, dst, outcome);
        }
        Ok(())
    }

    fn record_schema(&self, result: &mut ImportResult, database: &str, outcome: SchemaOutcome) {
        super::record_schema(result, database, outcome, &|r: &mut ImportResult, m: String| {
            self.warn(r, m)
        });
    }
}

/// Rows of a table committed by this attempt and the ones before it.
fn copied_rows(store: &dyn ImportStore, chunks: &[ChunkTask], table: u32) -> u64 {
    chunks
        .iter()
        .filter(|c| c.id.table == table)
        .filter_map(|c| store.committed(c.id))
        .map(|s| s.rows)
        .sum()
}

fn copy_failure(error: CopyError) -> Stop {
    let message = error.to_string();
    let source = match &error {
        CopyError::Read { source, .. } | CopyError::Write { source, .. } => Some(source),
        _ => None,
    };
    let host = source.and_then(|s| s.downcast_ref::<HostError>());
    let code = host
        .and_then(HostError::plugin_error)
        .and_then(|e| e.code.as_deref())
        .and_then(code_from_str)
        .unwrap_or(ErrorCode::InternalError);
    if host
        .and_then(HostError::plugin_error)
        .is_some_and(|e| e.kind == ErrorKind::Connect)
    {
        return Stop::Failed(ErrorCode::IncorrectInstanceState, message);
    }
    Stop::Failed(code, message)
}

fn report_progress(
    progress: &Progress,
    done: std::sync::mpsc::Receiver<()>,
    import_id: u64,
    metrics: &Metrics,
    events: &dyn EventSink,
) {
    let label = import_id.to_string();
    let mut last = Instant::now() - Duration::from_secs(1);
    let mut finished = false;
    loop {
        if finished || last.elapsed() >= Duration::from_millis(500) {
            last = Instant::now();
            let databases = progress.snapshot();
            let rows = databases.iter().map(|d| d.rows).sum();
            let bytes: u64 = databases.iter().map(|d| d.bytes).sum();
            let estimated: u64 = databases.iter().map(|d| d.estimated_bytes).sum();
            // Estimates come from engine statistics; keep the ratio below 1
            // until the copy has really finished.
            let ratio = if estimated == 0 {
                0.0
            } else {
                (bytes as f64 / estimated as f64).min(0.99)
            };
            metrics.progress.with_label_values(&[&label]).set(ratio);
            events.emit(&ImportEvent::Progress {
                databases,
                rows,
                bytes,
                ratio,
            });
        }
        if finished {
            return;
        }
        // Its sender is dropped when the copy ends: one last report, now.
        finished = !matches!(
            done.recv_timeout(Duration::from_millis(100)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
    }
}
