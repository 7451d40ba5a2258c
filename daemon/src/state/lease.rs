//! Who is running an import right now: a lock file per import in
//! `state_dir/leases`, held with `flock` for as long as a process runs it.
//!
//! The kernel drops the lock when the process dies, however it dies, so a
//! `Running` record whose lease is free was abandoned (a `dbferry run`
//! killed with SIGKILL, say) and may be resumed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// An import held by this process until dropped.
#[derive(Debug)]
pub struct ImportLease {
    _file: File,
}

impl ImportLease {
    /// Takes the lease of import `id`; `Ok(None)` when another process holds it.
    pub fn acquire(state_dir: &Path, id: u64) -> std::io::Result<Option<Self>> {
        let dir = state_dir.join("leases");
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("import-{id}.lock")))?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked == 0 {
            return Ok(Some(Self { _file: file }));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() == std::io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_once_and_freed_on_drop() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = ImportLease::acquire(dir.path(), 7)?;
        assert!(first.is_some());
        assert!(
            ImportLease::acquire(dir.path(), 7)?.is_none(),
            "a second open file description is refused"
        );
        assert!(ImportLease::acquire(dir.path(), 8)?.is_some(), "other imports are free");
        drop(first);
        assert!(ImportLease::acquire(dir.path(), 7)?.is_some());
        Ok(())
    }
}
