//! Small whole chunks copied as groups, and everything a group leaves to
//! the one-by-one path.

use super::*;
use dbferry_copy_core::{GroupOutcomes, GroupPayload, KeyTuple};

/// An engine on both sides: every chunk is one row of `row_len` bytes.
/// Group reads stop before `max_bytes`; group writes fail `fail_in_group`.
struct Grouping {
    row_len: usize,
    groups: bool,
    fail_in_group: Option<ChunkId>,
    /// Chunks per group read.
    group_reads: Mutex<Vec<usize>>,
    /// Chunks committed by a group write.
    in_groups: Mutex<Vec<ChunkId>>,
    /// Chunks written on their own, with `redo`.
    alone: Mutex<HashMap<ChunkId, bool>>,
}

impl Grouping {
    fn new(row_len: usize, groups: bool, fail_in_group: Option<ChunkId>) -> &'static Self {
        Box::leak(Box::new(Self {
            row_len,
            groups,
            fail_in_group,
            group_reads: Mutex::default(),
            in_groups: Mutex::default(),
            alone: Mutex::default(),
        }))
    }
}

struct OneRow {
    left: Option<Bytes>,
}

impl BatchReader for OneRow {
    fn next(&mut self) -> Result<ReadOutcome, BoxError> {
        Ok(match self.left.take() {
            Some(data) => ReadOutcome::Batch { data, rows: 1 },
            None => ReadOutcome::End,
        })
    }
}

struct AloneWriter {
    engine: &'static Grouping,
    id: ChunkId,
    redo: bool,
    rows: u64,
}

impl BatchWriter for AloneWriter {
    fn write(&mut self, _data: Bytes, rows: u64) -> Result<(), BoxError> {
        self.rows += rows;
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<ChunkStats, BoxError> {
        self.engine.alone.lock().expect("lock").insert(self.id, self.redo);
        Ok(ChunkStats {
            rows: self.rows,
            bytes: 0,
        })
    }
    fn abort(self: Box<Self>) {}
}

impl ChunkSource for &'static Grouping {
    fn open(&self, _chunk: &ChunkTask) -> Result<Box<dyn BatchReader>, BoxError> {
        Ok(Box::new(OneRow {
            left: Some(Bytes::from(vec![1u8; self.row_len])),
        }))
    }

    fn read_group(&self, chunks: &[&ChunkTask], max_bytes: u64) -> Result<Option<GroupPayload>, BoxError> {
        if !self.groups {
            return Ok(None);
        }
        let fit = (max_bytes / self.row_len as u64) as usize;
        let read = chunks.len().min(fit.saturating_sub(1));
        self.group_reads.lock().expect("lock").push(chunks.len());
        let part = ChunkStats {
            rows: 1,
            bytes: self.row_len as u64,
        };
        Ok(Some(GroupPayload {
            data: Bytes::from(vec![1u8; self.row_len * read]),
            parts: vec![part; read],
        }))
    }
}

impl ChunkSink for &'static Grouping {
    fn open(&self, chunk: &ChunkTask, redo: bool) -> Result<Box<dyn BatchWriter>, BoxError> {
        Ok(Box::new(AloneWriter {
            engine: self,
            id: chunk.id,
            redo,
            rows: 0,
        }))
    }

    fn write_group(&self, chunks: &[&ChunkTask], payload: GroupPayload) -> Result<Option<GroupOutcomes>, BoxError> {
        assert_eq!(payload.parts.len(), chunks.len(), "a part per chunk");
        let mut in_groups = self.in_groups.lock().expect("lock");
        Ok(Some(
            chunks
                .iter()
                .map(|chunk| {
                    if Some(chunk.id) == self.fail_in_group {
                        return Err("the target refused this table".into());
                    }
                    in_groups.push(chunk.id);
                    Ok(1)
                })
                .collect(),
        ))
    }
}

fn grouped(group_chunks: usize, inline_chunk_bytes: u64) -> CopySettings {
    CopySettings {
        group_chunks,
        inline_chunk_bytes,
        ..settings(2, 1 << 20)
    }
}

fn copy(engine: &'static Grouping, chunks: &[ChunkTask], settings: &CopySettings) -> (CopyReport, MemoryCheckpoints) {
    let store = MemoryCheckpoints::default();
    let report = run_copy(
        chunks,
        settings,
        &engine,
        &engine,
        &store,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("copy");
    (report, store)
}

#[test]
fn small_whole_chunks_go_in_groups_and_a_chunk_that_fails_in_one_is_redone_alone() {
    let failing = ChunkId { table: 7, ordinal: 0 };
    let engine = Grouping::new(10, true, Some(failing));
    let (report, store) = copy(engine, &chunks(40, 1), &grouped(8, 1 << 20));
    assert_eq!((report.rows, report.chunks_copied), (40, 40));
    assert_eq!(store.all().len(), 40, "every chunk is checkpointed");
    let reads = engine.group_reads.lock().expect("lock").clone();
    assert_eq!(
        reads.iter().sum::<usize>(),
        40,
        "every chunk went in a group: {reads:?}"
    );
    assert!(
        reads.iter().all(|&n| n <= 8),
        "groups hold at most group_chunks: {reads:?}"
    );
    assert_eq!(engine.in_groups.lock().expect("lock").len(), 39);
    let alone = engine.alone.lock().expect("lock").clone();
    assert_eq!(
        alone,
        HashMap::from([(failing, true)]),
        "only the failed chunk goes alone, as a redo"
    );
}

#[test]
fn what_a_full_group_leaves_unread_is_copied_alone_without_redo() {
    // 300-byte rows and groups of at most 2 x 1,000 bytes: six chunks fit by
    // estimate, so two groups, but each read stops after five.
    let engine = Grouping::new(300, true, None);
    let mut small = chunks(12, 1);
    for chunk in &mut small {
        chunk.estimated_bytes = 300;
    }
    let (report, store) = copy(engine, &small, &grouped(64, 1000));
    assert_eq!((report.rows, store.all().len()), (12, 12));
    let alone = engine.alone.lock().expect("lock").clone();
    let in_groups = engine.in_groups.lock().expect("lock").len();
    assert_eq!(engine.group_reads.lock().expect("lock").clone(), [6, 6]);
    assert_eq!((in_groups, alone.len()), (10, 2), "{alone:?} alone");
    assert!(
        alone.values().all(|&redo| !redo),
        "unread chunks were never written: {alone:?}"
    );
}

#[test]
fn without_group_support_split_or_resumed_chunks_every_chunk_goes_alone() {
    let no_support = Grouping::new(10, false, None);
    let (report, _) = copy(no_support, &chunks(10, 1), &grouped(8, 1 << 20));
    assert_eq!(report.rows, 10);
    assert_eq!(no_support.alone.lock().expect("lock").len(), 10);

    let split = Grouping::new(10, true, None);
    let mut slices = chunks(1, 6);
    for (i, chunk) in slices.iter_mut().enumerate() {
        chunk.range.upper = Some(KeyTuple::default());
        chunk.range.lower = (i > 0).then(KeyTuple::default);
    }
    copy(split, &slices, &grouped(8, 1 << 20));
    assert!(
        split.group_reads.lock().expect("lock").is_empty(),
        "slices of a table are never grouped"
    );

    let resumed = Grouping::new(10, true, None);
    let settings = CopySettings {
        resumed: true,
        ..grouped(8, 1 << 20)
    };
    copy(resumed, &chunks(10, 1), &settings);
    assert!(
        resumed.group_reads.lock().expect("lock").is_empty(),
        "a resumed copy redoes chunk by chunk"
    );
    assert!(resumed.alone.lock().expect("lock").values().all(|&redo| redo));
}
