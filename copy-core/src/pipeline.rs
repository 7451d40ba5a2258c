//! The copy pipeline: lanes of reader → bounded queue → writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use crossbeam_channel::{RecvTimeoutError, SendTimeoutError};

use crate::budget::{MemoryBudget, MemoryPermit};
use crate::cancel::{CancelToken, POLL_INTERVAL};
use crate::checkpoint::{CheckpointStore, ChunkStats, FLUSH_INTERVAL};
use crate::error::{BoxError, CopyError};
use crate::plan::{ChunkId, ChunkTask};
use crate::rate::RateLimiter;

/// What a reader produced.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Encoded rows, ready for the target.
    Batch {
        /// The payload, in the target's ingest format.
        data: Bytes,
        /// How many rows it holds.
        rows: u64,
    },
    /// Nothing yet; ask again. Lets a slow source be cancelled promptly.
    Idle,
    /// The chunk is fully read.
    End,
}

/// Reads one chunk from the source.
pub trait BatchReader: Send {
    /// The next batch of the chunk.
    fn next(&mut self) -> Result<ReadOutcome, BoxError>;
}

/// Writes one chunk to the target inside one transaction.
pub trait BatchWriter: Send {
    /// Appends a batch to the chunk's transaction.
    fn write(&mut self, data: Bytes, rows: u64) -> Result<(), BoxError>;
    /// Commits the chunk.
    fn commit(self: Box<Self>) -> Result<ChunkStats, BoxError>;
    /// Rolls the chunk back.
    fn abort(self: Box<Self>);
}

/// Several small chunks read in one exchange.
#[derive(Debug)]
pub struct GroupPayload {
    /// Their payloads, back to back.
    pub data: Bytes,
    /// Each chunk's bytes and rows, in order: a prefix of the chunks asked for.
    pub parts: Vec<ChunkStats>,
}

/// One outcome per chunk of a group write: the rows committed, or why the
/// chunk must be written again on its own.
pub type GroupOutcomes = Vec<Result<u64, BoxError>>;

/// Opens readers on the source.
pub trait ChunkSource: Send + Sync {
    /// Starts reading `chunk`.
    fn open(&self, chunk: &ChunkTask) -> Result<Box<dyn BatchReader>, BoxError>;

    /// Reads whole small `chunks` in one exchange, at most about `max_bytes`
    /// in all: the chunk that would cross it and the ones after it are left
    /// unread. `None` when the source cannot; the chunks are then read one
    /// by one.
    fn read_group(&self, chunks: &[&ChunkTask], max_bytes: u64) -> Result<Option<GroupPayload>, BoxError> {
        let _ = (chunks, max_bytes);
        Ok(None)
    }
}

/// Opens writers on the target.
pub trait ChunkSink: Send + Sync {
    /// Starts writing `chunk`. With `redo`, the chunk may already be (partly)
    /// on the target from an interrupted run, and the writer must replace it.
    fn open(&self, chunk: &ChunkTask, redo: bool) -> Result<Box<dyn BatchWriter>, BoxError>;

    /// Writes what [`ChunkSource::read_group`] read: whole chunks written for
    /// the first time, each committing on its own. An error, for the group
    /// or for one chunk, sends those chunks down the one-by-one path as a
    /// redo. `None` when the sink cannot; nothing was written.
    fn write_group(&self, chunks: &[&ChunkTask], payload: GroupPayload) -> Result<Option<GroupOutcomes>, BoxError> {
        let _ = (chunks, payload);
        Ok(None)
    }
}

/// Observes progress; called from lane threads, so it must be cheap.
pub trait ProgressSink: Send + Sync {
    /// A batch reached the target.
    fn batch_written(&self, id: ChunkId, rows: u64, bytes: u64);
    /// A chunk committed and was checkpointed.
    fn chunk_committed(&self, id: ChunkId, stats: ChunkStats);
    /// The last chunk of `table` that this copy had to copy committed: all
    /// its rows are on the target (a table whose every chunk an earlier
    /// attempt committed is not reported).
    fn table_copied(&self, table: u32) {
        let _ = table;
    }
    /// A chunk failed and is copied again (as a redo) after `error`.
    fn chunk_retried(&self, id: ChunkId, error: &CopyError) {
        let _ = (id, error);
    }
    /// The bytes queued between readers and writers changed.
    fn queued(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// How a copy runs.
#[derive(Clone, Debug)]
pub struct CopySettings {
    /// Chunks copied at once; each lane holds one source and one target connection.
    pub lanes: usize,
    /// Batches queued per lane between its reader and its writer.
    pub queue_depth: usize,
    /// Bytes all lanes together may hold in queues.
    pub memory_budget: u64,
    /// Byte rate cap for the whole copy; 0 = unlimited.
    pub max_bytes_per_sec: u64,
    /// This copy resumes an interrupted one: every chunk not checkpointed may
    /// be partly on the target and is written with `redo`.
    pub resumed: bool,
    /// Times a failed chunk is copied again before the copy fails. A retry
    /// is a redo: the writer replaces the chunk's range, so it is idempotent.
    pub retries: u32,
    /// Chunks estimated at most this many bytes are read and written in turn
    /// on the lane's own thread. About one batch gains nothing from reading
    /// ahead, and on 1,000 one-batch tables handing each chunk to the lane's
    /// reader thread and its batch back cost a fifth of the copy's CPU.
    pub inline_chunk_bytes: u64,
    /// Most chunks copied as one group: up to this many whole chunks, each
    /// at most `inline_chunk_bytes` and all together at most twice that, go
    /// with one read and one write where source and sink can
    /// ([`ChunkSource::read_group`]).
    /// 1 copies every chunk on its own. Not used when resuming.
    pub group_chunks: usize,
}

/// What a finished copy did.
#[derive(Clone, Debug, Default)]
pub struct CopyReport {
    /// Rows copied in this run.
    pub rows: u64,
    /// Payload bytes copied in this run.
    pub bytes: u64,
    /// Chunks copied in this run.
    pub chunks_copied: u64,
    /// Chunks skipped because an earlier run committed them.
    pub chunks_skipped: u64,
    /// Per table index: rows and bytes copied in this run.
    pub per_table: HashMap<u32, ChunkStats>,
    /// The most payload bytes queued at once.
    pub peak_queued_bytes: u64,
}

struct Shared<'a> {
    settings: &'a CopySettings,
    source: &'a dyn ChunkSource,
    sink: &'a dyn ChunkSink,
    checkpoints: &'a dyn CheckpointStore,
    progress: &'a dyn ProgressSink,
    budget: MemoryBudget,
    rate: RateLimiter,
    stop: CancelToken,
    report: Mutex<CopyReport>,
    first_error: Mutex<Option<CopyError>>,
    /// Cleared once the source or sink says it cannot copy groups.
    grouping: AtomicBool,
    /// Per table: its chunks this copy has still to commit.
    unfinished: Mutex<HashMap<u32, usize>>,
}

/// What a lane copies next.
enum Work<'c> {
    Chunk(&'c ChunkTask),
    Group(Vec<&'c ChunkTask>),
}

/// Copies every chunk not yet checkpointed, `settings.lanes` at a time.
///
/// Returns the first error; the other lanes stop within [`POLL_INTERVAL`]
/// plus one batch. Cancelling `cancel` stops the copy the same way and
/// returns [`CopyError::Cancelled`]. Chunks that committed before the stop
/// stay checkpointed: `checkpoints` is flushed every [`FLUSH_INTERVAL`] and
/// before this returns, whatever the outcome.
pub fn run_copy(
    chunks: &[ChunkTask],
    settings: &CopySettings,
    source: &dyn ChunkSource,
    sink: &dyn ChunkSink,
    checkpoints: &dyn CheckpointStore,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<CopyReport, CopyError> {
    let (work_tx, work_rx) = crossbeam_channel::unbounded();
    let mut skipped = 0;
    let mut pending: Vec<&ChunkTask> = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        if checkpoints.is_committed(chunk.id) {
            skipped += 1;
        } else {
            pending.push(chunk);
        }
    }
    let mut unfinished: HashMap<u32, usize> = HashMap::new();
    for chunk in &pending {
        *unfinished.entry(chunk.id.table).or_default() += 1;
    }
    for work in group_small(schedule(pending), settings) {
        let _ = work_tx.send(work);
    }
    drop(work_tx);

    let shared = Shared {
        settings,
        source,
        sink,
        checkpoints,
        progress,
        budget: MemoryBudget::new(settings.memory_budget),
        rate: RateLimiter::new(settings.max_bytes_per_sec),
        stop: CancelToken::new(),
        report: Mutex::new(CopyReport {
            chunks_skipped: skipped,
            ..CopyReport::default()
        }),
        first_error: Mutex::new(None),
        grouping: AtomicBool::new(true),
        unfinished: Mutex::new(unfinished),
    };
    // Dropped when the lanes are done, which wakes the watcher at once.
    let (lanes_running, lanes_done) = crossbeam_channel::bounded::<()>(0);
    std::thread::scope(|scope| {
        // Maps the caller's cancellation onto the internal stop token, which
        // every blocking wait in the pipeline polls, and flushes checkpoints.
        let shared_ref = &shared;
        scope.spawn(move || {
            let shared = shared_ref;
            while let Err(RecvTimeoutError::Timeout) = lanes_done.recv_timeout(FLUSH_INTERVAL.min(POLL_INTERVAL / 2)) {
                if cancel.is_cancelled() {
                    shared.stop.cancel();
                    break;
                }
                if let Err(error) = shared.flush_checkpoints() {
                    shared.fail(error);
                }
            }
        });
        let lanes: Vec<_> = (0..settings.lanes.max(1))
            .map(|_| {
                let work = work_rx.clone();
                let shared = &shared;
                let (reader, reading) = LaneReader::spawn(scope, shared);
                let writing = scope.spawn(move || {
                    while let Ok(next) = work.recv() {
                        if shared.stop.is_cancelled() {
                            break;
                        }
                        let copied = match next {
                            Work::Chunk(chunk) => copy_chunk_with_retries(shared, &reader, chunk, false),
                            Work::Group(chunks) => copy_group(shared, &reader, &chunks),
                        };
                        if let Err(error) = copied {
                            shared.fail(error);
                            break;
                        }
                    }
                });
                [writing, reading]
            })
            .collect();
        for thread in lanes.into_iter().flatten() {
            if thread.join().is_err() {
                shared.fail(CopyError::Internal("a copy lane panicked".into()));
            }
        }
        drop(lanes_running);
    });

    if let Err(error) = shared.flush_checkpoints() {
        shared.fail(error);
    }
    if cancel.is_cancelled() {
        return Err(CopyError::Cancelled);
    }
    if let Some(error) = shared.first_error.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(error);
    }
    let mut report = shared.report.into_inner().unwrap_or_else(PoisonError::into_inner);
    report.peak_queued_bytes = shared.budget.peak();
    Ok(report)
}

/// Orders the chunks to copy: each table's chunks are dealt out in turns,
/// one per table a turn, and within a turn the largest come first.
///
/// - Taking turns keeps the lanes on different tables while there are
///   enough of them. Lanes that load one table at once contend for its
///   B-tree latches, its auto-increment counter and the redo log buffer:
///   on MySQL 9.7, four lanes on one sysbench table cost the target a third
///   more CPU than four lanes on four tables (measured with `perf`).
/// - Largest first within a turn still starts a table that could not be
///   split before the small ones, so the last lanes to finish are not stuck
///   on it, and leaves the small whole tables next to each other for
///   [`group_small`].
fn schedule(mut pending: Vec<&ChunkTask>) -> Vec<&ChunkTask> {
    pending.sort_by_key(|c| c.id);
    let mut turns = Vec::with_capacity(pending.len());
    let mut previous: Option<(u32, u32)> = None;
    for chunk in &pending {
        let turn = match previous {
            Some((table, turn)) if table == chunk.id.table => turn + 1,
            _ => 0,
        };
        previous = Some((chunk.id.table, turn));
        turns.push(turn);
    }
    let mut ordered: Vec<(u32, &ChunkTask)> = turns.into_iter().zip(pending).collect();
    ordered.sort_by(|(turn_a, a), (turn_b, b)| {
        turn_a
            .cmp(turn_b)
            .then(b.estimated_bytes.cmp(&a.estimated_bytes))
            .then(a.id.cmp(&b.id))
    });
    ordered.into_iter().map(|(_, chunk)| chunk).collect()
}

/// The most bytes a group holds, by estimate when it is formed and by count
/// when it is read, so a stale estimate cannot make it much bigger.
fn group_max_bytes(settings: &CopySettings) -> u64 {
    settings.inline_chunk_bytes.saturating_mul(2)
}

/// Turns `pending` (as [`schedule`] orders it) into work: runs of small whole chunks
/// become groups, the rest stay single.
fn group_small<'c>(pending: Vec<&'c ChunkTask>, settings: &CopySettings) -> Vec<Work<'c>> {
    let limit = group_max_bytes(settings);
    let groups = settings.group_chunks > 1 && !settings.resumed;
    let mut work = Vec::with_capacity(pending.len());
    let mut group: Vec<&ChunkTask> = Vec::new();
    let mut group_bytes = 0u64;
    let close = |group: &mut Vec<&'c ChunkTask>, work: &mut Vec<Work<'c>>| match group.len() {
        0 => {}
        1 => work.extend(group.pop().map(Work::Chunk)),
        _ => work.push(Work::Group(std::mem::take(group))),
    };
    for chunk in pending {
        if !groups || !chunk.range.is_whole() || chunk.estimated_bytes > settings.inline_chunk_bytes {
            work.push(Work::Chunk(chunk));
            continue;
        }
        if group.len() == settings.group_chunks || group_bytes + chunk.estimated_bytes > limit {
            close(&mut group, &mut work);
            group_bytes = 0;
        }
        group_bytes += chunk.estimated_bytes;
        group.push(chunk);
    }
    close(&mut group, &mut work);
    work
}

impl Shared<'_> {
    fn flush_checkpoints(&self) -> Result<(), CopyError> {
        self.checkpoints.flush().map_err(|message| CopyError::Checkpoint {
            chunk: "the chunks committed since the last flush".into(),
            message,
        })
    }

    fn fail(&self, error: CopyError) {
        let mut first = self.first_error.lock().unwrap_or_else(PoisonError::into_inner);
        // A lane that stopped because another failed reports Cancelled; keep the cause.
        if first.is_none() && !matches!(error, CopyError::Cancelled) {
            *first = Some(error);
        }
        self.stop.cancel();
    }
}

type Queued = (Bytes, u64, MemoryPermit);

/// One chunk for a lane's reader thread: where to read, where to queue.
struct ReadJob {
    reader: Box<dyn BatchReader>,
    queue: crossbeam_channel::Sender<Queued>,
    name: String,
}

/// A lane's reader thread, kept for the lane's life: on 1,000 one-batch
/// tables, spawning a thread per chunk cost more than reading the chunk.
struct LaneReader {
    jobs: crossbeam_channel::Sender<ReadJob>,
    results: crossbeam_channel::Receiver<Result<(), CopyError>>,
}

impl LaneReader {
    /// Starts the thread; it ends when the returned `LaneReader` is dropped.
    fn spawn<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        shared: &'scope Shared<'env>,
    ) -> (Self, std::thread::ScopedJoinHandle<'scope, ()>) {
        let (jobs, job_rx) = crossbeam_channel::bounded::<ReadJob>(1);
        let (result_tx, results) = crossbeam_channel::bounded(1);
        let thread = scope.spawn(move || {
            for ReadJob { reader, queue, name } in job_rx {
                let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    read_chunk(shared, reader, queue, &name)
                }))
                .unwrap_or_else(|_| Err(CopyError::Internal(format!("reader of {name} panicked"))));
                if result_tx.send(read).is_err() {
                    break;
                }
            }
        });
        (Self { jobs, results }, thread)
    }

    /// Reads `reader` into `queue` on the lane's reader thread while
    /// `write` runs on this one; returns the write's result, or the read
    /// error that caused it.
    fn read_while<T>(&self, job: ReadJob, write: impl FnOnce() -> Result<T, CopyError>) -> Result<T, CopyError> {
        // Only if the thread died outside `catch_unwind`, which reports panics.
        let gone = || CopyError::Internal("a lane's reader thread is gone".into());
        self.jobs.send(job).map_err(|_| gone())?;
        let written = write();
        let read = self.results.recv().unwrap_or_else(|_| Err(gone()));
        // A reader failure is the cause even when the writer then saw a closed queue.
        read.and(written)
    }
}

/// Pause before retrying a chunk, growing with each attempt.
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

/// Copies `chunk` on its own, again after a transient failure.
/// `written_before`: some of its rows may be on the target already.
fn copy_chunk_with_retries(
    shared: &Shared<'_>,
    lane: &LaneReader,
    chunk: &ChunkTask,
    written_before: bool,
) -> Result<(), CopyError> {
    let mut attempt = 0;
    loop {
        let redo = shared.settings.resumed || written_before || attempt > 0;
        match copy_chunk(shared, lane, chunk, redo) {
            Ok(()) => return Ok(()),
            Err(error) if retryable(&error) && attempt < shared.settings.retries && !shared.stop.is_cancelled() => {
                attempt += 1;
                tracing::warn!(chunk = %chunk.id, attempt, %error, "chunk failed; copying it again");
                shared.progress.chunk_retried(chunk.id, &error);
                let pause = RETRY_BACKOFF * attempt;
                let until = std::time::Instant::now() + pause;
                while std::time::Instant::now() < until {
                    if shared.stop.is_cancelled() {
                        return Err(CopyError::Cancelled);
                    }
                    std::thread::sleep(POLL_INTERVAL.min(pause));
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// Engine errors may be transient (a deadlock, a dropped connection);
/// cancellation, checkpoint and internal failures are not.
fn retryable(error: &CopyError) -> bool {
    matches!(error, CopyError::Read { .. } | CopyError::Write { .. })
}

fn copy_chunk(shared: &Shared<'_>, lane: &LaneReader, chunk: &ChunkTask, redo: bool) -> Result<(), CopyError> {
    let name = chunk.id.to_string();
    let write_err = |source: BoxError| CopyError::Write {
        chunk: name.clone(),
        source,
    };
    let mut writer = shared.sink.open(chunk, redo).map_err(write_err)?;
    let reader = match shared.source.open(chunk) {
        Ok(reader) => reader,
        Err(source) => {
            writer.abort();
            return Err(CopyError::Read {
                chunk: name.clone(),
                source,
            });
        }
    };
    let written = if chunk.estimated_bytes <= shared.settings.inline_chunk_bytes {
        copy_inline(shared, chunk.id, &name, reader, writer.as_mut())
    } else {
        let (queue, rx) = crossbeam_channel::bounded::<Queued>(shared.settings.queue_depth.max(1));
        let job = ReadJob {
            reader,
            queue,
            name: name.clone(),
        };
        lane.read_while(job, || write_chunk(shared, chunk.id, writer.as_mut(), rx))
    };
    let written = match written {
        Ok(stats) => stats,
        Err(error) => {
            writer.abort();
            return Err(error);
        }
    };
    let stats = writer.commit().map_err(write_err)?;
    if stats.rows != written.rows {
        return Err(CopyError::Write {
            chunk: name.clone(),
            source: format!("the target accepted {} rows but {} were sent", stats.rows, written.rows).into(),
        });
    }
    record_committed(shared, chunk.id, written)
}

/// Checkpoints a committed chunk and counts it.
fn record_committed(shared: &Shared<'_>, id: ChunkId, written: ChunkStats) -> Result<(), CopyError> {
    shared
        .checkpoints
        .record(id, written)
        .map_err(|message| CopyError::Checkpoint {
            chunk: id.to_string(),
            message,
        })?;
    shared.progress.chunk_committed(id, written);
    let table_copied = {
        let mut unfinished = shared.unfinished.lock().unwrap_or_else(PoisonError::into_inner);
        unfinished.get_mut(&id.table).is_some_and(|left| {
            *left = left.saturating_sub(1);
            *left == 0
        })
    };
    if table_copied {
        shared.progress.table_copied(id.table);
    }
    let mut report = shared.report.lock().unwrap_or_else(PoisonError::into_inner);
    report.rows += written.rows;
    report.bytes += written.bytes;
    report.chunks_copied += 1;
    let table = report.per_table.entry(id.table).or_default();
    table.rows += written.rows;
    table.bytes += written.bytes;
    Ok(())
}

/// Copies small whole chunks with one read and one write for them all,
/// where the source and the sink can; whatever the group did not finish is
/// then copied chunk by chunk, as a redo where rows of it may be on the
/// target. So a group never fails on its own account: a bad chunk fails on
/// its own path, with its own error and retries.
fn copy_group(shared: &Shared<'_>, lane: &LaneReader, chunks: &[&ChunkTask]) -> Result<(), CopyError> {
    let left = if shared.grouping.load(Ordering::Relaxed) {
        copy_as_group(shared, chunks)?
    } else {
        chunks.iter().map(|chunk| (*chunk, false)).collect()
    };
    for (chunk, written_before) in left {
        if shared.stop.is_cancelled() {
            return Err(CopyError::Cancelled);
        }
        copy_chunk_with_retries(shared, lane, chunk, written_before)?;
    }
    Ok(())
}

/// One group read and one group write; returns the chunks left to copy on
/// their own, each with whether rows of it may be on the target.
fn copy_as_group<'c>(shared: &Shared<'_>, chunks: &[&'c ChunkTask]) -> Result<Vec<(&'c ChunkTask, bool)>, CopyError> {
    let alone = |chunks: &[&'c ChunkTask], written_before: bool| {
        chunks
            .iter()
            .map(move |chunk| (*chunk, written_before))
            .collect::<Vec<_>>()
    };
    let max_bytes = group_max_bytes(shared.settings);
    let payload = match shared.source.read_group(chunks, max_bytes) {
        Ok(Some(payload)) => payload,
        Ok(None) => {
            shared.grouping.store(false, Ordering::Relaxed);
            return Ok(alone(chunks, false));
        }
        Err(error) => {
            tracing::debug!(%error, chunks = chunks.len(), "a group read failed; reading its chunks one by one");
            return Ok(alone(chunks, false));
        }
    };
    let (read, unread) = chunks.split_at(payload.parts.len().min(chunks.len()));
    let mut left = alone(unread, false);
    if read.is_empty() {
        return Ok(left);
    }
    let parts = payload.parts.clone();
    let permit = admit(shared, &payload.data)?;
    let outcomes = match shared.sink.write_group(read, payload) {
        Ok(Some(outcomes)) if outcomes.len() == read.len() => outcomes,
        Ok(Some(outcomes)) => {
            tracing::warn!(
                chunks = read.len(),
                outcomes = outcomes.len(),
                "a group write answered for another number of chunks; writing them one by one"
            );
            left.extend(alone(read, true));
            return Ok(left);
        }
        Ok(None) => {
            shared.grouping.store(false, Ordering::Relaxed);
            left.extend(alone(read, false));
            return Ok(left);
        }
        Err(error) => {
            tracing::debug!(%error, chunks = read.len(), "a group write failed; writing its chunks one by one");
            left.extend(alone(read, true));
            return Ok(left);
        }
    };
    drop(permit);
    for ((chunk, part), outcome) in read.iter().zip(parts).zip(outcomes) {
        match outcome {
            Ok(rows) if rows == part.rows => {
                shared.progress.batch_written(chunk.id, part.rows, part.bytes);
                record_committed(shared, chunk.id, part)?;
            }
            Ok(rows) => {
                tracing::debug!(chunk = %chunk.id, rows, sent = part.rows, "the target accepted another row count; writing the chunk again on its own");
                left.push((chunk, true));
            }
            Err(error) => {
                tracing::debug!(chunk = %chunk.id, %error, "a chunk of a group failed; writing it again on its own");
                left.push((chunk, true));
            }
        }
    }
    Ok(left)
}

/// Reads and writes a chunk in turn on the calling thread.
fn copy_inline(
    shared: &Shared<'_>,
    id: ChunkId,
    name: &str,
    mut reader: Box<dyn BatchReader>,
    writer: &mut dyn BatchWriter,
) -> Result<ChunkStats, CopyError> {
    let mut stats = ChunkStats::default();
    while let Some((data, rows)) = next_batch(shared, reader.as_mut(), name)? {
        let permit = admit(shared, &data)?;
        write_batch(shared, id, writer, data, rows, &mut stats)?;
        drop(permit);
    }
    Ok(stats)
}

/// Reads `reader` into `tx` until the chunk ends or the writer gives up.
fn read_chunk(
    shared: &Shared<'_>,
    mut reader: Box<dyn BatchReader>,
    tx: crossbeam_channel::Sender<Queued>,
    name: &str,
) -> Result<(), CopyError> {
    while let Some((data, rows)) = next_batch(shared, reader.as_mut(), name)? {
        let permit = admit(shared, &data)?;
        shared.progress.queued(shared.budget.in_use());
        let mut item = (data, rows, permit);
        loop {
            match tx.send_timeout(item, POLL_INTERVAL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) => {
                    if shared.stop.is_cancelled() {
                        return Err(CopyError::Cancelled);
                    }
                    item = back;
                }
                // The writer gave up; it reports why.
                Err(SendTimeoutError::Disconnected(_)) => return Ok(()),
            }
        }
    }
    Ok(())
}

/// The chunk's next batch, `None` at its end; waits out idle answers
/// while watching for a stop.
fn next_batch(
    shared: &Shared<'_>,
    reader: &mut dyn BatchReader,
    name: &str,
) -> Result<Option<(Bytes, u64)>, CopyError> {
    loop {
        if shared.stop.is_cancelled() {
            return Err(CopyError::Cancelled);
        }
        match reader.next() {
            Ok(ReadOutcome::Batch { data, rows }) => return Ok(Some((data, rows))),
            Ok(ReadOutcome::Idle) => continue,
            Ok(ReadOutcome::End) => return Ok(None),
            Err(source) => {
                return Err(CopyError::Read {
                    chunk: name.to_string(),
                    source,
                })
            }
        }
    }
}

/// Holds a batch to the memory budget and the rate limit.
fn admit(shared: &Shared<'_>, data: &Bytes) -> Result<MemoryPermit, CopyError> {
    let len = data.len() as u64;
    let permit = shared.budget.acquire(len, &shared.stop)?;
    shared.rate.take(len, &shared.stop)?;
    Ok(permit)
}

/// Writes the batches `rx` brings until the reader closes it.
fn write_chunk(
    shared: &Shared<'_>,
    id: ChunkId,
    writer: &mut dyn BatchWriter,
    rx: crossbeam_channel::Receiver<Queued>,
) -> Result<ChunkStats, CopyError> {
    let mut stats = ChunkStats::default();
    loop {
        let (data, rows, permit) = match rx.recv_timeout(POLL_INTERVAL) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => {
                if shared.stop.is_cancelled() {
                    return Err(CopyError::Cancelled);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(stats),
        };
        write_batch(shared, id, writer, data, rows, &mut stats)?;
        drop(permit);
        shared.progress.queued(shared.budget.in_use());
    }
}

fn write_batch(
    shared: &Shared<'_>,
    id: ChunkId,
    writer: &mut dyn BatchWriter,
    data: Bytes,
    rows: u64,
    stats: &mut ChunkStats,
) -> Result<(), CopyError> {
    let len = data.len() as u64;
    writer.write(data, rows).map_err(|source| CopyError::Write {
        chunk: id.to_string(),
        source,
    })?;
    stats.rows += rows;
    stats.bytes += len;
    shared.progress.batch_written(id, rows, len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyRange;

    fn chunk(table: u32, ordinal: u32, estimated_bytes: u64) -> ChunkTask {
        ChunkTask {
            id: ChunkId { table, ordinal },
            range: KeyRange::whole(vec!["id".into()]),
            estimated_bytes,
        }
    }

    fn order(chunks: &[ChunkTask]) -> Vec<(u32, u32)> {
        schedule(chunks.iter().collect())
            .into_iter()
            .map(|c| (c.id.table, c.id.ordinal))
            .collect()
    }

    #[test]
    fn tables_take_turns_so_lanes_write_different_tables() {
        let chunks = [
            chunk(0, 0, 100),
            chunk(0, 1, 100),
            chunk(0, 2, 100),
            chunk(1, 0, 100),
            chunk(1, 1, 100),
            chunk(2, 0, 100),
        ];
        assert_eq!(order(&chunks), [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (0, 2)]);
    }

    #[test]
    fn within_a_turn_the_largest_come_first() {
        // Table 2 could not be split: it starts first; the small whole
        // tables end the first turn next to each other.
        let chunks = [
            chunk(0, 0, 10),
            chunk(1, 0, 100),
            chunk(1, 1, 100),
            chunk(2, 0, 500),
            chunk(3, 0, 20),
        ];
        assert_eq!(order(&chunks), [(2, 0), (1, 0), (3, 0), (0, 0), (1, 1)]);
    }

    #[test]
    fn committed_chunks_leave_no_gap_in_a_tables_turns() {
        // A resumed copy: table 0's first two chunks are done.
        let chunks = [chunk(0, 2, 100), chunk(0, 3, 100), chunk(1, 0, 100), chunk(1, 1, 100)];
        assert_eq!(order(&chunks), [(0, 2), (1, 0), (0, 3), (1, 1)]);
    }
}
