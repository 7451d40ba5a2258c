//! The drop-in directory: every new `*.toml` in `jobs_dir` becomes an import.
//!
//! inotify (through `notify`) reacts at once; a rescan every [`RESCAN`]
//! catches what inotify misses (network filesystems, overflows). A job still
//! being written is never read half-way: a file is taken once its writer
//! closed it (inotify's close-after-write), or, for a file no event told
//! about, once its size and mtime stood still for [`SETTLE`]. The same name
//! and content is imported once, ever: the store remembers a fingerprint in
//! the transaction that creates the import.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::Watcher;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};

use super::executor::Executor;
use crate::codes::{ErrorCode, Rejection};
use crate::diag::Source;
use crate::job::Job;

/// How often the directory is rescanned without an inotify event.
pub const RESCAN: Duration = Duration::from_secs(1);
/// How long a file no close event told about must stand still before it is read.
pub const SETTLE: Duration = Duration::from_secs(5);
/// How long after its writer closed it a file is read.
const AFTER_CLOSE: Duration = Duration::from_millis(200);
/// Job files larger than this are refused unread.
pub const MAX_JOB_BYTES: u64 = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: SystemTime,
}

/// What the watcher remembers between scans.
#[derive(Default)]
struct Tracked {
    /// Files still settling, as last seen.
    pending: HashMap<PathBuf, Seen>,
    /// Files already decided (imported, refused, or seen before), as they
    /// were then: they are not read again unless they change.
    taken: HashMap<PathBuf, Seen>,
}

/// What inotify said about a file.
enum Change {
    /// Its writer closed it.
    Closed(PathBuf),
    /// It was written to (again).
    Written(PathBuf),
    /// Something else happened in the directory.
    Other,
}

/// Files whose writer closed them since they were last written.
#[derive(Default)]
struct Closed(HashSet<PathBuf>);

impl Closed {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Closed(path) => {
                self.0.insert(path);
            }
            Change::Written(path) => {
                self.0.remove(&path);
            }
            Change::Other => {}
        }
    }
}

/// Watches `dir` until `shutdown` fires.
pub async fn watch(dir: PathBuf, executor: Executor, mut shutdown: broadcast::Receiver<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Change>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
        let Ok(event) = event else {
            let _ = tx.send(Change::Other);
            return;
        };
        for path in event.paths {
            let change = match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Closed(path),
                EventKind::Modify(ModifyKind::Data(_)) | EventKind::Create(_) => Change::Written(path),
                _ => Change::Other,
            };
            let _ = tx.send(change);
        }
    })
    .and_then(|mut w| w.watch(&dir, notify::RecursiveMode::NonRecursive).map(|()| w));
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "inotify unavailable; relying on periodic rescans");
            None
        }
    };
    let mut tracked = Tracked::default();
    let mut closed = Closed::default();
    let mut tick = tokio::time::interval(RESCAN);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            change = rx.recv() => match change {
                Some(change) => closed.apply(change),
                None => return,
            },
            _ = tick.tick() => {}
        }
        // Let a burst of events (and a just-closed file) settle into one scan.
        tokio::time::sleep(AFTER_CLOSE).await;
        while let Ok(change) = rx.try_recv() {
            closed.apply(change);
        }
        let (d, ex, p, c) = (
            dir.clone(),
            executor.clone(),
            std::mem::take(&mut tracked),
            closed.0.clone(),
        );
        match tokio::task::spawn_blocking(move || scan(&d, &ex, p, &c)).await {
            Ok(next) => {
                closed.0.retain(|p| next.pending.contains_key(p));
                tracked = next;
            }
            Err(e) => tracing::error!(error = %e, "job scan failed"),
        }
    }
}

/// One pass over the directory.
fn scan(dir: &Path, executor: &Executor, mut tracked: Tracked, closed: &HashSet<PathBuf>) -> Tracked {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read jobs_dir");
            return tracked;
        }
    };
    let mut next = Tracked::default();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path).or_else(|_| std::fs::symlink_metadata(&path)) else {
            continue;
        };
        let seen = Seen {
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        };
        if tracked.taken.get(&path) == Some(&seen) {
            next.taken.insert(path, seen);
            continue;
        }
        let age = seen.modified.elapsed().unwrap_or_default();
        let unchanged = tracked.pending.remove(&path) == Some(seen);
        let settled = (closed.contains(&path) && age >= AFTER_CLOSE) || (unchanged && age >= SETTLE);
        if settled && take(dir, &path, seen, executor) {
            next.taken.insert(path, seen);
        } else {
            next.pending.insert(path, seen);
        }
    }
    next
}

fn fingerprint(name: &str, content: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(name.as_bytes());
    hash.update([0]);
    hash.update(content);
    hex::encode(hash.finalize())
}

/// Reads one settled file and hands it to the executor (or records why not).
/// Returns whether the file is decided; `false` leaves it for the next scan.
fn take(dir: &Path, path: &Path, seen: Seen, executor: &Executor) -> bool {
    let origin = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let refuse = |fingerprint: &str, message: String| {
        if matches!(executor.store().job_seen(fingerprint), Ok(Some(_))) {
            return true;
        }
        tracing::error!(file = %origin, %message, "job file refused");
        let rejection = Rejection::new(ErrorCode::InvalidParameter, format!("{origin}: {message}"));
        match executor.record_rejected(&origin, "", Some(fingerprint), &rejection) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(file = %origin, error = %e, "cannot record a refused job file");
                false
            }
        }
    };
    let meta_print = fingerprint(&name, format!("{}:{:?}", seen.len, seen.modified).as_bytes());

    if let Ok(link) = std::fs::symlink_metadata(path) {
        if link.file_type().is_symlink() {
            let inside = std::fs::canonicalize(path)
                .ok()
                .zip(std::fs::canonicalize(dir).ok())
                .is_some_and(|(target, dir)| target.starts_with(dir));
            if !inside {
                return refuse(
                    &meta_print,
                    "a symbolic link that leads out of jobs_dir; refused".into(),
                );
            }
        }
    }
    if seen.len > MAX_JOB_BYTES {
        return refuse(
            &meta_print,
            format!("{} bytes; job files are at most {MAX_JOB_BYTES} bytes", seen.len),
        );
    }
    let mut content = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(MAX_JOB_BYTES + 1).read_to_end(&mut content));
    if let Err(e) = read {
        tracing::warn!(file = %origin, error = %e, "cannot read job file; will retry");
        return false;
    }
    let print = fingerprint(&name, &content);
    match executor.store().job_seen(&print) {
        Ok(Some(_)) => return true,
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "state store unavailable; job file left for the next scan");
            return false;
        }
    }
    let Ok(text) = String::from_utf8(content) else {
        return refuse(&print, "not UTF-8 text; a job file is TOML (CONTRACT §3)".into());
    };
    match Job::parse(&Source::new(path, text.clone())) {
        Ok(job) => match executor.submit(job, &origin, &text, Some(&print)) {
            Ok(_) => true,
            Err(rejection) => {
                tracing::error!(file = %origin, %rejection, "job not accepted; retried at the next scan");
                false
            }
        },
        Err(diags) => {
            for diag in &diags.0 {
                tracing::error!(file = %origin, code = diag.code.as_str(), "{diag}");
            }
            let rejection = Rejection::new(diags.code(), diags.to_string());
            match executor.record_rejected(&origin, &text, Some(&print), &rejection) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(file = %origin, error = %e, "cannot record a refused job file");
                    false
                }
            }
        }
    }
}
