//! One import, from prechecks to verified copy. `dbferry run` and the daemon
//! both run an [`Import`]; so do the API's requests.

mod backup;
mod copy;
mod early_indexes;
mod interrupt;
mod logical;
pub mod outage;
pub mod outcome;
pub mod precheck;
mod resume;
mod verify;

use std::time::Instant;

use dbferry_copy_core::{CancelToken, CheckpointStore, ChunkTask};
use dbferry_plugin_abi::protocol::{Consistency, DatabaseSchema};
use dbferry_plugin_host::HostError;
use serde::{Deserialize, Serialize};

pub use copy::PlannedTable;
pub use outcome::{DatabaseProgress, EventSink, ImportEvent, ImportResult, ImportStatus, NoEvents};
pub use resume::{shell_quote, TableProgressState, TableState};

use crate::codes::{ErrorCode, Rejection};
use crate::config::Config;
use crate::engines::Engines;
use crate::instances::InstanceRegistry;
use crate::job::{CopyMethod, Job};
use crate::metrics::Metrics;

/// Times a failed chunk is copied again before the import fails.
pub const CHUNK_RETRIES: u32 = 3;
/// Most small tables copied with one read and one write (see
/// `CopySettings::group_chunks`); the group's byte cap usually binds first.
pub const COPY_GROUP_CHUNKS: usize = 128;

/// What every import needs from its host process.
#[derive(Clone)]
pub struct ImportContext {
    /// The config.
    pub config: Config,
    /// Loaded plugins.
    pub engines: Engines,
    /// Instance states.
    pub instances: InstanceRegistry,
    /// Metrics.
    pub metrics: Metrics,
}

/// Tuning of the copy itself (the chunk size comes from the job).
#[derive(Clone, Debug)]
pub struct CopyTuning {
    /// Most chunks one table is cut into.
    pub max_chunks_per_table: u32,
    /// Bytes all lanes may hold in queues together.
    pub memory_budget: u64,
    /// Batches queued per lane.
    pub queue_depth: usize,
    /// Tables estimated at most this size get their secondary indexes when
    /// they are created instead of after the load.
    pub inline_index_max_bytes: u64,
}

impl Default for CopyTuning {
    fn default() -> Self {
        Self {
            max_chunks_per_table: 4096,
            memory_budget: 64 << 20,
            queue_depth: 4,
            inline_index_max_bytes: 8 << 20,
        }
    }
}

/// What an import persists before it changes anything, so that after a
/// crash it can resume instead of starting over.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoredPlan {
    /// The source schema of every database, in DBInfo order.
    pub schemas: Vec<DatabaseSchema>,
    /// The chunks, once planned; `ChunkId::table` indexes the tables of
    /// `schemas` in order (see `planned_tables`). Not stored twice: on 1,000
    /// tables a copy of every schema per table doubled a 2 MB plan.
    pub chunks: Option<Vec<ChunkTask>>,
    /// The consistency of the first attempt's reads.
    pub consistency: Option<Consistency>,
}

/// Where an import keeps its plan and checkpoints.
pub trait ImportStore: CheckpointStore {
    /// The plan an earlier attempt saved, if any: its presence means resume.
    fn load_plan(&self) -> Result<Option<StoredPlan>, String>;
    /// Saves the plan; called before the first change and once chunks are planned.
    fn save_plan(&self, plan: &StoredPlan) -> Result<(), String>;
    /// Forgets the checkpoints of these tables (`ChunkId::table`), durably.
    fn forget_tables(&self, tables: &[u32]) -> Result<(), String>;
}

/// A store that forgets everything when dropped; what tests use.
#[derive(Default)]
pub struct MemoryStore {
    checkpoints: dbferry_copy_core::MemoryCheckpoints,
    plan: std::sync::Mutex<Option<StoredPlan>>,
}

impl CheckpointStore for MemoryStore {
    fn committed(&self, id: dbferry_copy_core::ChunkId) -> Option<dbferry_copy_core::ChunkStats> {
        self.checkpoints.committed(id)
    }
    fn record(&self, id: dbferry_copy_core::ChunkId, stats: dbferry_copy_core::ChunkStats) -> Result<(), String> {
        self.checkpoints.record(id, stats)
    }
}

impl ImportStore for MemoryStore {
    fn load_plan(&self) -> Result<Option<StoredPlan>, String> {
        Ok(self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }
    fn save_plan(&self, plan: &StoredPlan) -> Result<(), String> {
        *self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(plan.clone());
        Ok(())
    }
    fn forget_tables(&self, tables: &[u32]) -> Result<(), String> {
        self.checkpoints.forget(|id| tables.contains(&id.table));
        Ok(())
    }
}

/// Why an import stopped after it started changing the target.
enum Stop {
    Cancelled,
    Failed(ErrorCode, String),
}

impl From<Rejection> for Stop {
    fn from(r: Rejection) -> Self {
        Stop::Failed(r.code, r.message)
    }
}

fn host_failure(what: &str, error: HostError) -> Stop {
    let code = error
        .plugin_error()
        .and_then(|e| e.code.as_deref())
        .and_then(code_from_str)
        .unwrap_or(ErrorCode::InternalError);
    Stop::Failed(code, format!("{what}: {error}"))
}

fn code_from_str(code: &str) -> Option<ErrorCode> {
    [
        ErrorCode::DbNameExists,
        ErrorCode::DbNameNotFound,
        ErrorCode::IncorrectInstanceState,
        ErrorCode::IncorrectInstanceType,
        ErrorCode::IncorrectLockMode,
        ErrorCode::InsufficientStorage,
    ]
    .into_iter()
    .find(|c| c.as_str() == code)
}

/// One import, with everything it runs with: the host's context, the job,
/// its ids, where its checkpoints go, who hears of its progress, and the
/// token that cancels it.
pub struct Import<'a> {
    /// What every import needs from its host process.
    pub ctx: &'a ImportContext,
    /// The job.
    pub job: &'a Job,
    /// Its ImportId.
    pub import_id: u64,
    /// Copy settings beyond the job's.
    pub tuning: &'a CopyTuning,
    /// Its plan and checkpoints.
    pub store: &'a dyn ImportStore,
    /// Progress, phases and warnings as they happen.
    pub events: &'a dyn EventSink,
    /// Cancels it.
    pub cancel: &'a CancelToken,
}

impl Import<'_> {
    /// Runs the import to its end and reports how it ended. Never panics on
    /// bad input; instance states are back to `Running` when it returns.
    pub fn run(&self, request_id: String) -> ImportResult {
        let Import {
            ctx,
            job,
            import_id,
            events,
            ..
        } = *self;
        let started = Instant::now();
        let mut result = ImportResult::new(import_id, request_id.clone());
        events.emit(&ImportEvent::Accepted { import_id, request_id });
        ctx.metrics.imports.with_label_values(&["Running"]).inc();
        let span = tracing::info_span!("import", import_id, request_id = %result.request_id);
        let _entered = span.enter();
        tracing::info!(source = %job.source_id, target = %job.target_id, "import started");

        self.run_phases(&mut result);

        result.elapsed_seconds = started.elapsed().as_secs_f64();
        ctx.metrics.imports.with_label_values(&["Running"]).dec();
        ctx.metrics.imports.with_label_values(&[result.status.as_str()]).inc();
        let _ = ctx.metrics.progress.remove_label_values(&[&import_id.to_string()]);
        tracing::info!(
            status = result.status.as_str(),
            rows = result.rows,
            bytes = result.bytes,
            code = result.code.map(ErrorCode::as_str),
            message = result.message.as_deref(),
            "import ended"
        );
        result
    }

    /// Attempts until one ends other than by an outage, waiting each
    /// outage out (up to `outage_timeout`).
    fn run_phases(&self, result: &mut ImportResult) {
        let Import {
            ctx,
            job,
            import_id,
            tuning,
            store,
            events,
            cancel,
        } = *self;
        events.emit(&ImportEvent::Phase { phase: "precheck" });
        let resolved = match precheck::resolve(&ctx.config, job) {
            Ok(r) => r,
            Err(rejection) => return result.reject(rejection),
        };
        let Some(plugin) = ctx.engines.get(&resolved.source.engine) else {
            return result.reject(Rejection::new(
                ErrorCode::InternalError,
                format!(
                    "no plugin for engine {} is loaded from {}",
                    resolved.source.engine,
                    ctx.config.daemon.plugin_dir.display()
                ),
            ));
        };
        let reservation = match ctx
            .instances
            .reserve(&resolved.source.id, &resolved.target.id, import_id)
        {
            Ok(r) => r,
            Err(rejection) => return result.reject(rejection),
        };
        let attempt = Attempt {
            ctx,
            job,
            import_id,
            tuning,
            plugin,
            resolved: &resolved,
            reservation: &reservation,
            store,
            events,
            cancel,
        };
        let waiter = outage::Waiter {
            plugin,
            instances: [resolved.source, resolved.target],
            reservation: &reservation,
            metrics: &ctx.metrics,
            import_id,
            events,
            cancel,
        };
        let mut outages = 0;
        while let Some(lost) = attempt.run(outages > 0, result) {
            outages += 1;
            let side = if lost.starts_with("reading") || lost.contains("source") {
                "source"
            } else {
                "target"
            };
            ctx.metrics.outages.with_label_values(&[side]).inc();
            let timeout = job.options.outage_timeout;
            if outages > outage::MAX_OUTAGES {
                result.fail(
                    ErrorCode::IncorrectInstanceState,
                    format!(
                        "{lost}; the connection was lost {} times, so the import stopped",
                        outages
                    ),
                );
                break;
            }
            tracing::warn!(import_id, error = %lost, timeout_seconds = timeout.as_secs(), "lost an instance; waiting for it");
            match waiter.wait(timeout) {
                Ok(()) => {
                    tracing::info!(import_id, "both instances answer again; resuming");
                    result.reset_for_retry();
                }
                Err(outage::WaitEnd::Cancelled) => {
                    result.status = ImportStatus::Cancelled;
                    result.code = None;
                    result.message = Some(format!(
                        "the import was cancelled while it waited for an instance: {} rows ({} bytes) are committed on the target and stay there",
                        result.rows, result.bytes
                    ));
                    break;
                }
                Err(outage::WaitEnd::TimedOut(why)) => {
                    result.fail(
                        ErrorCode::IncorrectInstanceState,
                        format!(
                            "{lost}; still unreachable after outage_timeout ({} s): {why}",
                            timeout.as_secs()
                        ),
                    );
                    break;
                }
            }
        }
        drop(reservation);
    }
}

/// One try at an import, from the server checks to its end; an outage
/// ends it early and is waited for by [`run_phases`].
struct Attempt<'a> {
    ctx: &'a ImportContext,
    job: &'a Job,
    import_id: u64,
    tuning: &'a CopyTuning,
    plugin: &'a dbferry_plugin_host::Plugin,
    resolved: &'a precheck::Resolved<'a>,
    reservation: &'a crate::instances::Reservation,
    store: &'a dyn ImportStore,
    events: &'a dyn EventSink,
    cancel: &'a CancelToken,
}

impl Attempt<'_> {
    /// Runs the import once. `Some(why)` when a source or target went away
    /// (`after_outage`: also when one cannot be reached at the start).
    fn run(&self, after_outage: bool, result: &mut ImportResult) -> Option<String> {
        let Attempt {
            ctx,
            job,
            import_id,
            tuning,
            plugin,
            resolved,
            reservation,
            store,
            events,
            cancel,
        } = *self;
        let saved = match store.load_plan() {
            Ok(plan) => plan,
            Err(e) => {
                result.reject(Rejection::new(
                    ErrorCode::InternalError,
                    format!("reading the saved plan: {e}"),
                ));
                return None;
            }
        };
        let resume = saved.is_some();
        let checked = match precheck::check_servers(plugin, resolved, job, saved.as_ref().map(|p| p.schemas.clone())) {
            Ok(c) => c,
            Err(rejection) => {
                if rejection.code == ErrorCode::IncorrectInstanceState {
                    if after_outage && outage::is_outage(&rejection.message) {
                        return Some(rejection.message);
                    }
                    tracing::warn!(message = %rejection.message, "instance unreachable");
                }
                result.reject(rejection);
                return None;
            }
        };
        for transport in &checked.transport {
            ctx.metrics
                .sessions
                .with_label_values(&[&transport.instance, transport.encryption_label()])
                .inc();
        }
        result.transport = checked.transport.to_vec();
        events.emit(&ImportEvent::Transport {
            instances: result.transport.clone(),
        });
        if cancel.is_cancelled() {
            result.status = ImportStatus::Cancelled;
            result.message = Some("cancelled before any change".into());
            return None;
        }

        let mut plan = saved.unwrap_or_else(|| StoredPlan {
            schemas: checked.schemas.clone(),
            ..StoredPlan::default()
        });
        if let Err(e) = store.save_plan(&plan) {
            result.reject(Rejection::new(
                ErrorCode::InternalError,
                format!("saving the plan: {e}"),
            ));
            return None;
        }
        if resume {
            tracing::info!("resuming an interrupted import");
        }
        reservation.activate();
        let outcome = match job.options.method {
            CopyMethod::Logical => logical::LogicalCopy {
                ctx,
                job,
                import_id,
                tuning,
                resolved,
                checked: &checked,
                resume,
                store,
                events,
                cancel,
            }
            .run(&mut plan, result),
            CopyMethod::BackupRestore => backup::BackupRestore {
                job,
                import_id,
                resolved,
                checked: &checked,
                metrics: &ctx.metrics,
                events,
                cancel,
            }
            .run(result),
        };
        // Whatever happened, release the source's snapshot connections.
        if let Err(e) = checked.source.end_snapshot() {
            tracing::debug!(error = %e, "releasing the source snapshot failed");
        }
        if outcome.is_err() && job.options.method == CopyMethod::Logical {
            record_stop(planned_tables(resolved, &plan.schemas), &plan, store, result);
        }
        match outcome {
            Ok(()) => result.status = ImportStatus::Success,
            Err(Stop::Cancelled) => {
                result.status = ImportStatus::Cancelled;
                result.code = None;
                result.message = Some(format!(
                    "the import was cancelled: {} rows ({} bytes) are committed on the target and stay there",
                    result.rows, result.bytes
                ));
            }
            Err(Stop::Failed(_, message))
                if job.options.method == CopyMethod::Logical
                    && !cancel.is_cancelled()
                    && outage::is_outage(&message) =>
            {
                return Some(message);
            }
            Err(Stop::Failed(_, message)) if outage::is_disk_full(&message) => result.fail(
                ErrorCode::InsufficientStorage,
                format!(
                    "the target {} has no disk space left: {message}; free space on it, then resume the import",
                    resolved.target.id
                ),
            ),
            Err(Stop::Failed(code, message)) => result.fail(code, message),
        }
        None
    }
}

/// What is on the target after a stop short of success: committed rows and
/// bytes, and every table's state.
fn record_stop(tables: Vec<PlannedTable>, plan: &StoredPlan, store: &dyn ImportStore, result: &mut ImportResult) {
    let chunks = plan.chunks.as_deref().unwrap_or_default();
    let states = resume::table_states(&tables, chunks, store);
    result.rows = states.iter().map(|t| t.rows).sum();
    result.bytes = states.iter().map(|t| t.bytes).sum();
    result.table_states = states;
}

/// The tables of `schemas`, in order: what `ChunkId::table` indexes.
fn planned_tables(resolved: &precheck::Resolved<'_>, schemas: &[DatabaseSchema]) -> Vec<PlannedTable> {
    let mut tables = Vec::new();
    for (index, ((src, dst), schema)) in resolved.mapping.iter().zip(schemas).enumerate() {
        for table in &schema.tables {
            tables.push(PlannedTable {
                database_index: index,
                source_database: src.clone(),
                target_database: dst.clone(),
                schema: table.clone(),
            });
        }
    }
    tables
}

/// What a schema step created on `database` goes into the result; what
/// it dropped and what it warned of go to `warn`.
fn record_schema(
    result: &mut ImportResult,
    database: &str,
    outcome: dbferry_plugin_abi::protocol::SchemaOutcome,
    warn: &dyn Fn(&mut ImportResult, String),
) {
    for object in outcome.created {
        result.created.push(format!(
            "{database}.{}:{}",
            format!("{:?}", object.kind).to_lowercase(),
            object.name
        ));
    }
    for object in outcome.dropped {
        warn(
            result,
            format!(
                "dropped existing {:?} {database}.{} on the target",
                object.kind, object.name
            ),
        );
    }
    for warning in outcome.warnings {
        warn(result, warning);
    }
}

/// After a stop short of success, says what to do next: the command that
/// resumes the import and the SQL that removes what it created instead.
/// `earlier` is what earlier attempts of the import created.
pub fn next_steps(
    result: &mut ImportResult,
    store: &dyn ImportStore,
    earlier: Vec<String>,
    resume_command: &str,
    ctx: &ImportContext,
    job: &Job,
) {
    if !earlier.is_empty() {
        let mut created = earlier;
        for object in result.created.drain(..) {
            if !created.contains(&object) {
                created.push(object);
            }
        }
        result.created = created;
    }
    let changed_something = store.load_plan().ok().flatten().is_some();
    if result.status == ImportStatus::Success || (result.rejected && !changed_something) {
        return;
    }
    result.resume_command = Some(resume_command.to_string());
    if !result.created.is_empty() {
        let engine = ctx
            .config
            .instances
            .iter()
            .find(|i| i.id == job.target_id)
            .map(|i| i.engine.as_str())
            .unwrap_or_default();
        result.cleanup_hint = Some(match resume::cleanup_sql(engine, &result.created) {
            Some(sql) => format!("run on the target: {sql}"),
            None => format!("drop these objects on the target: {}", result.created.join(", ")),
        });
    }
}

/// Loads the config's plugins and instances into an [`ImportContext`].
pub fn context(config: Config, metrics: Metrics) -> Result<ImportContext, Rejection> {
    let engines = Engines::load(&config.daemon.plugin_dir, &config.daemon.state_dir, &metrics)
        .map_err(|e| Rejection::new(ErrorCode::InternalError, e.to_string()))?;
    let instances = InstanceRegistry::new(
        config.instances.iter().map(|i| (i.id.as_str(), i.engine.as_str())),
        metrics.clone(),
        &config.daemon.state_dir,
    );
    Ok(ImportContext {
        config,
        engines,
        instances,
        metrics,
    })
}

/// A context for a reloaded config that keeps the running process's
/// plugins, metrics and instance states (new instances start `Running`).
pub fn reload_context(old: &ImportContext, config: Config) -> ImportContext {
    for instance in &config.instances {
        old.instances.add(&instance.id, &instance.engine);
    }
    ImportContext {
        config,
        engines: old.engines.clone(),
        instances: old.instances.clone(),
        metrics: old.metrics.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_saved_with_its_tables_listed_still_resumes() -> Result<(), serde_json::Error> {
        // Plans stored before the tables were derived from `schemas` carry them too.
        let older = r#"{"schemas":[],"chunks":[],"tables":[{"database_index":0}],"consistency":"global"}"#;
        let plan: StoredPlan = serde_json::from_str(older)?;
        assert_eq!(plan.chunks.map(|c| c.len()), Some(0));
        assert!(!serde_json::to_string(&StoredPlan::default())?.contains("tables"));
        Ok(())
    }
}
