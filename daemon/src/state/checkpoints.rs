//! The copy core's checkpoint hook, backed by the store.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use dbferry_copy_core::{CheckpointStore, ChunkId, ChunkStats};

use super::{Store, StoreError};

/// Checkpoints of one import: committed chunks are read once at start, each
/// new one is written through before the copy moves on.
pub struct StoreCheckpoints<'a> {
    store: &'a Store,
    import_id: u64,
    committed: Mutex<HashSet<ChunkId>>,
}

impl<'a> StoreCheckpoints<'a> {
    /// Loads the committed chunks of `import_id`.
    pub fn load(store: &'a Store, import_id: u64) -> Result<Self, StoreError> {
        let committed = store.committed_chunks(import_id)?.into_iter().map(|(id, _)| id).collect();
        Ok(Self {
            store,
            import_id,
            committed: Mutex::new(committed),
        })
    }

    /// Whether any chunk was committed (the import resumes).
    pub fn any(&self) -> bool {
        !self.committed.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

impl CheckpointStore for StoreCheckpoints<'_> {
    fn is_committed(&self, id: ChunkId) -> bool {
        self.committed.lock().unwrap_or_else(PoisonError::into_inner).contains(&id)
    }

    fn record(&self, id: ChunkId, stats: ChunkStats) -> Result<(), String> {
        self.store.record_chunk(self.import_id, id, stats).map_err(|e| e.to_string())?;
        self.committed.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
        Ok(())
    }
}
