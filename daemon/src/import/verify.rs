//! The verify phase: every table's row count (or checksum) on the target
//! against what was copied and against the source, several tables at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use dbferry_copy_core::CancelToken;
use dbferry_plugin_abi::protocol::{Consistency, DigestRequest, VerifyMode};
use dbferry_plugin_host::Session;

use super::copy::PlannedTable;
use super::outcome::TableOutcome;
use super::{host_failure, Stop};
use crate::codes::ErrorCode;

/// How the copied tables are checked.
pub(super) struct Checks<'a> {
    pub source: &'a Session,
    pub target: &'a Session,
    pub mode: VerifyMode,
    pub consistency: Consistency,
}

impl Checks<'_> {
    /// Verifies every table, `lanes` at a time, and returns their outcomes
    /// in table order; the first failure stops the rest.
    pub fn all(
        &self,
        tables: &[PlannedTable],
        copied: &[u64],
        lanes: usize,
        cancel: &CancelToken,
    ) -> Result<Vec<TableOutcome>, Stop> {
        let next = AtomicUsize::new(0);
        let stopped = AtomicBool::new(false);
        let first_error: Mutex<Option<(usize, Stop)>> = Mutex::new(None);
        let verified: Vec<Mutex<Option<&'static str>>> = tables.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..lanes.clamp(1, tables.len().max(1)) {
                scope.spawn(|| loop {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(table) = tables.get(index) else {
                        return;
                    };
                    let outcome = if cancel.is_cancelled() {
                        Err(Stop::Cancelled)
                    } else {
                        self.table(table, copied[index])
                    };
                    match outcome {
                        Ok(how) => *lock(&verified[index]) = Some(how),
                        Err(stop) => {
                            stopped.store(true, Ordering::SeqCst);
                            let mut first = lock(&first_error);
                            // Report the earliest table's failure, as a serial run would.
                            if !matches!(first.as_ref(), Some((i, _)) if *i < index) {
                                *first = Some((index, stop));
                            }
                            return;
                        }
                    }
                });
            }
        });
        if let Some((_, stop)) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(stop);
        }
        tables
            .iter()
            .zip(copied)
            .zip(verified)
            .map(|((table, &rows), how)| {
                let how = how.into_inner().unwrap_or_else(|e| e.into_inner());
                Ok(TableOutcome {
                    database: table.target_database.clone(),
                    table: table.schema.name.clone(),
                    rows,
                    verified: how.ok_or(Stop::Cancelled)?,
                })
            })
            .collect()
    }

    /// Compares one table's target with what was copied and with the source.
    pub fn table(&self, table: &PlannedTable, copied: u64) -> Result<&'static str, Stop> {
        let (source, target, mode, consistency) = (self.source, self.target, self.mode, self.consistency);
        let name = format!("{}.{}", table.target_database, table.schema.name);
        if mode == VerifyMode::None {
            return Ok("none");
        }
        let digest = |session: &Session, database: &str, in_snapshot: bool| {
            session
                .table_digest(DigestRequest {
                    database: database.to_string(),
                    table: table.schema.clone(),
                    mode,
                    in_snapshot,
                })
                .map_err(|e| host_failure(&format!("verifying {name}"), e))
        };
        let on_target = digest(target, &table.target_database, false)?;
        if on_target.rows != copied {
            return Err(Stop::Failed(
                ErrorCode::InternalError,
                format!(
                    "verification failed for {name}: {copied} rows were copied but the target holds {}",
                    on_target.rows
                ),
            ));
        }
        // Under per-table consistency the source may have moved on since it was
        // read, so only what was copied can be compared with the target.
        if consistency == Consistency::Global || mode == VerifyMode::Checksum {
            let on_source = digest(source, &table.source_database, consistency == Consistency::Global)?;
            if consistency == Consistency::Global && on_source.rows != on_target.rows {
                return Err(Stop::Failed(
                    ErrorCode::InternalError,
                    format!(
                        "verification failed for {name}: the source has {} rows, the target {}",
                        on_source.rows, on_target.rows
                    ),
                ));
            }
            if mode == VerifyMode::Checksum && on_source.checksum != on_target.checksum {
                return Err(Stop::Failed(
                    ErrorCode::InternalError,
                    format!(
                        "verification failed for {name}: checksums differ (source {:?}, target {:?})",
                        on_source.checksum, on_target.checksum
                    ),
                ));
            }
        }
        Ok(if mode == VerifyMode::Checksum {
            "checksum"
        } else {
            "count"
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
