//! The verify phase: every table's row count (or checksum) on the target
//! against what was copied and against the source, several tables at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
        // Each worker returns what it verified, or the table it failed on.
        let work = || -> WorkerResult {
            let mut done = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(table) = tables.get(index) else {
                    break;
                };
                let outcome = if cancel.is_cancelled() {
                    Err(Stop::Cancelled)
                } else {
                    self.table(table, copied[index])
                };
                match outcome {
                    Ok(how) => done.push((index, how)),
                    Err(stop) => {
                        stopped.store(true, Ordering::SeqCst);
                        return Err((index, stop));
                    }
                }
            }
            Ok(done)
        };
        let results: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..lanes.clamp(1, tables.len().max(1)))
                .map(|_| scope.spawn(work))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err((
                            0,
                            Stop::Failed(ErrorCode::InternalError, "a verification thread panicked".into()),
                        ))
                    })
                })
                .collect()
        });
        let verified = merge(tables.len(), results)?;
        tables
            .iter()
            .zip(copied)
            .zip(verified)
            .map(|((table, &rows), how)| {
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
        let mismatch = |what: String| {
            Stop::Failed(
                ErrorCode::InternalError,
                format!("verification failed for {name}: {what}"),
            )
        };
        let on_target = digest(target, &table.target_database, false)?;
        if on_target.rows != copied {
            return Err(mismatch(format!(
                "{copied} rows were copied but the target holds {}",
                on_target.rows
            )));
        }
        // Under per-table consistency the source may have moved on since it was
        // read, so only what was copied can be compared with the target.
        if consistency == Consistency::Global || mode == VerifyMode::Checksum {
            let on_source = digest(source, &table.source_database, consistency == Consistency::Global)?;
            if consistency == Consistency::Global && on_source.rows != on_target.rows {
                return Err(mismatch(format!(
                    "the source has {} rows, the target {}",
                    on_source.rows, on_target.rows
                )));
            }
            if mode == VerifyMode::Checksum && on_source.checksum != on_target.checksum {
                return Err(mismatch(format!(
                    "checksums differ (source {:?}, target {:?})",
                    on_source.checksum, on_target.checksum
                )));
            }
        }
        Ok(if mode == VerifyMode::Checksum {
            "checksum"
        } else {
            "count"
        })
    }
}

/// One worker's tables and how each was verified, or the table it failed on.
type WorkerResult = Result<Vec<(usize, &'static str)>, (usize, Stop)>;

/// What each worker verified, in table order; a table nobody reached is
/// `None`. With failures, the earliest table's, as a serial run would report.
fn merge(tables: usize, results: Vec<WorkerResult>) -> Result<Vec<Option<&'static str>>, Stop> {
    let mut verified = vec![None; tables];
    let mut first_failure: Option<(usize, Stop)> = None;
    for result in results {
        match result {
            Ok(done) => done.into_iter().for_each(|(index, how)| verified[index] = Some(how)),
            Err((index, stop)) => {
                if !matches!(first_failure, Some((i, _)) if i < index) {
                    first_failure = Some((index, stop));
                }
            }
        }
    }
    match first_failure {
        Some((_, stop)) => Err(stop),
        None => Ok(verified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(table: &str) -> Stop {
        Stop::Failed(ErrorCode::InternalError, format!("verification failed for {table}"))
    }

    #[test]
    fn outcomes_come_back_in_table_order() {
        let merged = merge(3, vec![Ok(vec![(2, "count"), (0, "count")]), Ok(vec![(1, "checksum")])]);
        assert!(matches!(
            merged.as_deref(),
            Ok([Some("count"), Some("checksum"), Some("count")])
        ));
    }

    #[test]
    fn the_earliest_tables_failure_is_reported_whichever_worker_saw_it() {
        let merged = merge(
            6,
            vec![Err((5, failed("t5"))), Ok(vec![(0, "count")]), Err((2, failed("t2")))],
        );
        assert!(matches!(merged, Err(Stop::Failed(_, m)) if m.ends_with("t2")));
    }
}
