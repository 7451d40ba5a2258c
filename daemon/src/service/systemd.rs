//! systemd `Type=notify`: readiness, status lines and the watchdog.
//! Without `NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::broadcast;

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A `STATUS=` line.
pub fn status(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Status(status)]);
}

/// `STOPPING=1`.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pets the watchdog at half its interval, if systemd set one.
pub async fn watchdog(mut shutdown: broadcast::Receiver<()>) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => { let _ = sd_notify::notify(false, &[NotifyState::Watchdog]); }
        }
    }
}
