//! The pipeline against in-memory engines: backpressure, the memory bound,
//! cancellation latency, checkpoints and resume, error propagation, and
//! small chunks copied in groups.

#[path = "pipeline/groups.rs"]
mod groups;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dbferry_copy_core::error::BoxError;
use dbferry_copy_core::{
    run_copy, BatchReader, BatchWriter, CancelToken, CheckpointStore, ChunkId, ChunkSink, ChunkSource, ChunkStats,
    ChunkTask, CopyError, CopyReport, CopySettings, KeyRange, MemoryCheckpoints, ProgressSink, ReadOutcome,
};

/// A source whose every chunk is `batches` batches of `batch_len` bytes, one row each.
struct Source {
    batches: u64,
    batch_len: usize,
    produced: Arc<AtomicU64>,
    fail_on: Option<ChunkId>,
}

struct Reader {
    left: u64,
    len: usize,
    produced: Arc<AtomicU64>,
    fail: bool,
}

impl BatchReader for Reader {
    fn next(&mut self) -> Result<ReadOutcome, BoxError> {
        if self.fail {
            return Err("source exploded".into());
        }
        if self.left == 0 {
            return Ok(ReadOutcome::End);
        }
        self.left -= 1;
        self.produced.fetch_add(1, Ordering::SeqCst);
        Ok(ReadOutcome::Batch {
            data: Bytes::from(vec![7u8; self.len]),
            rows: 1,
        })
    }
}

impl ChunkSource for Source {
    fn open(&self, chunk: &ChunkTask) -> Result<Box<dyn BatchReader>, BoxError> {
        Ok(Box::new(Reader {
            left: self.batches,
            len: self.batch_len,
            produced: self.produced.clone(),
            fail: self.fail_on == Some(chunk.id),
        }))
    }
}

/// A target that sleeps per batch and records what each chunk committed.
#[derive(Default)]
struct Sink {
    delay: Duration,
    committed: Mutex<HashMap<ChunkId, (u64, bool)>>,
    consumed: Arc<AtomicU64>,
}

struct Writer<'a> {
    sink: &'a Sink,
    id: ChunkId,
    redo: bool,
    rows: u64,
}

impl BatchWriter for Writer<'static> {
    fn write(&mut self, _data: Bytes, rows: u64) -> Result<(), BoxError> {
        std::thread::sleep(self.sink.delay);
        self.sink.consumed.fetch_add(1, Ordering::SeqCst);
        self.rows += rows;
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<ChunkStats, BoxError> {
        self.sink
            .committed
            .lock()
            .expect("lock")
            .insert(self.id, (self.rows, self.redo));
        Ok(ChunkStats {
            rows: self.rows,
            bytes: 0,
        })
    }
    fn abort(self: Box<Self>) {}
}

impl ChunkSink for &'static Sink {
    fn open(&self, chunk: &ChunkTask, redo: bool) -> Result<Box<dyn BatchWriter>, BoxError> {
        Ok(Box::new(Writer {
            sink: self,
            id: chunk.id,
            redo,
            rows: 0,
        }))
    }
}

struct NoProgress;
impl ProgressSink for NoProgress {
    fn batch_written(&self, _: ChunkId, _: u64, _: u64) {}
    fn chunk_committed(&self, _: ChunkId, _: ChunkStats) {}
}

fn chunks(tables: u32, per_table: u32) -> Vec<ChunkTask> {
    (0..tables)
        .flat_map(|table| {
            (0..per_table).map(move |ordinal| ChunkTask {
                id: ChunkId { table, ordinal },
                range: KeyRange::default(),
                estimated_bytes: 1,
            })
        })
        .collect()
}

fn settings(lanes: usize, budget: u64) -> CopySettings {
    CopySettings {
        lanes,
        queue_depth: 2,
        memory_budget: budget,
        max_bytes_per_sec: 0,
        resumed: false,
        retries: 0,
        inline_chunk_bytes: 0,
        group_chunks: 1,
    }
}

/// The same settings with chunks handed to the lane's reader thread, then read inline.
fn both_ways(lanes: usize, budget: u64) -> [CopySettings; 2] {
    let inline = CopySettings {
        inline_chunk_bytes: u64::MAX,
        ..settings(lanes, budget)
    };
    [settings(lanes, budget), inline]
}

fn source(batches: u64, batch_len: usize) -> Source {
    Source {
        batches,
        batch_len,
        produced: Arc::default(),
        fail_on: None,
    }
}

/// Runs `copy`, cancels it after `delay`, and returns its result and how
/// long it took to stop once cancelled.
fn cancelled_after(
    delay: Duration,
    copy: impl FnOnce(&CancelToken) -> Result<CopyReport, CopyError> + Send,
) -> (Result<CopyReport, CopyError>, Duration) {
    let cancel = CancelToken::new();
    std::thread::scope(|s| {
        let copying = s.spawn(|| copy(&cancel));
        std::thread::sleep(delay);
        let cancelled_at = Instant::now();
        cancel.cancel();
        let result = copying.join().expect("copy thread");
        (result, cancelled_at.elapsed())
    })
}

fn leak(sink: Sink) -> &'static Sink {
    Box::leak(Box::new(sink))
}

#[test]
fn every_chunk_is_copied_once_and_checkpointed() {
    let sink = leak(Sink::default());
    let store = MemoryCheckpoints::default();
    let report = run_copy(
        &chunks(3, 4),
        &settings(4, 1 << 20),
        &source(5, 100),
        &sink,
        &store,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("copy");
    assert_eq!(report.rows, 60);
    assert_eq!(report.chunks_copied, 12);
    assert_eq!(store.all().len(), 12);
    assert!(sink
        .committed
        .lock()
        .expect("lock")
        .values()
        .all(|&(rows, redo)| rows == 5 && !redo));
}

/// Records, in order, the chunks committed and the tables reported copied.
#[derive(Default)]
struct Events(Mutex<Vec<(u32, Option<u32>)>>);

impl ProgressSink for Events {
    fn batch_written(&self, _: ChunkId, _: u64, _: u64) {}
    fn chunk_committed(&self, id: ChunkId, _: ChunkStats) {
        self.0.lock().expect("lock").push((id.table, Some(id.ordinal)));
    }
    fn table_copied(&self, table: u32) {
        self.0.lock().expect("lock").push((table, None));
    }
}

#[test]
fn a_table_is_reported_copied_once_after_its_last_chunk_commits() {
    let store = MemoryCheckpoints::default();
    // A resumed copy: table 0 was all committed before, table 1 in part.
    for id in [(0, 0), (0, 1), (1, 0)] {
        let id = ChunkId {
            table: id.0,
            ordinal: id.1,
        };
        store.record(id, ChunkStats { rows: 5, bytes: 0 }).expect("record");
    }
    let events = Events::default();
    run_copy(
        &chunks(3, 2),
        &settings(2, 1 << 20),
        &source(5, 100),
        &leak(Sink::default()),
        &store,
        &events,
        &CancelToken::new(),
    )
    .expect("copy");
    let events = events.0.into_inner().expect("lock");
    let copied: Vec<u32> = events
        .iter()
        .filter(|(_, chunk)| chunk.is_none())
        .map(|(t, _)| *t)
        .collect();
    let mut sorted = copied.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2], "each table with chunks to copy, once: {events:?}");
    for table in copied {
        let reported = events.iter().position(|e| *e == (table, None)).expect("reported");
        let last_commit = events
            .iter()
            .rposition(|(t, c)| *t == table && c.is_some())
            .expect("committed");
        assert!(
            last_commit < reported,
            "table {table} reported before its last chunk: {events:?}"
        );
    }
}

/// How many batches the reader got ahead of a slow writer on one chunk.
fn reader_lead(settings: &CopySettings) -> u64 {
    let sink = leak(Sink {
        delay: Duration::from_millis(20),
        ..Sink::default()
    });
    let src = source(40, 1000);
    let produced = src.produced.clone();
    let consumed = sink.consumed.clone();
    let watcher_done = Arc::new(AtomicBool::new(false));
    let max_lead = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, lead) = (watcher_done.clone(), max_lead.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let ahead = produced
                    .load(Ordering::SeqCst)
                    .saturating_sub(consumed.load(Ordering::SeqCst));
                lead.fetch_max(ahead, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let report = run_copy(
        &chunks(1, 1),
        settings,
        &src,
        &sink,
        &MemoryCheckpoints::default(),
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("copy");
    assert_eq!(report.rows, 40);
    watcher_done.store(true, Ordering::SeqCst);
    watcher.join().expect("watcher");
    max_lead.load(Ordering::SeqCst)
}

#[test]
fn a_slow_target_holds_the_reader_back() {
    let lead = reader_lead(&settings(1, 1 << 20));
    // queue_depth 2, plus one batch held by the reader and one by the writer.
    assert!((2..=4).contains(&lead), "reader ran {lead} batches ahead");
}

#[test]
fn a_small_chunk_is_read_and_written_in_turn_on_the_lane_thread() {
    let mut inline = settings(1, 1 << 20);
    inline.inline_chunk_bytes = 1;
    let lead = reader_lead(&inline);
    assert!(lead <= 1, "reader ran {lead} batches ahead");
}

#[test]
fn queued_memory_stays_under_the_budget_but_an_oversized_batch_passes() {
    let sink = leak(Sink {
        delay: Duration::from_millis(1),
        ..Sink::default()
    });
    for settings in both_ways(4, 64 << 10) {
        let report = run_copy(
            &chunks(4, 2),
            &settings,
            &source(20, 16 << 10),
            &sink,
            &MemoryCheckpoints::default(),
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("copy");
        assert!(
            report.peak_queued_bytes <= 64 << 10,
            "peak {}",
            report.peak_queued_bytes
        );
        assert_eq!(report.rows, 160);
    }

    let wide = leak(Sink::default());
    let report = run_copy(
        &chunks(1, 1),
        &settings(2, 1 << 20),
        &source(1, 64 << 20),
        &wide,
        &MemoryCheckpoints::default(),
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("a 64 MiB batch passes a 1 MiB budget");
    assert_eq!(report.rows, 1);
}

#[test]
fn cancellation_stops_within_a_second_and_keeps_committed_checkpoints() {
    for settings in both_ways(2, 1 << 20) {
        let sink = leak(Sink {
            delay: Duration::from_millis(50),
            ..Sink::default()
        });
        let store = MemoryCheckpoints::default();
        let started = Instant::now();
        let (result, stopping) = cancelled_after(Duration::from_millis(800), |cancel| {
            run_copy(
                &chunks(1, 100),
                &settings,
                &source(4, 10),
                &sink,
                &store,
                &NoProgress,
                cancel,
            )
        });
        assert!(stopping < Duration::from_secs(1), "took {stopping:?} to stop");
        assert!(matches!(result, Err(CopyError::Cancelled)), "{result:?}");
        let done = store.all().len();
        assert!(done > 0 && done < 100, "{done} chunks committed");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// A store that, like the daemon's, makes records durable only on flush.
#[derive(Default)]
struct Buffered {
    recorded: Mutex<Vec<ChunkId>>,
    durable: Mutex<Vec<ChunkId>>,
    flushes_with_work: AtomicU64,
}

impl CheckpointStore for Buffered {
    fn committed(&self, id: ChunkId) -> Option<ChunkStats> {
        let recorded = self.recorded.lock().expect("recorded");
        recorded.contains(&id).then_some(ChunkStats::default())
    }

    fn record(&self, id: ChunkId, _: ChunkStats) -> Result<(), String> {
        self.recorded.lock().expect("recorded").push(id);
        Ok(())
    }

    fn flush(&self) -> Result<(), String> {
        let recorded = self.recorded.lock().expect("recorded");
        let mut durable = self.durable.lock().expect("durable");
        if durable.len() < recorded.len() {
            self.flushes_with_work.fetch_add(1, Ordering::Relaxed);
            *durable = recorded.clone();
        }
        Ok(())
    }
}

#[test]
fn checkpoints_are_flushed_while_copying_and_all_of_them_when_cancelled() {
    let sink = leak(Sink {
        delay: Duration::from_millis(20),
        ..Sink::default()
    });
    let store = Buffered::default();
    let (result, _) = cancelled_after(Duration::from_millis(800), |cancel| {
        run_copy(
            &chunks(1, 200),
            &settings(2, 1 << 20),
            &source(2, 10),
            &sink,
            &store,
            &NoProgress,
            cancel,
        )
    });
    assert!(matches!(result, Err(CopyError::Cancelled)), "{result:?}");
    let recorded = store.recorded.lock().expect("recorded").len();
    assert!(recorded > 0 && recorded < 200, "{recorded} chunks committed");
    assert_eq!(
        store.durable.lock().expect("durable").len(),
        recorded,
        "every record flushed"
    );
    let flushes = store.flushes_with_work.load(Ordering::Relaxed);
    assert!(flushes >= 5, "flushed {flushes} times in 800 ms: not periodic");
    assert!(
        (flushes as usize) < recorded,
        "{flushes} flushes for {recorded} chunks: not batched"
    );
}

#[test]
fn a_resumed_copy_skips_committed_chunks_and_redoes_the_rest() {
    let store = MemoryCheckpoints::default();
    for ordinal in 0..3 {
        store
            .record(ChunkId { table: 0, ordinal }, ChunkStats { rows: 5, bytes: 0 })
            .expect("record");
    }
    let sink = leak(Sink::default());
    let mut resumed = settings(2, 1 << 20);
    resumed.resumed = true;
    let report = run_copy(
        &chunks(1, 5),
        &resumed,
        &source(5, 10),
        &sink,
        &store,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("copy");
    assert_eq!((report.chunks_skipped, report.chunks_copied), (3, 2));
    let committed = sink.committed.lock().expect("lock");
    assert_eq!(committed.len(), 2, "committed chunks are not written again");
    assert!(
        committed.values().all(|&(_, redo)| redo),
        "unrecorded chunks may be partly on the target"
    );
    assert_eq!(store.all().len(), 5);
}

#[test]
fn the_first_error_stops_every_lane_and_is_reported() {
    for settings in both_ways(3, 1 << 20) {
        let sink = leak(Sink {
            delay: Duration::from_millis(5),
            ..Sink::default()
        });
        let mut src = source(5, 10);
        src.fail_on = Some(ChunkId { table: 0, ordinal: 3 });
        let store = MemoryCheckpoints::default();
        let result = run_copy(
            &chunks(1, 200),
            &settings,
            &src,
            &sink,
            &store,
            &NoProgress,
            &CancelToken::new(),
        );
        match result {
            Err(CopyError::Read { source, .. }) => assert!(source.to_string().contains("exploded")),
            other => panic!("expected the read error, got {other:?}"),
        }
        assert!(store.all().len() < 200, "the other lanes stopped");
        assert!(!store.is_committed(ChunkId { table: 0, ordinal: 3 }));
    }
}

/// A target whose first attempt at every chunk fails after one batch.
#[derive(Default)]
struct Flaky {
    attempts: Mutex<HashMap<ChunkId, u32>>,
    always: bool,
    committed: Mutex<HashMap<ChunkId, (u64, bool)>>,
}

struct FlakyWriter {
    sink: &'static Flaky,
    id: ChunkId,
    redo: bool,
    fail: bool,
    rows: u64,
}

impl BatchWriter for FlakyWriter {
    fn write(&mut self, _data: Bytes, rows: u64) -> Result<(), BoxError> {
        if self.fail {
            return Err("deadlock found when trying to get lock".into());
        }
        self.rows += rows;
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<ChunkStats, BoxError> {
        self.sink
            .committed
            .lock()
            .expect("lock")
            .insert(self.id, (self.rows, self.redo));
        Ok(ChunkStats {
            rows: self.rows,
            bytes: 0,
        })
    }
    fn abort(self: Box<Self>) {}
}

impl ChunkSink for &'static Flaky {
    fn open(&self, chunk: &ChunkTask, redo: bool) -> Result<Box<dyn BatchWriter>, BoxError> {
        let mut attempts = self.attempts.lock().expect("lock");
        let n = attempts.entry(chunk.id).or_default();
        *n += 1;
        let fail = self.always || *n == 1;
        Ok(Box::new(FlakyWriter {
            sink: self,
            id: chunk.id,
            redo,
            fail,
            rows: 0,
        }))
    }
}

#[test]
fn a_transiently_failing_chunk_is_redone_and_a_persistent_failure_still_fails() {
    let flaky: &'static Flaky = Box::leak(Box::default());
    let mut retrying = settings(2, 1 << 20);
    retrying.retries = 2;
    let report = run_copy(
        &chunks(1, 3),
        &retrying,
        &source(3, 10),
        &flaky,
        &MemoryCheckpoints::default(),
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("each chunk succeeds on its second attempt");
    assert_eq!(report.rows, 9);
    let committed = flaky.committed.lock().expect("lock");
    assert!(
        committed.values().all(|&(rows, redo)| rows == 3 && redo),
        "a retry replaces the range: {committed:?}"
    );

    let broken: &'static Flaky = Box::leak(Box::new(Flaky {
        always: true,
        ..Flaky::default()
    }));
    let result = run_copy(
        &chunks(1, 1),
        &retrying,
        &source(3, 10),
        &broken,
        &MemoryCheckpoints::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    assert!(matches!(result, Err(CopyError::Write { .. })), "{result:?}");
    assert_eq!(
        broken
            .attempts
            .lock()
            .expect("lock")
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![3],
        "1 try + 2 retries"
    );
}
