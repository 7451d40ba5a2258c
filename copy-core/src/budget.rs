//! A byte budget for everything queued between readers and writers.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::cancel::{CancelToken, POLL_INTERVAL};
use crate::error::CopyError;

#[derive(Debug)]
struct State {
    in_use: u64,
    peak: u64,
}

/// Caps the bytes held in flight by all lanes together.
///
/// A batch larger than the whole budget is still admitted once nothing else
/// is in flight, so a single row wider than the budget (a 64 MiB BLOB) passes,
/// and memory stays bounded by `max(limit, largest batch)`.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    limit: u64,
    state: Arc<(Mutex<State>, Condvar)>,
}

/// Bytes taken from a [`MemoryBudget`]; returned when dropped.
#[derive(Debug)]
pub struct MemoryPermit {
    bytes: u64,
    budget: MemoryBudget,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            limit: limit.max(1),
            state: Arc::new((Mutex::new(State { in_use: 0, peak: 0 }), Condvar::new())),
        }
    }

    /// Blocks until `bytes` fit, or the copy is cancelled.
    pub fn acquire(&self, bytes: u64, cancel: &CancelToken) -> Result<MemoryPermit, CopyError> {
        let (lock, ready) = &*self.state;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if cancel.is_cancelled() {
                return Err(CopyError::Cancelled);
            }
            let fits = state.in_use + bytes <= self.limit || state.in_use == 0;
            if fits {
                state.in_use += bytes;
                state.peak = state.peak.max(state.in_use);
                return Ok(MemoryPermit {
                    bytes,
                    budget: self.clone(),
                });
            }
            state = ready
                .wait_timeout(state, POLL_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> u64 {
        self.state.0.lock().unwrap_or_else(PoisonError::into_inner).peak
    }

    /// The bytes held now.
    pub fn in_use(&self) -> u64 {
        self.state.0.lock().unwrap_or_else(PoisonError::into_inner).in_use
    }
}

impl Drop for MemoryPermit {
    fn drop(&mut self) {
        let (lock, ready) = &*self.budget.state;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        state.in_use -= self.bytes;
        ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_batch_is_admitted_alone() {
        let budget = MemoryBudget::new(10);
        let cancel = CancelToken::new();
        let big = budget.acquire(100, &cancel).expect("alone it fits");
        assert_eq!(budget.in_use(), 100);
        drop(big);
        let a = budget.acquire(6, &cancel).expect("fits");
        let b = budget.acquire(4, &cancel).expect("fits exactly");
        assert_eq!(budget.peak(), 100);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_full_budget_blocks_until_cancelled() {
        let budget = MemoryBudget::new(10);
        let cancel = CancelToken::new();
        let _held = budget.acquire(10, &cancel).expect("fits");
        let waiter = {
            let (budget, cancel) = (budget.clone(), cancel.clone());
            std::thread::spawn(move || budget.acquire(1, &cancel).map(|_| ()))
        };
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(!waiter.is_finished(), "must wait while the budget is full");
        cancel.cancel();
        let result = waiter.join().expect("thread");
        assert!(matches!(result, Err(CopyError::Cancelled)));
    }
}
