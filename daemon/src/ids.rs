//! ImportIds: positive, unique and increasing for the life of a state
//! directory, across `dbferry run` invocations and daemons alike.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::codes::{ErrorCode, Rejection};

/// Takes the next ImportId from `state_dir/import-id`, under an exclusive
/// file lock so concurrent processes never hand out the same id.
pub fn next_import_id(state_dir: &Path) -> Result<u64, Rejection> {
    let internal = |what: String| Rejection::new(ErrorCode::InternalError, what);
    std::fs::create_dir_all(state_dir)
        .map_err(|e| internal(format!("cannot create state_dir {}: {e}", state_dir.display())))?;
    let path = state_dir.join("import-id");
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| internal(format!("cannot open {}: {e}", path.display())))?;
    file.lock().map_err(|e| internal(format!("cannot lock {}: {e}", path.display())))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| internal(format!("cannot read {}: {e}", path.display())))?;
    let last: u64 = text.trim().parse().unwrap_or(0);
    let next = last + 1;
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .and_then(|()| writeln!(file, "{next}"))
        .and_then(|()| file.sync_all())
        .map_err(|e| internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(next)
}

/// A fresh RequestId.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_across_calls_and_threads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ids: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..5).map(|_| next_import_id(dir.path()).expect("id")).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
        });
        ids.sort_unstable();
        assert_eq!(ids, (1..=40).collect::<Vec<_>>());
    }
}
