//! Errors of the copy pipeline.

/// An error from an engine (reader, writer or splitter), kept whole so the
/// caller can downcast it to its own type and read codes out of it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The copy was cancelled through its [`crate::CancelToken`].
    #[error("cancelled")]
    Cancelled,
    /// Reading a chunk from the source failed.
    #[error("reading {chunk} from the source: {source}")]
    Read {
        /// The chunk.
        chunk: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// Writing a chunk to the target failed.
    #[error("writing {chunk} to the target: {source}")]
    Write {
        /// The chunk.
        chunk: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The caller's checkpoint store refused a checkpoint.
    #[error("recording the checkpoint of {chunk}: {message}")]
    Checkpoint {
        /// The chunk.
        chunk: String,
        /// What went wrong.
        message: String,
    },
    /// Planning a table's chunks failed.
    #[error("planning chunks of {table}: {message}")]
    Plan {
        /// The table.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// A pipeline thread died unexpectedly.
    #[error("internal pipeline failure: {0}")]
    Internal(String),
}
