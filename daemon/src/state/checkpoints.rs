//! One import's plan and checkpoints, backed by the store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use dbferry_copy_core::{CheckpointStore, ChunkId, ChunkStats};

use super::{Store, StoreError};

/// One import's plan and checkpoints: committed chunks are read once at
/// start; new ones are buffered and written in one transaction per
/// [`CheckpointStore::flush`], which the pipeline calls every
/// [`dbferry_copy_core::FLUSH_INTERVAL`] and before it returns.
pub struct StoredImport<'a> {
    store: &'a Store,
    import_id: u64,
    committed: Mutex<HashMap<ChunkId, ChunkStats>>,
    /// Recorded but not yet written.
    unwritten: Mutex<Vec<(ChunkId, ChunkStats)>>,
    /// Held while writing: a flush that finds nothing left to take must
    /// still wait for the batch another flush is writing (or has put back
    /// after failing) before it may report every record durable.
    writing: Mutex<()>,
}

impl<'a> StoredImport<'a> {
    /// Loads the committed chunks of `import_id`.
    pub fn load(store: &'a Store, import_id: u64) -> Result<Self, StoreError> {
        let committed = store.committed_chunks(import_id)?.into_iter().collect();
        Ok(Self {
            store,
            import_id,
            committed: Mutex::new(committed),
            unwritten: Mutex::new(Vec::new()),
            writing: Mutex::new(()),
        })
    }

    /// Whether any chunk was committed (the import resumes).
    pub fn any(&self) -> bool {
        !self.committed.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    fn unwritten(&self) -> MutexGuard<'_, Vec<(ChunkId, ChunkStats)>> {
        self.unwritten.lock().unwrap_or_else(PoisonError::into_inner)
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
        self.unwritten().push((id, stats));
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, stats);
        Ok(())
    }

    fn flush(&self) -> Result<(), String> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let batch = std::mem::take(&mut *self.unwritten());
        if batch.is_empty() {
            return Ok(());
        }
        self.store.record_chunks(self.import_id, &batch).map_err(|error| {
            // Kept for the next flush: the chunks are committed on the target.
            self.unwritten().extend(batch);
            error.to_string()
        })
    }
}

impl crate::import::ImportStore for StoredImport<'_> {
    fn load_plan(&self) -> Result<Option<crate::import::StoredPlan>, String> {
        self.store.load_plan(self.import_id).map_err(|e| e.to_string())
    }

    fn save_plan(&self, plan: &crate::import::StoredPlan) -> Result<(), String> {
        self.store.save_plan(self.import_id, plan).map_err(|e| e.to_string())
    }

    fn forget_tables(&self, tables: &[u32]) -> Result<(), String> {
        self.flush()?;
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| !tables.contains(&id.table));
        self.store
            .forget_tables(self.import_id, tables)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(ordinal: u32) -> ChunkId {
        ChunkId { table: 1, ordinal }
    }

    #[test]
    fn recorded_chunks_are_durable_after_a_flush_and_only_then() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let id = super::super::tests::new_import(&store);
        let stored = StoredImport::load(&store, id)?;
        let stats = ChunkStats { rows: 1, bytes: 2 };
        std::thread::scope(|scope| {
            for lane in 0..4u32 {
                let stored = &stored;
                scope.spawn(move || {
                    for n in 0..50 {
                        assert_eq!(stored.record(chunk(lane * 100 + n), stats), Ok(()));
                    }
                });
            }
        });
        assert!(stored.committed(chunk(349)).is_some(), "committed at once in memory");
        assert_eq!(Store::open(dir.path())?.committed_chunks(id)?.len(), 0);
        stored.flush()?;
        let reopened = Store::open(dir.path())?;
        assert_eq!(reopened.committed_chunks(id)?.len(), 200);
        assert_eq!(StoredImport::load(&reopened, id)?.committed(chunk(349)), Some(stats));
        Ok(())
    }
}
