//! Checkpoints: which chunks are committed on the target.
//!
//! The pipeline calls [`CheckpointStore::record`] only after a chunk's target
//! transaction committed. A crash between that commit and the record leaves
//! the chunk unrecorded, so on resume it is copied again with
//! `redo = true`: the writer must first remove the chunk's key range, which
//! makes the retry idempotent.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::plan::ChunkId;

/// Rows and bytes moved by one committed chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Rows written.
    pub rows: u64,
    /// Payload bytes written.
    pub bytes: u64,
}

/// The caller's durable record of committed chunks.
pub trait CheckpointStore: Send + Sync {
    /// The stats of a committed chunk; `None` if it is not committed.
    fn committed(&self, id: ChunkId) -> Option<ChunkStats>;
    /// Whether the chunk is committed.
    fn is_committed(&self, id: ChunkId) -> bool {
        self.committed(id).is_some()
    }
    /// Records that the chunk's transaction committed. An error stops the copy.
    fn record(&self, id: ChunkId, stats: ChunkStats) -> Result<(), String>;
}

/// An in-memory store: enough for one `dbferry run`, and for tests.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    done: Mutex<HashMap<ChunkId, ChunkStats>>,
}

impl MemoryCheckpoints {
    /// The committed chunks and their stats.
    pub fn all(&self) -> HashMap<ChunkId, ChunkStats> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl CheckpointStore for MemoryCheckpoints {
    fn committed(&self, id: ChunkId) -> Option<ChunkStats> {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
    }

    fn record(&self, id: ChunkId, stats: ChunkStats) -> Result<(), String> {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, stats);
        Ok(())
    }
}
