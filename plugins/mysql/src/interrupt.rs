//! `Request::Interrupt`: the statements of a session that a cancel may stop
//! midway (digests while verifying, index builds and the rest of the
//! finish), by the server's id of the connection running each, and the
//! `KILL QUERY` that stops them. Nothing that writes rows is registered:
//! the copy stops between chunks, with every chunk committed or not.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use mysql_async::prelude::Queryable;

use crate::conn::Pool;
use crate::error::{code, Context, Result};

/// The connections running an interruptible statement now, each with how
/// many registrations it holds.
#[derive(Debug, Default)]
pub struct Interruptible {
    running: Mutex<HashMap<u32, usize>>,
}

/// A connection's registration; dropped when its statements are done.
pub struct Running<'a> {
    registry: &'a Interruptible,
    id: u32,
}

impl Interruptible {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, usize>> {
        // Every update leaves the map consistent.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the connection `id` (`CONNECTION_ID()`) while the guard
    /// lives.
    pub fn enter(&self, id: u32) -> Running<'_> {
        *self.lock().entry(id).or_insert(0) += 1;
        Running { registry: self, id }
    }

    /// The registered connections.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Stops the statement each registered connection runs, from a
    /// connection of its own outside the pool's limit (every pooled one
    /// may be busy with what is to be stopped). The same account may
    /// always stop its own statements, so no privilege is needed.
    pub async fn interrupt(&self, pool: &Pool) -> Result<Vec<u32>> {
        let ids = self.ids();
        if ids.is_empty() {
            return Ok(ids);
        }
        let mut conn = pool.unpooled().await?;
        for id in &ids {
            let kill = format!("KILL QUERY {id}");
            match conn.query_drop(kill.as_str()).await.ctx(|| format!("running {kill}")) {
                Err(e) if e.server_code() == Some(code::NO_SUCH_THREAD) => {}
                other => other?,
            }
        }
        let _ = conn.disconnect().await;
        Ok(ids)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = self.registry.lock();
        if let Some(count) = running.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_stays_registered_until_its_last_guard_goes() {
        let registry = Interruptible::default();
        let first = registry.enter(7);
        let second = registry.enter(7);
        let other = registry.enter(3);
        assert_eq!(registry.ids(), [3, 7]);
        drop(first);
        assert_eq!(registry.ids(), [3, 7]);
        drop(second);
        drop(other);
        assert!(registry.ids().is_empty());
    }
}
