//! The lost sessions on disk, one small file each, so that they outlive
//! the process that lost them: an import that failed because its target
//! stayed unreachable is resumed by another process, which must end them
//! before it redoes their chunks.
//!
//! A file per session needs no lock between processes: each is written
//! whole under a temporary name and renamed, and removing it is atomic.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Incarnation, Lost};

/// Entries older than this are dropped unread: by then the server has ended
/// such a session itself (`net_read_timeout` is 1 h for ours, `wait_timeout`
/// 8 h by default), or will never be reached again.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Why the journal could not be written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An entry could not be encoded.
    #[error("encoding a journal entry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    server: String,
    id: u32,
    incarnation: Incarnation,
    /// Seconds since the epoch on this machine's clock, for [`MAX_AGE`].
    noted: u64,
}

/// The directory of the journal (created on first use).
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The journal in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The file of `session` of `server`: the server is hashed into the
    /// name, since a host name or socket path may hold any character.
    fn file(&self, server: &str, session: Lost) -> PathBuf {
        let hash = Sha256::digest(server.as_bytes());
        let short = hex::encode(&hash[..8]);
        self.dir
            .join(format!("lost-{short}-{}-{}.json", session.incarnation.0, session.id))
    }

    /// Writes `session` of `server` durably enough for a later process.
    pub fn add(&self, server: &str, session: Lost) -> Result<(), JournalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let entry = Entry {
            server: server.to_string(),
            id: session.id,
            incarnation: session.incarnation,
            noted: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        let file = self.file(server, session);
        let temporary = file.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec(&entry)?).map_err(io(&temporary))?;
        std::fs::rename(&temporary, &file).map_err(io(&file))
    }

    /// Removes `session` of `server`; one already removed is fine.
    pub fn remove(&self, server: &str, session: Lost) -> Result<(), JournalError> {
        let file = self.file(server, session);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(JournalError::Io { path: file, source: e }),
            _ => Ok(()),
        }
    }

    /// The sessions of `server` in the journal. Unreadable files are
    /// skipped and entries past [`MAX_AGE`] removed; a journal that cannot
    /// be read at all is empty, with a warning.
    pub fn load(&self, server: &str) -> Vec<Lost> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the journal of lost sessions");
                return Vec::new();
            }
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut found = Vec::new();
        for file in entries.flatten().map(|e| e.path()) {
            let named = file
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("lost-") && n.ends_with(".json"));
            if !named {
                continue;
            }
            let Some(entry) = std::fs::read(&file)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
            else {
                continue;
            };
            if now.saturating_sub(entry.noted) > MAX_AGE.as_secs() {
                let _ = std::fs::remove_file(&file);
            } else if entry.server == server {
                found.push(Lost {
                    id: entry.id,
                    incarnation: entry.incarnation,
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("dbferry-journal-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lost(id: u32) -> Lost {
        Lost {
            id,
            incarnation: Incarnation(1_700_000_000),
        }
    }

    #[test]
    fn a_later_process_finds_what_was_noted_for_its_server_until_it_is_removed() -> Result<(), JournalError> {
        let dir = TempDir::new("roundtrip");
        let journal = Journal::new(dir.0.join("mysql"));
        assert!(journal.load("u@h:1").is_empty(), "no directory yet");
        journal.add("u@h:1", lost(5))?;
        journal.add("u@h:1", lost(6))?;
        journal.add("u@other:1", lost(5))?;
        let later = Journal::new(dir.0.join("mysql"));
        let mut found = later.load("u@h:1");
        found.sort_by_key(|s| s.id);
        assert_eq!(found, vec![lost(5), lost(6)]);
        later.remove("u@h:1", lost(5))?;
        later.remove("u@h:1", lost(5))?;
        assert_eq!(later.load("u@h:1"), vec![lost(6)]);
        assert_eq!(later.load("u@other:1"), vec![lost(5)]);
        Ok(())
    }

    #[test]
    fn stale_and_unreadable_entries_are_skipped() -> Result<(), Box<dyn std::error::Error>> {
        let dir = TempDir::new("stale");
        let journal = Journal::new(dir.0.clone());
        journal.add("u@h:1", lost(1))?;
        let old = Entry {
            server: "u@h:1".into(),
            id: 2,
            incarnation: Incarnation(1_700_000_000),
            noted: 1,
        };
        let old_file = journal.file("u@h:1", lost(2));
        std::fs::write(&old_file, serde_json::to_vec(&old)?)?;
        std::fs::write(dir.0.join("lost-garbage.json"), b"{")?;
        assert_eq!(journal.load("u@h:1"), vec![lost(1)]);
        assert!(!old_file.exists(), "a stale entry is removed");
        Ok(())
    }
}
