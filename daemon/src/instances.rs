//! Instance states (CONTRACT §7) and reservations.
//!
//! An import reserves its two instances before its server-side prechecks,
//! so two imports cannot both pass rule 5 for the same instance. The
//! reservation is a guard: however the import ends (success, failure,
//! cancellation, panic) dropping it returns both instances to `Running`.
//! A lock file per instance in `state_dir` extends the rule across
//! processes: a `dbferry run` and a daemon never import into one instance
//! at once.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::codes::{ErrorCode, Rejection};
use crate::metrics::Metrics;

/// An instance's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum InstanceState {
    /// Available.
    Running,
    /// Source of a running import.
    Migrating,
    /// Target of a running import.
    Importing,
    /// Cannot be reached.
    Unavailable,
}

impl InstanceState {
    /// Every state, for the gauge.
    pub const ALL: [InstanceState; 4] = [
        InstanceState::Running,
        InstanceState::Migrating,
        InstanceState::Importing,
        InstanceState::Unavailable,
    ];

    /// The name the contract uses.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Running => "Running",
            InstanceState::Migrating => "Migrating",
            InstanceState::Importing => "Importing",
            InstanceState::Unavailable => "Unavailable",
        }
    }
}

#[derive(Debug)]
struct Entry {
    engine: String,
    state: InstanceState,
    reserved_by: Option<u64>,
}

/// Every instance's state, mirrored into `dbferry_instance_state`.
#[derive(Clone)]
pub struct InstanceRegistry {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    metrics: Metrics,
    lock_dir: PathBuf,
}

impl InstanceRegistry {
    /// A registry of `(id, engine)` instances, all `Running`.
    pub fn new<'a>(
        instances: impl IntoIterator<Item = (&'a str, &'a str)>,
        metrics: Metrics,
        state_dir: &Path,
    ) -> Self {
        let registry = Self {
            entries: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            lock_dir: state_dir.join("locks"),
        };
        for (id, engine) in instances {
            registry.add(id, engine);
        }
        registry
    }

    /// Adds an instance (config reload) in state `Running`, if it is new.
    pub fn add(&self, id: &str, engine: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.entry(id.to_string()).or_insert_with(|| Entry {
            engine: engine.to_string(),
            state: InstanceState::Running,
            reserved_by: None,
        });
        self.publish(id, engine, InstanceState::Running);
    }

    fn publish(&self, id: &str, engine: &str, current: InstanceState) {
        for state in InstanceState::ALL {
            self.metrics
                .instance_state
                .with_label_values(&[id, engine, state.as_str()])
                .set(i64::from(state == current));
        }
    }

    fn set(&self, id: &str, state: InstanceState) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(id) {
            entry.state = state;
            self.publish(id, &entry.engine, state);
        }
    }

    /// The state of an instance.
    pub fn state(&self, id: &str) -> Option<InstanceState> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|e| e.state)
    }

    /// Marks an instance that could not be reached, unless an import holds it.
    pub fn mark_unavailable(&self, id: &str) {
        if self.reserved_by(id).is_none() {
            self.set(id, InstanceState::Unavailable);
        }
    }

    /// Marks an instance that answered again, unless an import holds it.
    pub fn mark_reachable(&self, id: &str) {
        if self.reserved_by(id).is_none() {
            self.set(id, InstanceState::Running);
        }
    }

    fn reserved_by(&self, id: &str) -> Option<u64> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .and_then(|e| e.reserved_by)
    }

    /// Reserves `source` and `target` for import `import_id`, or explains
    /// why one of them is not free (rule 5).
    pub fn reserve(&self, source: &str, target: &str, import_id: u64) -> Result<Reservation, Rejection> {
        let busy = |id: &str, by: u64| {
            Rejection::new(
                ErrorCode::IncorrectInstanceState,
                format!("instance {id} is not Running: it is in import {by}"),
            )
        };
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            for id in [source, target] {
                let entry = entries.get(id).ok_or_else(|| {
                    Rejection::new(ErrorCode::InstanceNotFound, format!("the instance {id} is not found"))
                })?;
                if let Some(by) = entry.reserved_by {
                    return Err(busy(id, by));
                }
            }
            for id in [source, target] {
                if let Some(entry) = entries.get_mut(id) {
                    entry.reserved_by = Some(import_id);
                }
            }
        }
        let mut reservation = Reservation {
            registry: self.clone(),
            ids: [source.to_string(), target.to_string()],
            locks: Vec::new(),
            import_id,
        };
        for id in [source, target] {
            reservation.locks.push(self.lock_file(id)?);
        }
        Ok(reservation)
    }

    fn lock_file(&self, id: &str) -> Result<File, Rejection> {
        let internal = |what: String| Rejection::new(ErrorCode::InternalError, what);
        std::fs::create_dir_all(&self.lock_dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", self.lock_dir.display())))?;
        let name: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.lock_dir.join(format!("{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| internal(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(Rejection::new(
                ErrorCode::IncorrectInstanceState,
                format!("instance {id} is not Running: another dbferry process is importing with it"),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(internal(format!("cannot lock {}: {e}", path.display()))),
        }
    }
}

/// Holds two instances for one import; releases them when dropped.
pub struct Reservation {
    registry: InstanceRegistry,
    ids: [String; 2],
    locks: Vec<File>,
    import_id: u64,
}

impl Reservation {
    /// The import holding it.
    pub fn import_id(&self) -> u64 {
        self.import_id
    }

    /// One of the two instances cannot be reached while the import waits for it.
    pub fn mark_unavailable(&self, id: &str) {
        if self.ids.iter().any(|held| held == id) {
            self.registry.set(id, InstanceState::Unavailable);
        }
    }

    /// The import starts changing things: source `Migrating`, target `Importing`.
    pub fn activate(&self) {
        self.registry.set(&self.ids[0], InstanceState::Migrating);
        self.registry.set(&self.ids[1], InstanceState::Importing);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for id in &self.ids {
            {
                let mut entries = self.registry.entries.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(entry) = entries.get_mut(id) {
                    entry.reserved_by = None;
                }
            }
            self.registry.set(id, InstanceState::Running);
        }
        // Dropping the files releases the cross-process locks.
        self.locks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_exclude_each_other_and_always_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = InstanceRegistry::new(
            [("s", "mysql"), ("t", "mysql"), ("u", "mysql")],
            Metrics::new(),
            dir.path(),
        );
        let held = registry.reserve("s", "t", 1).expect("free");
        held.activate();
        assert_eq!(registry.state("s"), Some(InstanceState::Migrating));
        assert_eq!(registry.state("t"), Some(InstanceState::Importing));
        let busy = registry.reserve("u", "t", 2).err().expect("t is busy");
        assert_eq!(busy.code, ErrorCode::IncorrectInstanceState);
        drop(held);
        assert_eq!(registry.state("s"), Some(InstanceState::Running));
        assert!(registry.reserve("u", "t", 3).is_ok());
    }

    #[test]
    fn a_second_process_cannot_take_a_held_instance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = InstanceRegistry::new([("s", "mysql"), ("t", "mysql")], Metrics::new(), dir.path());
        let two = InstanceRegistry::new([("s", "mysql"), ("t", "mysql")], Metrics::new(), dir.path());
        let _held = one.reserve("s", "t", 1).expect("free");
        let refused = two.reserve("t", "s", 2).err().expect("locked by the other registry");
        assert_eq!(refused.code, ErrorCode::IncorrectInstanceState);
    }
}
