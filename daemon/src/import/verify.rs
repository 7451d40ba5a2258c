//! The verify phase: every table's row count (or checksum) on the target
//! against what was copied and against the source, several tables at once.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dbferry_copy_core::CancelToken;
use dbferry_plugin_abi::protocol::{Consistency, Digest, DigestsRequest, VerifyMode};
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

/// Most tables verified by one digest request per side.
const GROUP_TABLES: usize = 64;
/// A group takes no more tables once their estimated bytes reach this: big
/// tables are verified apart, side by side on several lanes.
const GROUP_BYTES: u64 = 32 << 20;

impl Checks<'_> {
    /// Verifies every table, `lanes` groups at a time, and returns their
    /// outcomes in table order; the first failure stops the rest.
    pub fn all(
        &self,
        tables: &[PlannedTable],
        copied: &[u64],
        lanes: usize,
        cancel: &CancelToken,
    ) -> Result<Vec<TableOutcome>, Stop> {
        let groups = groups(tables);
        let next = AtomicUsize::new(0);
        let stopped = AtomicBool::new(false);
        // Each worker returns what it verified, or the table it failed on.
        let work = || -> WorkerResult {
            let mut done = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let Some(group) = groups.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    break;
                };
                let outcome = if cancel.is_cancelled() {
                    Err((0, Stop::Cancelled))
                } else {
                    self.group(&tables[group.clone()], &copied[group.clone()])
                };
                match outcome {
                    Ok(how) => done.extend(group.clone().map(|index| (index, how))),
                    Err((offset, stop)) => {
                        stopped.store(true, Ordering::SeqCst);
                        return Err((group.start + offset, stop));
                    }
                }
            }
            Ok(done)
        };
        let results: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..lanes.clamp(1, groups.len().max(1)))
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
        self.group(std::slice::from_ref(table), &[copied])
            .map_err(|(_, stop)| stop)
    }

    /// Compares tables of one database pair, with one digest request per
    /// side; a failure comes with the offset of the first table that failed.
    fn group(&self, tables: &[PlannedTable], copied: &[u64]) -> Result<&'static str, (usize, Stop)> {
        let (mode, consistency) = (self.mode, self.consistency);
        let Some(first) = tables.first() else {
            return Ok("none");
        };
        if mode == VerifyMode::None {
            return Ok("none");
        }
        let name = |table: &PlannedTable| format!("{}.{}", table.target_database, table.schema.name);
        let digests = |session: &Session, database: &str, in_snapshot: bool| {
            let request = DigestsRequest {
                database: database.to_string(),
                tables: tables.iter().map(|t| t.schema.clone()).collect(),
                mode,
                in_snapshot,
            };
            session.table_digests(request).map_err(|e| {
                let what = match tables {
                    [one] => name(one),
                    _ => format!("{} tables from {}", tables.len(), name(first)),
                };
                (0, host_failure(&format!("verifying {what}"), e))
            })
        };
        let on_target = digests(self.target, &first.target_database, false)?;
        // Under per-table consistency the source may have moved on since it was
        // read, so only what was copied can be compared with the target.
        let on_source = if consistency == Consistency::Global || mode == VerifyMode::Checksum {
            Some(digests(
                self.source,
                &first.source_database,
                consistency == Consistency::Global,
            )?)
        } else {
            None
        };
        let compare = Compare {
            mode,
            rows_must_match_source: consistency == Consistency::Global,
        };
        if let Some((offset, what)) = compare.first_mismatch(copied, &on_target, on_source.as_deref()) {
            let stop = Stop::Failed(
                ErrorCode::InternalError,
                format!("verification failed for {}: {what}", name(&tables[offset])),
            );
            return Err((offset, stop));
        }
        Ok(if mode == VerifyMode::Checksum {
            "checksum"
        } else {
            "count"
        })
    }
}

/// What must agree between a table's digests.
struct Compare {
    mode: VerifyMode,
    /// The source was read at one instant (global consistency), so its row
    /// count must still be the target's.
    rows_must_match_source: bool,
}

impl Compare {
    /// The first table whose digests disagree, and how: the target against
    /// what was copied, then the source (when read) against the target.
    fn first_mismatch(
        &self,
        copied: &[u64],
        on_target: &[Digest],
        on_source: Option<&[Digest]>,
    ) -> Option<(usize, String)> {
        on_target
            .iter()
            .zip(copied)
            .enumerate()
            .find_map(|(offset, (target, &rows))| {
                if target.rows != rows {
                    return Some((
                        offset,
                        format!("{rows} rows were copied but the target holds {}", target.rows),
                    ));
                }
                let source = on_source?.get(offset)?;
                if self.rows_must_match_source && source.rows != target.rows {
                    return Some((
                        offset,
                        format!("the source has {} rows, the target {}", source.rows, target.rows),
                    ));
                }
                (self.mode == VerifyMode::Checksum && source.checksum != target.checksum).then(|| {
                    (
                        offset,
                        format!(
                            "checksums differ (source {:?}, target {:?})",
                            source.checksum, target.checksum
                        ),
                    )
                })
            })
    }
}

/// Cuts the tables into runs verified together: consecutive tables of one
/// database pair, at most [`GROUP_TABLES`] of them, and no more once their
/// estimated bytes reach [`GROUP_BYTES`].
fn groups(tables: &[PlannedTable]) -> Vec<Range<usize>> {
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0u64;
    for (index, table) in tables.iter().enumerate() {
        let joins = groups.last().is_some_and(|group| {
            let first = &tables[group.start];
            group.len() < GROUP_TABLES
                && bytes < GROUP_BYTES
                && first.source_database == table.source_database
                && first.target_database == table.target_database
        });
        match groups.last_mut() {
            Some(group) if joins => {
                group.end = index + 1;
                bytes = bytes.saturating_add(table.schema.estimated_bytes);
            }
            _ => {
                groups.push(index..index + 1);
                bytes = table.schema.estimated_bytes;
            }
        }
    }
    groups
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

    fn table(database: &str, estimated_bytes: u64) -> PlannedTable {
        PlannedTable {
            database_index: 0,
            source_database: database.into(),
            target_database: format!("{database}_copy"),
            schema: dbferry_plugin_abi::protocol::TableSchema {
                name: "t".into(),
                estimated_bytes,
                ..Default::default()
            },
        }
    }

    #[test]
    fn small_tables_of_one_database_are_verified_together_and_big_ones_apart() {
        let mut tables: Vec<PlannedTable> = (0..GROUP_TABLES + 3).map(|_| table("a", 100)).collect();
        tables.push(table("b", 100));
        tables.push(table("b", GROUP_BYTES));
        tables.push(table("b", GROUP_BYTES));
        tables.push(table("b", 100));
        let n = GROUP_TABLES;
        assert_eq!(
            groups(&tables),
            vec![0..n, n..n + 3, n + 3..n + 5, n + 5..n + 6, n + 6..n + 7]
        );
        assert!(groups(&[]).is_empty());
    }

    fn digest(rows: u64, checksum: &str) -> Digest {
        Digest {
            rows,
            checksum: Some(checksum.into()),
        }
    }

    #[test]
    fn the_first_table_whose_digests_disagree_is_found_whatever_the_side() {
        let count = Compare {
            mode: VerifyMode::Count,
            rows_must_match_source: true,
        };
        let target = [digest(3, "a"), digest(5, "b"), digest(0, "c")];
        let agreeing = [digest(3, "a"), digest(5, "b"), digest(0, "c")];
        assert_eq!(count.first_mismatch(&[3, 5, 0], &target, Some(&agreeing)), None);
        // The target lost a row of the third table.
        let found = count.first_mismatch(&[3, 5, 1], &target, Some(&agreeing));
        assert_eq!(found.map(|f| f.0), Some(2));
        // The source has more rows in the second: earlier than the third.
        let source = [digest(3, "a"), digest(6, "b"), digest(0, "c")];
        let found = count.first_mismatch(&[3, 5, 1], &target, Some(&source));
        assert!(
            matches!(&found, Some((1, why)) if why.contains("source has 6")),
            "{found:?}"
        );
        // Per-table consistency: the source's counts may have moved on.
        let moved = Compare {
            rows_must_match_source: false,
            ..count
        };
        assert_eq!(moved.first_mismatch(&[3, 5, 0], &target, Some(&source)), None);
        assert_eq!(moved.first_mismatch(&[3, 5, 0], &target, None), None);
        // Checksums are compared only in checksum mode.
        let changed = [digest(3, "a"), digest(5, "x"), digest(0, "c")];
        assert_eq!(count.first_mismatch(&[3, 5, 0], &target, Some(&changed)), None);
        let checksum = Compare {
            mode: VerifyMode::Checksum,
            rows_must_match_source: false,
        };
        let found = checksum.first_mismatch(&[3, 5, 0], &target, Some(&changed));
        assert!(
            matches!(&found, Some((1, why)) if why.starts_with("checksums differ")),
            "{found:?}"
        );
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
