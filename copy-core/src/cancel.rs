//! Cooperative cancellation shared by every lane.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long any blocking wait in the pipeline sleeps before it looks at the
/// token again. It bounds how late a cancellation is noticed.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A cheap, clonable flag: once cancelled, every clone reports it.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every clone of this token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
