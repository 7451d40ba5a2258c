//! The replay guard: every signature nonce is remembered until the request
//! that carried it could no longer pass the timestamp check anyway.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Mutex, PoisonError};

/// Why a nonce was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// The nonce was seen before for this key.
    #[error("the signature nonce {0} has been used")]
    Used(String),
    /// The cache holds `capacity` live nonces: refusing is safer than forgetting.
    #[error("too many requests in the last 15 minutes ({0} nonces held); retry later")]
    Full(usize),
}

#[derive(Default)]
struct Inner {
    seen: HashSet<(String, String)>,
    expiry: BinaryHeap<Reverse<(i64, String, String)>>,
}

/// Nonces per AccessKeyId, each kept until its expiry; at most `capacity`.
pub struct NonceCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl NonceCache {
    /// An empty cache holding at most `capacity` nonces.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
        }
    }

    /// Records `nonce` of `key` until `expires` (Unix seconds), or refuses it.
    pub fn admit(&self, key: &str, nonce: &str, expires: i64, now: i64) -> Result<(), NonceError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while inner.expiry.peek().is_some_and(|Reverse((at, _, _))| *at < now) {
            if let Some(Reverse((_, k, n))) = inner.expiry.pop() {
                inner.seen.remove(&(k, n));
            }
        }
        let entry = (key.to_string(), nonce.to_string());
        if inner.seen.contains(&entry) {
            return Err(NonceError::Used(nonce.to_string()));
        }
        if inner.seen.len() >= self.capacity {
            return Err(NonceError::Full(self.capacity));
        }
        inner.expiry.push(Reverse((expires, entry.0.clone(), entry.1.clone())));
        inner.seen.insert(entry);
        Ok(())
    }

    /// Nonces held.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).seen.len()
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_refused_until_expiry_and_the_cache_is_bounded() {
        let cache = NonceCache::new(2);
        assert_eq!(cache.admit("k", "a", 100, 0), Ok(()));
        assert_eq!(cache.admit("k", "a", 100, 50), Err(NonceError::Used("a".into())));
        assert_eq!(cache.admit("other", "a", 100, 50), Ok(()));
        assert_eq!(cache.admit("k", "b", 100, 50), Err(NonceError::Full(2)));
        // Once expired, entries make room (a replay then fails the timestamp check).
        assert_eq!(cache.admit("k", "b", 300, 101), Ok(()));
        assert_eq!(cache.len(), 1);
    }
}
