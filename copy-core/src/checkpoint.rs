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
    /// Whether the chunk was committed in an earlier (interrupted) run.
    fn is_committed(&self, id: ChunkId) -> bool;
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
    pub fn committed(&self) -> HashMap<ChunkId, ChunkStats> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl CheckpointStore for MemoryCheckpoints {
    fn is_committed(&self, id: ChunkId) -> bool {
        self.done.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&id)
    }

    fn record(&self, id: ChunkId, stats: ChunkStats) -> Result<(), String> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner).insert(id, stats);
        Ok(())
    }
}
