//! A cancel acted on within a second in the phases whose single statements
//! run long: a digest of a big table while verifying, an index build while
//! finishing. Between statements the phases look at the token themselves;
//! during one, a watcher asks the sessions to interrupt what they run
//! (`Request::Interrupt`), and the call that fails for it ends the import
//! `Cancelled`, not `Failed`.

use std::sync::mpsc;

use dbferry_copy_core::cancel::POLL_INTERVAL;
use dbferry_copy_core::CancelToken;
use dbferry_plugin_host::Session;

use super::Stop;

/// Runs `work` while a watcher interrupts the in-flight statements of
/// `sessions` as soon as `cancel` fires; a failure of `work` after the
/// cancel is the cancel's.
pub(super) fn interruptible<T>(
    cancel: &CancelToken,
    sessions: &[&Session],
    work: impl FnOnce() -> Result<T, Stop>,
) -> Result<T, Stop> {
    if cancel.is_cancelled() {
        return Err(Stop::Cancelled);
    }
    // Dropped when the work ends, which wakes the watcher at once: a
    // watcher asleep until its next look at the token held every phase up
    // by as much as a poll interval.
    let (working, done) = mpsc::channel::<()>();
    let outcome = std::thread::scope(|scope| {
        scope.spawn(move || watch(cancel, sessions, &done));
        let outcome = work();
        drop(working);
        outcome
    });
    match outcome {
        Err(Stop::Failed(code, message)) if cancel.is_cancelled() => {
            tracing::debug!(?code, %message, "a call failed after the cancel, as interrupted");
            Err(Stop::Cancelled)
        }
        other => other,
    }
}

/// Waits for the cancel or the end of the work, and on a cancel asks each
/// session once to interrupt its statements.
fn watch(cancel: &CancelToken, sessions: &[&Session], done: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(POLL_INTERVAL) {
        if cancel.is_cancelled() {
            for session in sessions {
                match session.interrupt() {
                    Ok(()) => tracing::info!(engine = session.engine(), "interrupted the running statements"),
                    Err(e) => tracing::warn!(
                        engine = session.engine(),
                        error = %e,
                        "could not interrupt the running statements; the cancel waits for them"
                    ),
                }
            }
            return;
        }
    }
}
