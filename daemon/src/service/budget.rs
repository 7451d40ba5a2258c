//! The global worker budget: lanes shared by every running import.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use dbferry_copy_core::CancelToken;

/// Counts free copy lanes. An import takes as many as its `parallelism`
/// (at most the whole budget) and waits while too few are free.
pub struct LaneBudget {
    total: u32,
    free: Mutex<u32>,
    released: Condvar,
}

impl LaneBudget {
    /// A budget of `total` lanes.
    pub fn new(total: u32) -> Self {
        let total = total.max(1);
        Self {
            total,
            free: Mutex::new(total),
            released: Condvar::new(),
        }
    }

    /// Takes `wanted` lanes (capped to the budget), or `None` if cancelled first.
    pub fn acquire(&self, wanted: u32, cancel: &CancelToken) -> Option<u32> {
        let wanted = wanted.clamp(1, self.total);
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free < wanted {
            if cancel.is_cancelled() {
                return None;
            }
            free = self
                .released
                .wait_timeout(free, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *free -= wanted;
        Some(wanted)
    }

    /// Returns lanes.
    pub fn release(&self, lanes: u32) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        *free = (*free + lanes).min(self.total);
        self.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_wait_for_lanes_and_can_be_cancelled_while_waiting() {
        let budget = LaneBudget::new(4);
        assert_eq!(budget.acquire(3, &CancelToken::new()), Some(3));
        let cancel = CancelToken::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| budget.acquire(2, &cancel));
            std::thread::sleep(Duration::from_millis(150));
            assert!(!waiter.is_finished(), "only one lane is free");
            cancel.cancel();
            assert_eq!(waiter.join().expect("thread"), None);
        });
        budget.release(3);
        assert_eq!(
            budget.acquire(64, &CancelToken::new()),
            Some(4),
            "capped to the whole budget"
        );
    }
}
