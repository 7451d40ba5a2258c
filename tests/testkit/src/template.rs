//! Template datadirs: each flavour's server is initialised once per
//! version into the target directory, and every server starts from a copy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::Error;
use crate::flavour::Flavour;
use crate::process::is_root;

/// `<server> --version`, e.g. `10.11.6-MariaDB-0+deb12u1` or `9.7.4-2`.
pub(crate) fn server_version(flavour: Flavour) -> Result<String, Error> {
    static VERSIONS: [OnceLock<Result<String, String>>; 2] = [OnceLock::new(), OnceLock::new()];
    VERSIONS[flavour as usize]
        .get_or_init(|| {
            let binary = flavour.server_binary();
            let out = Command::new(&binary)
                .arg("--version")
                .output()
                .map_err(|e| format!("running {} --version: {e}", binary.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            text.split_whitespace()
                .skip_while(|w| *w != "Ver")
                .nth(1)
                .map(str::to_string)
                .ok_or_else(|| format!("unexpected `{} --version` output: {text}", binary.display()))
        })
        .clone()
        .map_err(Error::new)
}

/// The Cargo target directory: `$CARGO_TARGET_DIR`, else the ancestor of the
/// running test binary that holds `CACHEDIR.TAG`, else the temp dir.
pub(crate) fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
            return dir.to_path_buf();
        }
    }
    std::env::temp_dir()
}

/// Initialises a datadir once per flavour and version into
/// `target/testkit-template-<version>`, under an exclusive file lock so
/// parallel test binaries neither race nor repeat the work.
pub(crate) fn template_datadir(flavour: Flavour) -> Result<PathBuf, Error> {
    let version = server_version(flavour)?;
    let safe: String = format!("{}-{version}", flavour.name())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = target_dir();
    fs::create_dir_all(&base).map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
    let template = base.join(format!("testkit-template-{safe}"));
    let marker = template.join(".complete");
    if marker.is_file() {
        return Ok(template);
    }
    let lock_path = base.join(format!("testkit-template-{safe}.lock"));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&lock);
    // SAFETY: a valid open descriptor; the lock is released when `lock` closes.
    if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
        return Err(Error::io(
            format!("locking {}", lock_path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    if marker.is_file() {
        return Ok(template);
    }
    let staging = base.join(format!("testkit-template-{safe}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let _ = fs::remove_dir_all(&template);
    let mut command = flavour.init_command(&staging);
    if is_root() {
        command.arg("--user=root");
    }
    let out = command
        .output()
        .map_err(|e| Error::io(format!("initialising a {flavour} datadir"), e))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "initialising a {flavour} datadir failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    fs::write(staging.join(".complete"), version.as_bytes())
        .map_err(|e| Error::io("marking the template complete", e))?;
    fs::rename(&staging, &template).map_err(|e| Error::io(format!("renaming {}", staging.display()), e))?;
    drop(lock);
    Ok(template)
}

/// Copies the directory tree `from` to `to`, leaving out the template's
/// completion marker and MySQL's `auto.cnf`: without it each server makes
/// its own `server_uuid`, so GTIDs of different servers never collide.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let entries = fs::read_dir(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
        let kind = entry
            .file_type()
            .map_err(|e| Error::io(format!("inspecting {}", entry.path().display()), e))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != ".complete" && entry.file_name() != "auto.cnf" {
            fs::copy(entry.path(), &target).map_err(|e| Error::io(format!("copying {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}
