//! The two servers of a bench run and their scratch space.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::server::{Flavour, Server, ServerOptions};

/// Source and target servers, plus scratch directories; all torn down on drop.
pub struct Rig {
    /// The source server (holds the datasets).
    pub source: Server,
    /// The target server.
    pub target: Server,
    /// Directory both servers may use for `INTO OUTFILE` / `LOAD DATA INFILE`.
    pub files: PathBuf,
    /// Scratch on disk (configs, scripts).
    pub scratch: PathBuf,
    /// Scratch in tmpfs (`/dev/shm`), for dumps.
    pub shm: TempDir,
    // Dropped last, after the servers are gone.
    dir: TempDir,
}

impl Rig {
    /// Boots two `flavour` servers with `buffer_pool` each, under a temp dir
    /// in `base` (the system temp dir if `None`).
    pub fn start(flavour: Flavour, buffer_pool: &str, base: Option<&Path>) -> Result<Rig> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("dbferry-bench-");
        let dir = match base {
            Some(base) => builder.tempdir_in(base),
            None => builder.tempdir(),
        }
        .context("creating the bench's temp dir")?;
        let shm_base = Path::new("/dev/shm");
        let shm = if shm_base.is_dir() {
            builder.tempdir_in(shm_base)
        } else {
            builder.tempdir_in(dir.path())
        }
        .context("creating the bench's tmpfs dir")?;
        let files = dir.path().join("files");
        let scratch = dir.path().join("scratch");
        fs::create_dir_all(&files)?;
        fs::create_dir_all(&scratch)?;
        let options = ServerOptions {
            buffer_pool: buffer_pool.to_string(),
            redo_log: "512M".into(),
            file_dir: files.clone(),
        };
        let source = Server::start(flavour, "source", dir.path(), &options)?;
        let target = Server::start(flavour, "target", dir.path(), &options)?;
        Ok(Rig {
            source,
            target,
            files,
            scratch,
            shm,
            dir,
        })
    }

    /// The temp dir holding datadirs and scratch.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The workspace root (where `target/` lives).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Resolves the dbferry binary: as given if it exists, else relative to the workspace root.
pub fn resolve_binary(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        path.to_path_buf()
    } else {
        workspace_root().join(path)
    }
}
