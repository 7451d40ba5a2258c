//! `method = "backup-restore"`: the engine's native backup of each source
//! database, restored on the target under its destination name (SQL Server,
//! the way dbatools' Copy-DbaDatabase does it), with the server's own
//! `percent_complete` feeding the same progress events and metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dbferry_copy_core::CancelToken;
use dbferry_plugin_abi::protocol::{BackupRestoreRequest, BackupStep};
use dbferry_plugin_host::Session;

use super::outcome::{DatabaseProgress, TableOutcome};
use super::verify::Checks;
use super::{host_failure, precheck, EventSink, ImportEvent, ImportResult, PlannedTable, Stop};
use crate::codes::ErrorCode;
use crate::job::Job;
use crate::metrics::Metrics;

/// One attempt's copy of every database of the job by the engine's own
/// backup and restore, from the servers the prechecks connected to.
pub(super) struct BackupRestore<'a> {
    pub job: &'a Job,
    pub import_id: u64,
    pub resolved: &'a precheck::Resolved<'a>,
    pub checked: &'a precheck::Checked,
    pub metrics: &'a Metrics,
    pub events: &'a dyn EventSink,
    pub cancel: &'a CancelToken,
}

impl BackupRestore<'_> {
    /// Runs backup, restore and cleanup for every database, then verifies
    /// every table against the source.
    pub fn run(&self, result: &mut ImportResult) -> Result<(), Stop> {
        let BackupRestore {
            job,
            import_id,
            resolved,
            checked,
            metrics,
            events,
            cancel,
        } = *self;
        let Some(directory) = resolved.backup_path.as_deref() else {
            return Err(Stop::Failed(
                ErrorCode::MissingParameter,
                "backup_path is not set".into(),
            ));
        };
        let steps = resolved.mapping.len() as f64 * 2.0;
        for (index, (src, dst)) in resolved.mapping.iter().enumerate() {
            let request = |step| BackupRestoreRequest {
                step,
                source_database: src.clone(),
                database: dst.clone(),
                backup_path: format!("{}/dbferry-{import_id}-{src}.bak", directory.trim_end_matches('/')),
            };
            for (offset, (session, step, phase)) in [
                (&checked.source, BackupStep::Backup, "backup"),
                (&checked.target, BackupStep::Restore, "restore"),
            ]
            .into_iter()
            .enumerate()
            {
                if cancel.is_cancelled() {
                    return Err(Stop::Cancelled);
                }
                events.emit(&ImportEvent::Phase { phase });
                let done = (index * 2 + offset) as f64;
                let outcome = with_progress(
                    session,
                    import_id,
                    metrics,
                    events,
                    |pct| (done + pct / 100.0) / steps,
                    || session.backup_restore(request(step)),
                )
                .map_err(|e| host_failure(&format!("{phase} of {src} as {dst}"), e))?;
                super::record_schema(result, dst, outcome, &|r: &mut ImportResult, m: String| {
                    events.emit(&ImportEvent::Warning { message: m.clone() });
                    r.warnings.push(m);
                });
            }
            match checked.target.backup_restore(request(BackupStep::Cleanup)) {
                Ok(outcome) => result.warnings.extend(outcome.warnings),
                Err(e) => result.warnings.push(format!("removing the backup file of {src}: {e}")),
            }
        }

        events.emit(&ImportEvent::Phase { phase: "verify" });
        for ((src, dst), schema) in resolved.mapping.iter().zip(&checked.schemas) {
            let mut database = DatabaseProgress {
                database: dst.clone(),
                ..DatabaseProgress::default()
            };
            for table in &schema.tables {
                let planned = PlannedTable {
                    database_index: 0,
                    source_database: src.clone(),
                    target_database: dst.clone(),
                    schema: table.clone(),
                };
                // A backup is one instant of the source; its rows are what the
                // source holds now only if nobody wrote meanwhile, so compare both.
                let rows = verify_restored(&checked.source, &checked.target, &planned, job)?;
                database.rows += rows;
                result.tables.push(TableOutcome {
                    database: dst.clone(),
                    table: table.name.clone(),
                    rows,
                    verified: if job.options.verify == dbferry_plugin_abi::protocol::VerifyMode::Checksum {
                        "checksum"
                    } else {
                        "count"
                    },
                });
            }
            result.rows += database.rows;
            result.bytes += schema.tables.iter().map(|t| t.estimated_bytes).sum::<u64>();
        }
        Ok(())
    }
}

fn verify_restored(source: &Session, target: &Session, table: &PlannedTable, job: &Job) -> Result<u64, Stop> {
    let rows = target
        .table_digest(dbferry_plugin_abi::protocol::DigestRequest {
            database: table.target_database.clone(),
            table: table.schema.clone(),
            mode: dbferry_plugin_abi::protocol::VerifyMode::Count,
            in_snapshot: false,
        })
        .map_err(|e| host_failure(&format!("counting {}.{}", table.target_database, table.schema.name), e))?
        .rows;
    let mode = match job.options.verify {
        dbferry_plugin_abi::protocol::VerifyMode::None => dbferry_plugin_abi::protocol::VerifyMode::Count,
        other => other,
    };
    Checks {
        source,
        target,
        mode,
        consistency: dbferry_plugin_abi::protocol::Consistency::Global,
    }
    .table(table, rows)?;
    Ok(rows)
}

/// Runs `step` while another thread polls the session's progress.
fn with_progress<T>(
    session: &Session,
    import_id: u64,
    metrics: &Metrics,
    events: &dyn EventSink,
    ratio: impl Fn(f64) -> f64 + Sync,
    step: impl FnOnce() -> T,
) -> T {
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let label = import_id.to_string();
            while !finished.load(Ordering::SeqCst) {
                if let Ok(progress) = session.backup_progress() {
                    let r = ratio(progress.percent.unwrap_or(0.0)).min(0.99);
                    metrics.progress.with_label_values(&[&label]).set(r);
                    events.emit(&ImportEvent::Progress {
                        databases: Vec::new(),
                        rows: 0,
                        bytes: 0,
                        ratio: r,
                    });
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let out = step();
        finished.store(true, Ordering::SeqCst);
        out
    })
}
