//! Micro-benchmarks of the copy core's queue and pipeline
//! (`dbferry_copy_core::run_copy`) with in-memory sources and sinks, so the
//! per-batch and per-chunk overhead of the lanes, bounded queues, memory
//! budget and checkpoints shows up on its own, without any database.
//!
//! `cargo bench -p dbferry-benches --bench pipeline`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dbferry_copy_core::{
    run_copy, BatchReader, BatchWriter, BoxError, CancelToken, ChunkId, ChunkSink, ChunkSource, ChunkStats, ChunkTask,
    CopySettings, KeyRange, MemoryBudget, MemoryCheckpoints, ProgressSink, ReadOutcome,
};

/// Hands out `batches` clones of one payload per chunk (a refcount bump, no copy).
struct MemSource {
    payload: Bytes,
    rows_per_batch: u64,
    batches: u32,
}

struct MemReader {
    payload: Bytes,
    rows: u64,
    left: u32,
}

impl BatchReader for MemReader {
    fn next(&mut self) -> Result<ReadOutcome, BoxError> {
        if self.left == 0 {
            return Ok(ReadOutcome::End);
        }
        self.left -= 1;
        Ok(ReadOutcome::Batch {
            data: self.payload.clone(),
            rows: self.rows,
        })
    }
}

impl ChunkSource for MemSource {
    fn open(&self, _chunk: &ChunkTask) -> Result<Box<dyn BatchReader>, BoxError> {
        Ok(Box::new(MemReader {
            payload: self.payload.clone(),
            rows: self.rows_per_batch,
            left: self.batches,
        }))
    }
}

/// Counts what it is given; commits instantly.
#[derive(Default)]
struct MemSink {
    bytes: AtomicU64,
}

struct MemWriter<'a> {
    sink: &'a AtomicU64,
    stats: ChunkStats,
}

impl BatchWriter for MemWriter<'static> {
    fn write(&mut self, data: Bytes, rows: u64) -> Result<(), BoxError> {
        // Touch the payload so the sink is not free.
        black_box(data.first());
        self.stats.rows += rows;
        self.stats.bytes += data.len() as u64;
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<ChunkStats, BoxError> {
        self.sink.fetch_add(self.stats.bytes, Ordering::Relaxed);
        Ok(self.stats)
    }
    fn abort(self: Box<Self>) {}
}

/// `ChunkSink` needs writers that own their state; a leaked counter is fine in a bench.
struct LeakedSink(&'static AtomicU64);

impl ChunkSink for LeakedSink {
    fn open(&self, _chunk: &ChunkTask, _redo: bool) -> Result<Box<dyn BatchWriter>, BoxError> {
        Ok(Box::new(MemWriter {
            sink: self.0,
            stats: ChunkStats::default(),
        }))
    }
}

struct NoProgress;

impl ProgressSink for NoProgress {
    fn batch_written(&self, _id: ChunkId, _rows: u64, _bytes: u64) {}
    fn chunk_committed(&self, _id: ChunkId, _stats: ChunkStats) {}
}

fn chunks(count: u32, bytes_each: u64) -> Vec<ChunkTask> {
    (0..count)
        .map(|i| ChunkTask {
            id: ChunkId {
                table: i % 4,
                ordinal: i,
            },
            range: KeyRange::whole(vec!["id".into()]),
            estimated_bytes: bytes_each,
        })
        .collect()
}

fn bench_pipeline(c: &mut Criterion) {
    let counter: &'static AtomicU64 = Box::leak(Box::new(MemSink::default().bytes));
    let sink = LeakedSink(counter);
    let mut group = c.benchmark_group("run_copy");
    group.sample_size(10);
    // (name, chunks, batches per chunk, batch bytes). `fixed-cost` is one
    // empty-ish chunk: the start-up and shutdown latency of a `run_copy`
    // call. The others are large enough that the per-batch and per-chunk
    // costs dominate that fixed cost.
    let shapes = [
        ("fixed-cost", 1u32, 1u32, 1usize),
        ("64KiB-batches", 8, 512, 64 * 1024),
        ("1KiB-batches", 8, 16_384, 1024),
        ("many-small-chunks", 4096, 2, 4096),
    ];
    for (name, count, batches, size) in shapes {
        let source = MemSource {
            payload: Bytes::from(vec![b'x'; size]),
            rows_per_batch: (size / 200).max(1) as u64,
            batches,
        };
        let plan = chunks(count, u64::from(batches) * size as u64);
        let total = u64::from(count) * u64::from(batches) * size as u64;
        group.throughput(Throughput::Bytes(total));
        for lanes in [1usize, 4] {
            let settings = CopySettings {
                lanes,
                queue_depth: 4,
                memory_budget: 64 << 20,
                max_bytes_per_sec: 0,
                resumed: false,
                retries: 0,
                inline_chunk_bytes: 0,
                group_chunks: 1,
            };
            group.bench_with_input(
                BenchmarkId::new(name, format!("lanes={lanes}")),
                &settings,
                |b, settings| {
                    b.iter(|| {
                        let checkpoints = MemoryCheckpoints::default();
                        let report = run_copy(
                            &plan,
                            settings,
                            &source,
                            &sink,
                            &checkpoints,
                            &NoProgress,
                            &CancelToken::new(),
                        )
                        .expect("in-memory copy cannot fail");
                        assert_eq!(report.bytes, total);
                        black_box(report)
                    })
                },
            );
        }
    }
    group.finish();
}

fn bench_budget(c: &mut Criterion) {
    let budget = MemoryBudget::new(64 << 20);
    let cancel = CancelToken::new();
    c.bench_function("memory_budget/acquire+release", |b| {
        b.iter(|| {
            let permit = budget.acquire(black_box(65536), &cancel).expect("fits");
            drop(black_box(permit));
        })
    });
}

criterion_group!(benches, bench_pipeline, bench_budget);
criterion_main!(benches);
