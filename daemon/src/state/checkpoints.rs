//! One import's plan and checkpoints, backed by the store.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use dbferry_copy_core::{CheckpointStore, ChunkId, ChunkStats};

use super::{Store, StoreError};

/// One import's plan and checkpoints: committed chunks are read once at
/// start, each new one is written through before the copy moves on.
pub struct StoredImport<'a> {
    store: &'a Store,
    import_id: u64,
    committed: Mutex<HashMap<ChunkId, ChunkStats>>,
}

impl<'a> StoredImport<'a> {
    /// Loads the committed chunks of `import_id`.
    pub fn load(store: &'a Store, import_id: u64) -> Result<Self, StoreError> {
        let committed = store.committed_chunks(import_id)?.into_iter().collect();
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

impl CheckpointStore for StoredImport<'_> {
    fn committed(&self, id: ChunkId) -> Option<ChunkStats> {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
    }

    fn record(&self, id: ChunkId, stats: ChunkStats) -> Result<(), String> {
        self.store
            .record_chunk(self.import_id, id, stats)
            .map_err(|e| e.to_string())?;
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, stats);
        Ok(())
    }
}

impl crate::import::ImportStore for StoredImport<'_> {
    fn load_plan(&self) -> Result<Option<crate::import::StoredPlan>, String> {
        self.store.load_plan(self.import_id).map_err(|e| e.to_string())
    }

    fn save_plan(&self, plan: &crate::import::StoredPlan) -> Result<(), String> {
        self.store.save_plan(self.import_id, plan).map_err(|e| e.to_string())
    }
}
