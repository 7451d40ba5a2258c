//! Durable state in `state_dir/dbferry.sqlite`: imports, their plans and
//! per-chunk checkpoints, the ImportId sequence, the job files already seen.
//!
//! SQLite in WAL mode with `synchronous = FULL`: a checkpoint that
//! [`Store::record_chunks`] returned from survives `kill -9` and power loss.
//! A running copy calls it every [`dbferry_copy_core::FLUSH_INTERVAL`] with
//! the chunks committed since (see [`StoredImport`]).
//! Several processes (a daemon and `dbferry run`s) may share one state
//! directory; SQLite serialises their writes.

mod checkpoints;
mod lease;
mod schema;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use dbferry_copy_core::{ChunkId, ChunkStats};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

pub use checkpoints::StoredImport;
pub use lease::ImportLease;

use crate::import::ImportResult;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("cannot create state_dir {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("state store {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored JSON document could not be read back.
    #[error("state store {}: corrupt {what}: {message}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which document.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// One import as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The ImportId.
    pub id: u64,
    /// The RequestId.
    pub request_id: String,
    /// Source instance.
    pub source_id: String,
    /// Target instance.
    pub target_id: String,
    /// Requesting account.
    pub owner: String,
    /// Where the request came from: a job file path, `api` or `run`.
    pub origin: String,
    /// The job, as TOML text, to rebuild it on resume.
    pub job: String,
    /// `Pending`, `Running`, `Success`, `Failed`, `Cancelled`.
    pub status: String,
    /// Contract code on failure.
    pub code: Option<String>,
    /// Failure message.
    pub message: Option<String>,
    /// Rows copied.
    pub rows: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when it ended.
    pub ended_at: Option<i64>,
    /// The final result object, when it ended.
    pub result: Option<serde_json::Value>,
}

/// A new import to store.
#[derive(Clone, Debug)]
pub struct NewImport<'a> {
    /// The RequestId.
    pub request_id: &'a str,
    /// Source instance.
    pub source_id: &'a str,
    /// Target instance.
    pub target_id: &'a str,
    /// Requesting account.
    pub owner: &'a str,
    /// Where the request came from.
    pub origin: &'a str,
    /// The job as TOML text.
    pub job: &'a str,
    /// For a job file: its fingerprint, remembered in the same transaction
    /// so a crash can never import the same file twice.
    pub fingerprint: Option<&'a str>,
}

/// The durable store.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Status queries read through their own connection: in WAL mode they
    /// then never wait for, nor delay, an import's checkpoint writes.
    reader: Mutex<Connection>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens (creating if needed) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join("dbferry.sqlite");
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite)?;
        schema::migrate(&conn).map_err(sqlite)?;
        let reader = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
        reader
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sqlite)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Stores a new import as `Pending` and returns its ImportId: positive,
    /// unique and increasing for the life of the state directory.
    pub fn create_import(&self, new: &NewImport<'_>) -> Result<u64, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO imports (request_id, source_id, target_id, owner, origin, job, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Pending', ?7)",
                params![
                    new.request_id,
                    new.source_id,
                    new.target_id,
                    new.owner,
                    new.origin,
                    new.job,
                    now()
                ],
            )?;
            let id = tx.last_insert_rowid();
            if let Some(fingerprint) = new.fingerprint {
                tx.execute(
                    "INSERT OR IGNORE INTO seen_jobs (fingerprint, file, import_id, seen_at) VALUES (?1, ?2, ?3, ?4)",
                    params![fingerprint, new.origin, id, now()],
                )?;
            }
            tx.commit()?;
            Ok(id as u64)
        })
    }

    /// Sets an import's status (and progress so far).
    pub fn set_status(&self, id: u64, status: &str, rows: u64, bytes: u64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE imports SET status = ?2, rows = ?3, bytes = ?4 WHERE id = ?1",
                params![id as i64, status, rows as i64, bytes as i64],
            )
            .map(|_| ())
        })
    }

    /// Records how an import ended.
    pub fn finish(&self, result: &ImportResult) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE imports SET status = ?2, code = ?3, message = ?4, rows = ?5, bytes = ?6, ended_at = ?7, result = ?8 WHERE id = ?1",
                params![
                    result.import_id as i64,
                    result.status.as_str(),
                    result.code.map(|c| c.as_str()),
                    result.message,
                    result.rows as i64,
                    result.bytes as i64,
                    now(),
                    result.to_json().to_string()
                ],
            )
            .map(|_| ())
        })
    }

    /// Stores the import's chunk plan (written once, before any chunk is copied).
    pub fn save_plan<T: Serialize>(&self, id: u64, plan: &T) -> Result<(), StoreError> {
        let json = serde_json::to_string(plan).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            what: "plan",
            message: e.to_string(),
        })?;
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO plans (import_id, plan) VALUES (?1, ?2)",
                params![id as i64, json],
            )
            .map(|_| ())
        })
    }

    /// The stored plan, if one was saved.
    pub fn load_plan<T: for<'de> Deserialize<'de>>(&self, id: u64) -> Result<Option<T>, StoreError> {
        let json: Option<String> = self.with(|c| {
            c.query_row("SELECT plan FROM plans WHERE import_id = ?1", params![id as i64], |r| {
                r.get(0)
            })
            .optional()
            .map(Option::flatten)
        })?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: "plan",
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// Records committed chunks in one transaction. Idempotent.
    pub fn record_chunks(&self, id: u64, chunks: &[(ChunkId, ChunkStats)]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                // Cached: on 1,000 small tables, re-preparing it per chunk showed in the profile.
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO chunks (import_id, table_index, ordinal, rows, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (chunk, stats) in chunks {
                    insert.execute(params![
                        id as i64,
                        chunk.table,
                        chunk.ordinal,
                        stats.rows as i64,
                        stats.bytes as i64
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Forgets the checkpoints of some tables of an import, so that a
    /// resume copies them again whole.
    pub fn forget_tables(&self, id: u64, tables: &[u32]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for table in tables {
                tx.execute(
                    "DELETE FROM chunks WHERE import_id = ?1 AND table_index = ?2",
                    params![id as i64, table],
                )?;
            }
            tx.commit()
        })
    }

    /// Puts an ended (or abandoned) import back to `Pending` so it can be
    /// resumed; `false` when its status is not one of `from`.
    pub fn reopen(&self, id: u64, from: &[&str]) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut changed = 0;
            for status in from {
                changed += c.execute(
                    "UPDATE imports SET status = 'Pending', code = NULL, message = NULL, ended_at = NULL, result = NULL
                     WHERE id = ?1 AND status = ?2",
                    params![id as i64, status],
                )?;
            }
            Ok(changed > 0)
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Every committed chunk of an import.
    pub fn committed_chunks(&self, id: u64) -> Result<Vec<(ChunkId, ChunkStats)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT table_index, ordinal, rows, bytes FROM chunks WHERE import_id = ?1")?;
            let rows = stmt.query_map(params![id as i64], |r| {
                Ok((
                    ChunkId {
                        table: r.get(0)?,
                        ordinal: r.get(1)?,
                    },
                    ChunkStats {
                        rows: r.get::<_, i64>(2)? as u64,
                        bytes: r.get::<_, i64>(3)? as u64,
                    },
                ))
            })?;
            rows.collect()
        })
    }

    fn read_import(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportRecord> {
        let result: Option<String> = r.get(14)?;
        Ok(ImportRecord {
            id: r.get::<_, i64>(0)? as u64,
            request_id: r.get(1)?,
            source_id: r.get(2)?,
            target_id: r.get(3)?,
            owner: r.get(4)?,
            origin: r.get(5)?,
            job: r.get(6)?,
            status: r.get(7)?,
            code: r.get(8)?,
            message: r.get(9)?,
            rows: r.get::<_, i64>(10)? as u64,
            bytes: r.get::<_, i64>(11)? as u64,
            created_at: r.get(12)?,
            ended_at: r.get(13)?,
            result: result.and_then(|j| serde_json::from_str(&j).ok()),
        })
    }

    const COLUMNS: &'static str = "id, request_id, source_id, target_id, owner, origin, job, status, code, message, rows, bytes, created_at, ended_at, result";

    /// One import.
    pub fn import(&self, id: u64) -> Result<Option<ImportRecord>, StoreError> {
        let sql = format!("SELECT {} FROM imports WHERE id = ?1", Self::COLUMNS);
        self.read(|c| c.query_row(&sql, params![id as i64], Self::read_import).optional())
    }

    /// Imports, newest first; `unfinished_only` keeps `Pending` and `Running` ones.
    pub fn imports(&self, unfinished_only: bool) -> Result<Vec<ImportRecord>, StoreError> {
        let filter = if unfinished_only {
            "WHERE status IN ('Pending', 'Running')"
        } else {
            ""
        };
        let sql = format!("SELECT {} FROM imports {filter} ORDER BY id DESC", Self::COLUMNS);
        self.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([], Self::read_import)?;
            rows.collect()
        })
    }

    /// The import a job file with this fingerprint became, if it was seen.
    pub fn job_seen(&self, fingerprint: &str) -> Result<Option<u64>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT import_id FROM seen_jobs WHERE fingerprint = ?1",
                params![fingerprint],
                |r| r.get::<_, i64>(0).map(|i| i as u64),
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn new_import(store: &Store) -> u64 {
        store
            .create_import(&NewImport {
                request_id: "R",
                source_id: "s",
                target_id: "t",
                owner: "o",
                origin: "run",
                job: "",
                fingerprint: None,
            })
            .expect("create")
    }

    #[test]
    fn ids_increase_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = {
            let store = Store::open(dir.path()).expect("open");
            let a = new_import(&store);
            let b = new_import(&store);
            assert!(b > a && a > 0);
            b
        };
        let store = Store::open(dir.path()).expect("reopen");
        assert!(new_import(&store) > first);
    }

    #[test]
    fn chunks_plans_and_results_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let id = new_import(&store);
        let chunk = ChunkId { table: 2, ordinal: 7 };
        store
            .record_chunks(id, &[(chunk, ChunkStats { rows: 10, bytes: 99 })])
            .expect("record");
        store
            .record_chunks(id, &[(chunk, ChunkStats { rows: 10, bytes: 99 })])
            .expect("again is harmless");
        assert_eq!(
            store.committed_chunks(id).expect("chunks"),
            vec![(chunk, ChunkStats { rows: 10, bytes: 99 })]
        );
        store.save_plan(id, &vec![1, 2, 3]).expect("plan");
        assert_eq!(store.load_plan::<Vec<i32>>(id).expect("load"), Some(vec![1, 2, 3]));
        assert_eq!(store.imports(true).expect("list").len(), 1);
        let mut result = ImportResult::new(id, "R".into());
        result.status = crate::import::ImportStatus::Success;
        result.rows = 10;
        store.finish(&result).expect("finish");
        assert!(store.imports(true).expect("list").is_empty());
        let record = store.import(id).expect("get").expect("exists");
        assert_eq!((record.status.as_str(), record.rows), ("Success", 10));
        assert!(store.job_seen("fp").expect("seen").is_none());
        let file = store
            .create_import(&NewImport {
                request_id: "R2",
                source_id: "s",
                target_id: "t",
                owner: "o",
                origin: "a.toml",
                job: "",
                fingerprint: Some("fp"),
            })
            .expect("create");
        assert_eq!(store.job_seen("fp").expect("seen"), Some(file));
    }
}
