//! The chunk planner: how a table is cut into key ranges.
//!
//! The planner decides *how many* chunks a table gets, from its estimated
//! size; the engine decides *where* the cuts go, because only it can read key
//! values in the key's own order and collation ([`KeySplitter`]).

use serde::{Deserialize, Serialize};

use crate::error::CopyError;
use crate::key::{KeyRange, KeyTuple};

/// What the planner knows about a table before copying it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableEstimate {
    /// Estimated row count (engine statistics; may be stale).
    pub rows: u64,
    /// Estimated data size in bytes.
    pub bytes: u64,
    /// The primary key, or a NOT NULL unique key, in key order. `None` for a
    /// table without one: it is streamed as one ordered unit.
    pub key: Option<Vec<String>>,
}

/// Finds cut points in a table's key order.
pub trait KeySplitter {
    /// Returns up to `parts - 1` ascending key tuples that cut the table into
    /// about `parts` slices of equal row count.
    fn split_points(&self, parts: u32) -> Result<Vec<KeyTuple>, String>;
}

/// Names a chunk for checkpoints: the table's position in the plan and the
/// chunk's ordinal within the table. Stable as long as the plan is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId {
    /// Index of the table in the caller's plan.
    pub table: u32,
    /// Ordinal of the chunk within its table, from 0.
    pub ordinal: u32,
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table {} chunk {}", self.table, self.ordinal)
    }
}

/// One unit of work: a key range of a table, copied in one target transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkTask {
    /// The chunk's identity.
    pub id: ChunkId,
    /// The slice of the table it covers.
    pub range: KeyRange,
    /// Estimated bytes, used to order work largest first.
    pub estimated_bytes: u64,
}

/// Cuts one table into chunks of about `chunk_bytes` each, at most
/// `max_chunks` of them. `allow_split = false` (for example when the source
/// cannot give one snapshot to several readers) keeps the table whole.
pub fn plan_table(
    table_index: u32,
    table_name: &str,
    estimate: &TableEstimate,
    chunk_bytes: u64,
    max_chunks: u32,
    allow_split: bool,
    splitter: &dyn KeySplitter,
) -> Result<Vec<ChunkTask>, CopyError> {
    let columns = estimate.key.clone().unwrap_or_default();
    let whole = |bytes| {
        vec![ChunkTask {
            id: ChunkId {
                table: table_index,
                ordinal: 0,
            },
            range: KeyRange::whole(columns.clone()),
            estimated_bytes: bytes,
        }]
    };
    let wanted = estimate
        .bytes
        .div_ceil(chunk_bytes.max(1))
        .min(u64::from(max_chunks.max(1)));
    if estimate.key.is_none() || !allow_split || wanted <= 1 {
        return Ok(whole(estimate.bytes));
    }
    let mut points = splitter
        .split_points(wanted as u32)
        .map_err(|message| CopyError::Plan {
            table: table_name.to_string(),
            message,
        })?;
    points.dedup();
    if points.is_empty() {
        return Ok(whole(estimate.bytes));
    }
    let per_chunk = estimate.bytes / (points.len() as u64 + 1);
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut lower: Option<KeyTuple> = None;
    for (ordinal, point) in points.into_iter().map(Some).chain(std::iter::once(None)).enumerate() {
        chunks.push(ChunkTask {
            id: ChunkId {
                table: table_index,
                ordinal: ordinal as u32,
            },
            range: KeyRange {
                columns: columns.clone(),
                lower: lower.clone(),
                upper: point.clone(),
            },
            estimated_bytes: per_chunk,
        });
        lower = point;
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyValue;

    struct Fixed(Vec<KeyTuple>);
    impl KeySplitter for Fixed {
        fn split_points(&self, _parts: u32) -> Result<Vec<KeyTuple>, String> {
            Ok(self.0.clone())
        }
    }

    fn keyed(bytes: u64) -> TableEstimate {
        TableEstimate {
            rows: 1000,
            bytes,
            key: Some(vec!["id".into()]),
        }
    }

    #[test]
    fn ranges_tile_the_key_space_without_gaps_or_overlap() {
        let points = vec![vec![KeyValue::Int(10)], vec![KeyValue::Int(20)]];
        let chunks = plan_table(3, "t", &keyed(300), 100, 64, true, &Fixed(points)).expect("plan");
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].range.lower, None);
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].range.upper, pair[1].range.lower);
        }
        assert_eq!(chunks[2].range.upper, None);
        assert!(chunks.iter().all(|c| c.id.table == 3));
    }

    #[test]
    fn keyless_small_or_unsplittable_tables_stay_whole() {
        let points = vec![vec![KeyValue::Int(1)]];
        let mut keyless = keyed(1 << 30);
        keyless.key = None;
        for (estimate, allow) in [(keyless, true), (keyed(10), true), (keyed(1 << 30), false)] {
            let chunks = plan_table(0, "t", &estimate, 100, 64, allow, &Fixed(points.clone())).expect("plan");
            assert_eq!(chunks.len(), 1);
            assert!(chunks[0].range.is_whole());
        }
    }

    #[test]
    fn repeated_cut_points_do_not_make_empty_chunks() {
        let p = vec![KeyValue::Bytes(b"m".to_vec())];
        let chunks = plan_table(0, "t", &keyed(1000), 100, 64, true, &Fixed(vec![p.clone(), p])).expect("plan");
        assert_eq!(chunks.len(), 2);
    }
}
