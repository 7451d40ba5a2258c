//! Outages: a source or target that goes away while an import runs is
//! waited for, with backoff, up to the job's `outage_timeout`; the import
//! then goes on as a resume (only uncommitted work is done again).

use std::time::{Duration, Instant};

use dbferry_copy_core::CancelToken;
use dbferry_plugin_host::Plugin;

use super::{precheck, EventSink, ImportEvent};
use crate::config::Instance;
use crate::instances::Reservation;
use crate::metrics::Metrics;

/// First pause between two probes; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between two probes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Outages one import waits out before it gives up: a server that keeps
/// dropping connections without ever staying away is a fault, not an outage.
pub const MAX_OUTAGES: u32 = 20;

/// Words of the errors a lost or refused connection produces, whichever
/// layer reports it (plugin, driver, operating system).
const LOST_CONNECTION: &[&str] = &[
    "cannot connect",
    "cannot be reached",
    "connection was lost",
    "lost connection",
    "gone away",
    "connection refused",
    "connection reset",
    "broken pipe",
    "unexpected eof",
    "connection closed",
    "timed out",
    "server shutdown in progress",
    "no route to host",
    "network is unreachable",
];

/// Whether a failure looks like an instance that went away rather than
/// something it refused.
pub fn is_outage(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    LOST_CONNECTION.iter().any(|words| lower.contains(words))
}

/// Words of the errors a full disk produces on the target.
const DISK_FULL: &[&str] = &[
    "no space left on device",
    "errno: 28",
    "error 28",
    "disk full",
    "is full",
    "the transaction log for database",
];

/// Whether a failure says the target has no space left.
pub fn is_disk_full(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    DISK_FULL.iter().any(|words| lower.contains(words))
}

/// How a wait ended without both instances answering.
#[derive(Debug)]
pub enum WaitEnd {
    /// Cancelled while waiting.
    Cancelled,
    /// Still unreachable after the timeout; says which and why.
    TimedOut(String),
}

/// Everything a wait needs.
pub struct Waiter<'a> {
    /// The engine's plugin.
    pub plugin: &'a Plugin,
    /// Source and target.
    pub instances: [&'a Instance; 2],
    /// Holds both instances; shows the missing one `Unavailable`.
    pub reservation: &'a Reservation,
    /// Where the waiting shows.
    pub metrics: &'a Metrics,
    /// The import.
    pub import_id: u64,
    /// Events.
    pub events: &'a dyn EventSink,
    /// Cancellation, looked at at least every 100 ms.
    pub cancel: &'a CancelToken,
}

impl Waiter<'_> {
    /// Probes both instances until both answer, `timeout` passes or the
    /// import is cancelled.
    pub fn wait(&self, timeout: Duration) -> Result<(), WaitEnd> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let label = self.import_id.to_string();
        let gauge = self.metrics.import_waiting.with_label_values(&[&label]);
        gauge.set(1);
        self.events.emit(&ImportEvent::Phase { phase: "waiting" });
        let outcome = loop {
            let unreachable: Vec<(&Instance, String)> = self
                .instances
                .iter()
                .filter_map(|instance| self.probe(instance).err().map(|why| (*instance, why)))
                .collect();
            if unreachable.is_empty() {
                break Ok(());
            }
            for (instance, why) in &unreachable {
                self.reservation.mark_unavailable(&instance.id);
                tracing::info!(import_id = self.import_id, instance_id = %instance.id, reason = %why, "waiting for an instance");
            }
            if started.elapsed() >= timeout {
                let list: Vec<String> = unreachable
                    .iter()
                    .map(|(instance, why)| format!("{}: {why}", instance.id))
                    .collect();
                break Err(WaitEnd::TimedOut(list.join("; ")));
            }
            let pause = backoff.min(timeout.saturating_sub(started.elapsed()));
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if self.cancel.is_cancelled() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
            }
            if self.cancel.is_cancelled() {
                break Err(WaitEnd::Cancelled);
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        gauge.set(0);
        let _ = self.metrics.import_waiting.remove_label_values(&[&label]);
        outcome
    }

    fn probe(&self, instance: &Instance) -> Result<(), String> {
        let session = precheck::connect(self.plugin, instance, 1).map_err(|r| r.message)?;
        session.probe().map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_full_disks_are_told_apart_from_refusals() {
        assert!(is_outage(
            "writing table 0 chunk 1 to the target: cannot connect to rm-dst: Connection refused (os error 111)"
        ));
        assert!(is_outage("reading t: every snapshot connection was lost"));
        assert!(is_outage("Lost connection to server during query"));
        assert!(!is_outage("Duplicate entry '1' for key 'PRIMARY'"));
        assert!(!is_outage("Lock wait timeout exceeded; try restarting transaction"));
        assert!(is_disk_full(
            "Got error 28 \"No space left on device\" from storage engine"
        ));
        assert!(is_disk_full("The table 't' is full"));
        assert!(!is_disk_full("Duplicate entry"));
    }
}
