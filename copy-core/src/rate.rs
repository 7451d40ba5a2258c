//! `max_bytes_per_sec`: a token bucket shared by every lane.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::cancel::{CancelToken, POLL_INTERVAL};
use crate::error::CopyError;

/// The longest burst the bucket can save up, as a share of one second.
pub const BURST: f64 = 0.25;

#[derive(Debug)]
struct Bucket {
    /// Bytes that may still be sent now; negative is debt to wait off.
    tokens: f64,
    refilled: Instant,
}

/// Limits the total byte rate of a copy. A limit of 0 means unlimited.
///
/// The bucket starts empty and holds at most [`BURST`] worth of bytes, so a
/// copy that restarts (a resumed import, a new process) cannot exceed the
/// rate with a fresh burst.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimiter {
    /// A limiter for `bytes_per_sec` (0 = unlimited).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: 0.0,
                refilled: Instant::now(),
            })),
        }
    }

    /// Accounts for `bytes` and sleeps as long as the rate requires. Batches
    /// larger than one second's worth run into debt, so the long-run rate
    /// still holds.
    pub fn take(&self, bytes: u64, cancel: &CancelToken) -> Result<(), CopyError> {
        if self.bytes_per_sec == 0 {
            return Ok(());
        }
        let rate = self.bytes_per_sec as f64;
        let wait = {
            let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let earned = now.duration_since(bucket.refilled).as_secs_f64() * rate;
            bucket.tokens = (bucket.tokens + earned).min(rate * BURST);
            bucket.refilled = now;
            bucket.tokens -= bytes as f64;
            if bucket.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-bucket.tokens / rate)
            }
        };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if cancel.is_cancelled() {
                return Err(CopyError::Cancelled);
            }
            std::thread::sleep(POLL_INTERVAL.min(deadline - Instant::now()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_run_rate_is_respected() {
        let limiter = RateLimiter::new(1_000_000);
        let cancel = CancelToken::new();
        let start = Instant::now();
        for _ in 0..30 {
            limiter.take(100_000, &cancel).expect("not cancelled");
        }
        // 3 MB at 1 MB/s from an empty bucket: about 3 s, never much less.
        assert!(start.elapsed() >= Duration::from_millis(2900), "{:?}", start.elapsed());
        assert!(start.elapsed() < Duration::from_millis(4000), "{:?}", start.elapsed());
    }

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(0);
        let start = Instant::now();
        limiter.take(u64::MAX / 2, &CancelToken::new()).expect("unlimited");
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
