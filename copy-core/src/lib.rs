//! Engine-neutral core of dbferry's data path.
//!
//! A copy is a list of [`ChunkTask`]s, each a key range of one table. The
//! [`pipeline`] runs them on parallel *lanes*: every lane is a reader thread
//! and a writer thread joined by a bounded crossbeam channel, so a slow target
//! blocks its reader (backpressure). All lanes share one [`MemoryBudget`], one
//! [`RateLimiter`] and one [`CancelToken`]. A chunk is one target transaction;
//! after it commits the caller's [`CheckpointStore`] records it, which is what
//! makes an interrupted copy resumable without duplicates. Small whole
//! chunks go in groups, one read and one write for all, where the source
//! and sink can ([`ChunkSource::read_group`]); what a group leaves undone
//! is copied chunk by chunk.
#![deny(missing_docs)]

pub mod budget;
pub mod cancel;
pub mod checkpoint;
pub mod error;
pub mod key;
pub mod pipeline;
pub mod plan;
pub mod rate;

pub use budget::{MemoryBudget, MemoryPermit};
pub use cancel::CancelToken;
pub use checkpoint::{CheckpointStore, ChunkStats, MemoryCheckpoints, FLUSH_INTERVAL};
pub use error::{BoxError, CopyError};
pub use key::{KeyRange, KeyTuple, KeyValue};
pub use pipeline::{
    run_copy, BatchReader, BatchWriter, ChunkSink, ChunkSource, CopyReport, CopySettings, GroupOutcomes, GroupPayload,
    ProgressSink, ReadOutcome,
};
pub use plan::{plan_table, ChunkId, ChunkTask, KeySplitter, TableEstimate};
pub use rate::RateLimiter;
