//! The verify phase: every table's row count (or checksum) on the target
//! against what was copied and against the source, several tables at once.
//!
//! With `verify = "checksum"`, a table copied in several chunks is compared
//! chunk by chunk: each side digests the chunk's key range, on several
//! lanes at once, and a mismatch names the range. Its row count is checked
//! whole, with the small tables, which are digested whole in groups. An
//! engine without range digests has its tables compared whole.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dbferry_copy_core::key::{KeyRange, KeyValue};
use dbferry_copy_core::plan::{ChunkId, ChunkTask};
use dbferry_copy_core::CancelToken;
use dbferry_plugin_abi::protocol::{Consistency, Digest, DigestsRequest, ErrorKind, RangeDigestsRequest, VerifyMode};
use dbferry_plugin_host::{HostError, Session};

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

/// The chunks of the copy, as verification sees them.
pub(super) struct Copied<'a> {
    /// Every chunk of the plan.
    pub chunks: &'a [ChunkTask],
    /// Chunks committed before this attempt (a resumed import): their
    /// content is not checked again, only their tables' counts.
    pub earlier: &'a HashSet<ChunkId>,
    /// Rows copied per table, by this attempt and the ones before it.
    pub rows: &'a [u64],
}

/// One lane's piece of work.
#[derive(Debug, PartialEq)]
enum Work {
    /// Consecutive tables of one database pair, digested whole in `mode`.
    Tables { tables: Range<usize>, mode: VerifyMode },
    /// Key ranges of one table, checksummed on both sides.
    Ranges { table: usize, ranges: Vec<KeyRange> },
}

impl Checks<'_> {
    /// Verifies every table, `lanes` pieces of work at a time, and returns
    /// their outcomes in table order; the first failure stops the rest.
    pub fn all(
        &self,
        tables: &[PlannedTable],
        copied: &Copied<'_>,
        lanes: usize,
        cancel: &CancelToken,
    ) -> Result<Vec<TableOutcome>, Stop> {
        let by_range = self.mode == VerifyMode::Checksum && self.ranges_supported(tables, copied.chunks)?;
        let work = plan(tables, copied, self.mode, by_range, lanes);
        let next = AtomicUsize::new(0);
        let stopped = AtomicBool::new(false);
        // Each worker returns what it verified, or the table it failed on.
        let worker = || -> WorkerResult {
            let mut done = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let Some(piece) = work.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    break;
                };
                let outcome = if cancel.is_cancelled() {
                    Err((first_table(piece), Stop::Cancelled))
                } else {
                    self.piece(tables, copied.rows, piece)
                };
                match outcome {
                    Ok(verified) => done.extend(verified),
                    Err(failure) => {
                        stopped.store(true, Ordering::SeqCst);
                        return Err(failure);
                    }
                }
            }
            Ok(done)
        };
        let results: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..lanes.clamp(1, work.len().max(1)))
                .map(|_| scope.spawn(worker))
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
        let how = self.label();
        tables
            .iter()
            .zip(copied.rows)
            .zip(verified)
            .map(|((table, &rows), done)| {
                Ok(TableOutcome {
                    database: table.target_database.clone(),
                    table: table.schema.name.clone(),
                    rows,
                    verified: if done { how } else { return Err(Stop::Cancelled) },
                })
            })
            .collect()
    }

    /// Compares one table's target with what was copied and with the source.
    pub fn table(&self, table: &PlannedTable, copied: u64) -> Result<&'static str, Stop> {
        self.group(std::slice::from_ref(table), &[copied], self.mode)
            .map_err(|(_, stop)| stop)?;
        Ok(self.label())
    }

    /// How a verified table was verified.
    fn label(&self) -> &'static str {
        match self.mode {
            VerifyMode::None => "none",
            VerifyMode::Count => "count",
            VerifyMode::Checksum => "checksum",
        }
    }

    /// Whether both engines digest key ranges: an empty request answers it.
    fn ranges_supported(&self, tables: &[PlannedTable], chunks: &[ChunkTask]) -> Result<bool, Stop> {
        let Some(table) = chunks
            .iter()
            .find(|c| !c.range.is_whole())
            .and_then(|c| tables.get(c.id.table as usize))
        else {
            return Ok(false);
        };
        for (session, database) in [
            (self.source, &table.source_database),
            (self.target, &table.target_database),
        ] {
            let asked = session.range_digests(RangeDigestsRequest {
                database: database.clone(),
                table: table.schema.clone(),
                ranges: Vec::new(),
                mode: self.mode,
                in_snapshot: false,
            });
            match asked {
                Ok(_) => {}
                Err(e) if unsupported(&e) => {
                    tracing::info!(
                        database = %database,
                        "an engine digests whole tables only: big tables are checksummed whole"
                    );
                    return Ok(false);
                }
                Err(e) => return Err(host_failure("asking whether the engines digest key ranges", e)),
            }
        }
        Ok(true)
    }

    /// Does one piece of work: the tables it verified, or the first that failed.
    fn piece(&self, tables: &[PlannedTable], copied: &[u64], piece: &Work) -> WorkerResult {
        match piece {
            Work::Tables { tables: range, mode } => {
                self.group(&tables[range.clone()], &copied[range.clone()], *mode)
                    .map_err(|(offset, stop)| (range.start + offset, stop))?;
                Ok(range.clone().collect())
            }
            Work::Ranges { table, ranges } => {
                self.ranges(&tables[*table], ranges).map_err(|stop| (*table, stop))?;
                Ok(Vec::new())
            }
        }
    }

    /// Compares key ranges of one table on both sides, the two at once.
    fn ranges(&self, table: &PlannedTable, ranges: &[KeyRange]) -> Result<(), Stop> {
        let name = format!("{}.{}", table.target_database, table.schema.name);
        let digests = |session: &Session, database: &str, in_snapshot: bool| {
            session
                .range_digests(RangeDigestsRequest {
                    database: database.to_string(),
                    table: table.schema.clone(),
                    ranges: ranges.to_vec(),
                    mode: VerifyMode::Checksum,
                    in_snapshot,
                })
                .map_err(|e| host_failure(&format!("verifying {name}, {}", describe(&ranges[0])), e))
        };
        let in_snapshot = self.consistency == Consistency::Global;
        let (on_target, on_source) = std::thread::scope(|scope| {
            let target = scope.spawn(|| digests(self.target, &table.target_database, false));
            let source = digests(self.source, &table.source_database, in_snapshot);
            let target = target.join().unwrap_or_else(|_| {
                Err(Stop::Failed(
                    ErrorCode::InternalError,
                    "a verification thread panicked".into(),
                ))
            });
            (target, source)
        });
        let (on_target, on_source) = (on_target?, on_source?);
        match first_range_mismatch(&on_source, &on_target) {
            Some((index, what)) => Err(Stop::Failed(
                ErrorCode::InternalError,
                format!("verification failed for {name}, {}: {what}", describe(&ranges[index])),
            )),
            None => Ok(()),
        }
    }

    /// Compares tables of one database pair, with one digest request per
    /// side; a failure comes with the offset of the first table that failed.
    fn group(&self, tables: &[PlannedTable], copied: &[u64], mode: VerifyMode) -> Result<(), (usize, Stop)> {
        let consistency = self.consistency;
        let Some(first) = tables.first() else {
            return Ok(());
        };
        if mode == VerifyMode::None {
            return Ok(());
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
        Ok(())
    }
}

/// Whether the engine answered that it has no such request.
fn unsupported(error: &HostError) -> bool {
    error.plugin_error().is_some_and(|e| e.kind == ErrorKind::Unsupported)
}

/// The first table a piece of work touches.
fn first_table(piece: &Work) -> usize {
    match piece {
        Work::Tables { tables, .. } => tables.start,
        Work::Ranges { table, .. } => *table,
    }
}

/// The first range whose digests differ between the sides, and how.
fn first_range_mismatch(on_source: &[Digest], on_target: &[Digest]) -> Option<(usize, String)> {
    on_source
        .iter()
        .zip(on_target)
        .enumerate()
        .find_map(|(index, (source, target))| {
            if source.rows != target.rows {
                Some((
                    index,
                    format!("the source has {} rows in it, the target {}", source.rows, target.rows),
                ))
            } else if source.checksum != target.checksum {
                Some((
                    index,
                    format!(
                        "checksums differ (source {:?}, target {:?})",
                        source.checksum, target.checksum
                    ),
                ))
            } else {
                None
            }
        })
}

/// A key range for people: `key (a, b) in ((1, 'x'), (5, 'y')]`.
fn describe(range: &KeyRange) -> String {
    let value = |v: &KeyValue| match v {
        KeyValue::Int(i) => i.to_string(),
        KeyValue::UInt(u) => u.to_string(),
        KeyValue::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b).escape_default()),
    };
    let tuple = |t: &[KeyValue]| match t {
        [one] => value(one),
        many => format!("({})", many.iter().map(value).collect::<Vec<_>>().join(", ")),
    };
    let columns = match range.columns.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    };
    match (&range.lower, &range.upper) {
        (None, None) => "the whole table".into(),
        (Some(lower), None) => format!("key {columns} > {}", tuple(lower)),
        (None, Some(upper)) => format!("key {columns} <= {}", tuple(upper)),
        (Some(lower), Some(upper)) => format!("key {columns} in ({}, {}]", tuple(lower), tuple(upper)),
    }
}

/// The work of the verify phase, biggest first: with `by_range`, each
/// chunk of a table copied in several (and copied by this attempt) is a
/// piece, checksummed apart, and its table is counted whole with the
/// others; the other tables go in groups, counted or checksummed whole.
fn plan(tables: &[PlannedTable], copied: &Copied<'_>, mode: VerifyMode, by_range: bool, lanes: usize) -> Vec<Work> {
    let mut chunks_of: Vec<Vec<&ChunkTask>> = vec![Vec::new(); tables.len()];
    for chunk in copied.chunks {
        if let Some(list) = chunks_of.get_mut(chunk.id.table as usize) {
            list.push(chunk);
        }
    }
    let mut ranged: Vec<(u64, Work)> = Vec::new();
    let mut modes = Vec::with_capacity(tables.len());
    for (index, chunks) in chunks_of.iter().enumerate() {
        let again: Vec<&&ChunkTask> = chunks.iter().filter(|c| !copied.earlier.contains(&c.id)).collect();
        let whole_mode = if mode != VerifyMode::Checksum {
            mode
        } else if by_range && chunks.len() > 1 {
            for chunk in again {
                ranged.push((
                    chunk.estimated_bytes,
                    Work::Ranges {
                        table: index,
                        ranges: vec![chunk.range.clone()],
                    },
                ));
            }
            VerifyMode::Count
        } else if !chunks.is_empty() && again.is_empty() {
            // Copied before this attempt: counted only.
            VerifyMode::Count
        } else {
            VerifyMode::Checksum
        };
        modes.push(whole_mode);
    }
    ranged.sort_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
    let mut work: Vec<Work> = ranged.into_iter().map(|(_, w)| w).collect();
    work.extend(groups(tables, &modes, lanes).into_iter().map(|range| Work::Tables {
        mode: modes[range.start],
        tables: range,
    }));
    work
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
/// database pair and one mode, at most [`GROUP_TABLES`] of them, and no
/// more once their estimated bytes reach [`GROUP_BYTES`] or a `lanes`th of
/// all the tables' bytes, so that every lane gets a share of the work. A
/// count weighs its table's bytes as a checksum does: the server reads the
/// whole table for either.
fn groups(tables: &[PlannedTable], modes: &[VerifyMode], lanes: usize) -> Vec<Range<usize>> {
    let total = tables
        .iter()
        .fold(0u64, |sum, t| sum.saturating_add(t.schema.estimated_bytes));
    let share = total / u64::try_from(lanes.max(1)).unwrap_or(1);
    let limit = GROUP_BYTES.min(share.max(1));
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0u64;
    for (index, table) in tables.iter().enumerate() {
        let joins = groups.last().is_some_and(|group| {
            let first = &tables[group.start];
            group.len() < GROUP_TABLES
                && bytes < limit
                && first.source_database == table.source_database
                && first.target_database == table.target_database
                && modes.get(group.start) == modes.get(index)
        });
        let weight = table.schema.estimated_bytes;
        match groups.last_mut() {
            Some(group) if joins => {
                group.end = index + 1;
                bytes = bytes.saturating_add(weight);
            }
            _ => {
                groups.push(index..index + 1);
                bytes = weight;
            }
        }
    }
    groups
}

/// The tables one worker verified whole, or the table it failed on.
type WorkerResult = Result<Vec<usize>, (usize, Stop)>;

/// Which tables the workers verified whole, in table order (a table whose
/// chunks were compared apart is also counted whole, so it is there too).
/// With failures, the earliest table's, as a serial run would report.
fn merge(tables: usize, results: Vec<WorkerResult>) -> Result<Vec<bool>, Stop> {
    let mut verified = vec![false; tables];
    let mut first_failure: Option<(usize, Stop)> = None;
    for result in results {
        match result {
            Ok(done) => done.into_iter().for_each(|index| verified[index] = true),
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
        let checksum = vec![VerifyMode::Checksum; tables.len()];
        assert_eq!(
            groups(&tables, &checksum, 1),
            vec![0..n, n..n + 3, n + 3..n + 5, n + 5..n + 6, n + 6..n + 7]
        );
        assert!(groups(&[], &[], 4).is_empty());
        // Counts weigh their tables' bytes too; a change of mode starts a group.
        let mut modes = vec![VerifyMode::Count; tables.len()];
        modes[1] = VerifyMode::Checksum;
        assert_eq!(
            groups(&tables, &modes, 1),
            vec![
                0..1,
                1..2,
                2..n + 2,
                n + 2..n + 3,
                n + 3..n + 5,
                n + 5..n + 6,
                n + 6..n + 7
            ]
        );
    }

    #[test]
    fn every_lane_gets_a_share_of_the_tables() {
        let tables = vec![table("a", 20 << 20), table("a", 20 << 20), table("a", 1), table("a", 1)];
        let counted = vec![VerifyMode::Count; tables.len()];
        assert_eq!(groups(&tables, &counted, 1), vec![0..2, 2..4]);
        assert_eq!(groups(&tables, &counted, 4), vec![0..1, 1..2, 2..4]);
        let unknown = vec![table("a", 0), table("a", 0)];
        assert_eq!(groups(&unknown, &counted[..2], 4), vec![0..2]);
    }

    fn chunk(table: u32, ordinal: u32, lower: Option<i64>, upper: Option<i64>) -> ChunkTask {
        ChunkTask {
            id: ChunkId { table, ordinal },
            range: KeyRange {
                columns: vec!["id".into()],
                lower: lower.map(|v| vec![KeyValue::Int(v)]),
                upper: upper.map(|v| vec![KeyValue::Int(v)]),
            },
            estimated_bytes: 10 + u64::from(ordinal),
        }
    }

    #[test]
    fn chunks_of_split_tables_are_checksummed_apart_and_their_tables_counted_whole() {
        let tables = vec![table("a", 100), table("a", 100), table("a", 100)];
        let chunks = vec![
            chunk(0, 0, None, None),
            chunk(1, 0, None, Some(10)),
            chunk(1, 1, Some(10), None),
            chunk(2, 0, None, None),
        ];
        let none = HashSet::new();
        let copied = Copied {
            chunks: &chunks,
            earlier: &none,
            rows: &[1, 2, 3],
        };
        let work = plan(&tables, &copied, VerifyMode::Checksum, true, 1);
        let ranges = |ordinal: usize| Work::Ranges {
            table: 1,
            ranges: vec![chunks[ordinal].range.clone()],
        };
        assert_eq!(
            work,
            vec![
                ranges(2),
                ranges(1),
                Work::Tables {
                    tables: 0..1,
                    mode: VerifyMode::Checksum
                },
                Work::Tables {
                    tables: 1..2,
                    mode: VerifyMode::Count
                },
                Work::Tables {
                    tables: 2..3,
                    mode: VerifyMode::Checksum
                },
            ]
        );
        // Without range digests every table is checksummed whole.
        let whole = plan(&tables, &copied, VerifyMode::Checksum, false, 1);
        assert_eq!(
            whole,
            vec![Work::Tables {
                tables: 0..3,
                mode: VerifyMode::Checksum
            }]
        );
        // Resumed: what an earlier attempt committed is only counted.
        let earlier: HashSet<ChunkId> = [chunks[0].id, chunks[1].id].into();
        let resumed = Copied {
            earlier: &earlier,
            ..copied
        };
        let work = plan(&tables, &resumed, VerifyMode::Checksum, true, 1);
        assert_eq!(
            work,
            vec![
                ranges(2),
                Work::Tables {
                    tables: 0..2,
                    mode: VerifyMode::Count
                },
                Work::Tables {
                    tables: 2..3,
                    mode: VerifyMode::Checksum
                },
            ]
        );
        // Counting never asks for ranges.
        let counted = plan(&tables, &copied, VerifyMode::Count, true, 1);
        assert_eq!(
            counted,
            vec![Work::Tables {
                tables: 0..3,
                mode: VerifyMode::Count
            }]
        );
    }

    #[test]
    fn a_range_mismatch_is_found_and_described() {
        let source = [digest(3, "a"), digest(5, "b")];
        assert_eq!(first_range_mismatch(&source, &source), None);
        let target = [digest(3, "a"), digest(5, "c")];
        let found = first_range_mismatch(&source, &target);
        assert!(
            matches!(&found, Some((1, why)) if why.starts_with("checksums differ")),
            "{found:?}"
        );
        let short = [digest(2, "a"), digest(5, "b")];
        assert!(matches!(first_range_mismatch(&source, &short), Some((0, _))));
        assert_eq!(describe(&chunk(0, 0, Some(10), Some(20)).range), "key id in (10, 20]");
        assert_eq!(describe(&chunk(0, 0, None, Some(20)).range), "key id <= 20");
        let composite = KeyRange {
            columns: vec!["a".into(), "b".into()],
            lower: Some(vec![KeyValue::UInt(1), KeyValue::Bytes(b"x'".to_vec())]),
            upper: None,
        };
        assert_eq!(describe(&composite), "key (a, b) > (1, 'x\\'')");
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
        let merged = merge(4, vec![Ok(vec![2, 0]), Ok(vec![1])]);
        assert!(matches!(merged.as_deref(), Ok([true, true, true, false])));
    }

    #[test]
    fn the_earliest_tables_failure_is_reported_whichever_worker_saw_it() {
        let merged = merge(6, vec![Err((5, failed("t5"))), Ok(vec![0]), Err((2, failed("t2")))]);
        assert!(matches!(merged, Err(Stop::Failed(_, m)) if m.ends_with("t2")));
    }
}
