//! Process plumbing of the harness: servers tied to the test process's
//! life, cleanup at exit, and leftovers of test processes that died.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock, PoisonError};

use crate::error::Error;
use crate::flavour::Flavour;
use crate::server::Server;

/// The file in a server directory that names the test process owning it.
pub(crate) const OWNER_FILE: &str = "owner.pid";

/// Registers `server` to be killed and its directory removed when the
/// process exits.
pub(crate) fn kill_at_exit(server: &'static Server) {
    at_exit_registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(server);
}

fn at_exit_registry() -> &'static Mutex<Vec<&'static Server>> {
    static REGISTRY: OnceLock<Mutex<Vec<&'static Server>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        extern "C" fn cleanup() {
            if let Some(registry) = REGISTRY.get() {
                let servers = std::mem::take(&mut *registry.lock().unwrap_or_else(PoisonError::into_inner));
                for server in servers {
                    server.kill();
                    server.remove_dir();
                }
            }
        }
        // SAFETY: registers a plain `extern "C"` function without arguments.
        unsafe {
            libc::atexit(cleanup);
        }
        Mutex::new(Vec::new())
    })
}

/// Removes, once per process, the server directories of test processes
/// that died without cleaning up (Ctrl-C, SIGKILL). Their servers died with
/// them (parent-death signal), but each left 100+ MiB of data in the temp
/// dir. Only a directory whose owning process (see [`OWNER_FILE`]) is gone
/// counts as abandoned, so parallel test binaries never touch each other's.
pub(crate) fn remove_abandoned_dirs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| remove_abandoned_dirs_in(&std::env::temp_dir()));
}

pub(crate) fn remove_abandoned_dirs_in(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !Flavour::ALL.iter().any(|f| name.starts_with(f.dir_prefix())) {
            continue;
        }
        let Ok(owner) = fs::read_to_string(entry.path().join(OWNER_FILE)) else {
            continue;
        };
        let Ok(owner) = owner.trim().parse::<libc::pid_t>() else {
            continue;
        };
        if !process_exists(owner) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn process_exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from one long-lived thread, with a parent-death signal
/// (SIGKILL) so servers never outlive a test process that dies abruptly.
/// The signal fires when the *spawning thread* exits, hence the dedicated
/// thread that lives as long as the process.
pub(crate) fn spawn_tied(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            std::thread::Builder::new()
                .name("testkit-spawner".into())
                .spawn(move || {
                    for (mut command, reply) in rx {
                        // SAFETY: prctl is async-signal-safe and touches no
                        // memory of the parent.
                        unsafe {
                            command.pre_exec(|| {
                                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                    return Err(std::io::Error::last_os_error());
                                }
                                Ok(())
                            });
                        }
                        let _ = reply.send(command.spawn());
                    }
                })
                .map(|_| ())
                .unwrap_or(());
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .send((command, reply_tx))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

pub(crate) fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn server_dir(parent: &Path, prefix: &str, name: &str, owner: Option<u32>) -> std::io::Result<PathBuf> {
        let dir = parent.join(format!("{prefix}{name}"));
        fs::create_dir_all(dir.join("data"))?;
        if let Some(pid) = owner {
            fs::write(dir.join(OWNER_FILE), pid.to_string())?;
        }
        Ok(dir)
    }

    #[test]
    fn only_directories_of_dead_owners_are_removed() -> TestResult {
        let parent = tempfile::tempdir()?;
        let mut finished = Command::new("true").spawn()?;
        let dead_pid = finished.id();
        finished.wait()?;
        let maria = Flavour::MariaDb.dir_prefix();
        let mysql = Flavour::MySql.dir_prefix();

        let abandoned = server_dir(parent.path(), maria, "abandoned", Some(dead_pid))?;
        let abandoned_mysql = server_dir(parent.path(), mysql, "abandoned", Some(dead_pid))?;
        let ours = server_dir(parent.path(), maria, "ours", Some(std::process::id()))?;
        let starting = server_dir(parent.path(), mysql, "starting", None)?;
        let unrelated = parent.path().join("unrelated");
        fs::create_dir_all(&unrelated)?;
        fs::write(unrelated.join(OWNER_FILE), dead_pid.to_string())?;

        remove_abandoned_dirs_in(parent.path());

        assert!(!abandoned.exists(), "a dead owner's directory is removed");
        assert!(!abandoned_mysql.exists(), "whatever the flavour");
        assert!(ours.exists(), "a live owner's directory stays");
        assert!(starting.exists(), "a directory without an owner file stays");
        assert!(unrelated.exists(), "only dbferry-<flavour>-* directories are touched");
        Ok(())
    }
}
