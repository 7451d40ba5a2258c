//! Throwaway MariaDB servers.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Debian's server binary.
pub(crate) const MARIADBD: &str = "/usr/sbin/mariadbd";
/// The client the SQL helpers shell out to.
pub(crate) const CLIENT: &str = "mariadb";
const INSTALL_DB: &str = "mariadb-install-db";

/// An account with every privilege (`WITH GRANT OPTION`) that every server
/// gets, reachable over TCP from 127.0.0.1. Its password is
/// [`MariaDb::admin_password`].
pub const ADMIN_USER: &str = "dbferry_admin";

/// The redo log size of every server. Large enough for a 64 MiB BLOB row
/// in one transaction.
const LOG_FILE_SIZE: &str = "256M";
/// The template's redo log: small, so copying the template is cheap; each
/// server grows it to [`LOG_FILE_SIZE`] at startup.
const TEMPLATE_LOG_FILE_SIZE: &str = "16M";
/// The name every server directory in the temp dir starts with.
const DIR_PREFIX: &str = "dbferry-mariadb-";
/// The file in a server directory that names the test process owning it.
const OWNER_FILE: &str = "owner.pid";
/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Attempts when the chosen port was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 6;

/// A private MariaDB server: own datadir in a temporary directory, own
/// ephemeral port on 127.0.0.1, killed and removed on drop.
///
/// ```no_run
/// let db = dbferry_testkit::MariaDb::start();
/// db.exec("CREATE DATABASE d");
/// assert_eq!(db.query("SELECT 1+1")[0][0].as_deref(), Some("2"));
/// ```
pub struct MariaDb {
    child: Mutex<Option<Child>>,
    port: u16,
    socket: PathBuf,
    log: PathBuf,
    version: String,
    admin_password: String,
    // Dropped after the child is killed (see Drop).
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for MariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariaDb")
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("version", &self.version)
            .finish()
    }
}

/// Panics, loudly, when MariaDB is not installed.
pub(crate) fn require_installed() {
    let missing: Vec<&str> = [MARIADBD, "/usr/bin/mariadb", "/usr/bin/mariadb-install-db"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        panic!(
            "\n\n==================== MARIADB IS NOT INSTALLED ====================\n\
             dbferry's tests start real MariaDB servers, and {} missing.\n\
             Run `make test` (or `make deps`) from the repository root: it\n\
             installs mariadb-server and mariadb-client, then runs the suite.\n\
             A skipped database test would hide a failure, so this one fails.\n\
             ==================================================================\n",
            missing.join(", ")
        );
    }
}

impl MariaDb {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Panics
    /// If MariaDB is not installed (with a message saying to run `make
    /// test`), or the server does not come up (with its log).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`MariaDb::start`], with extra `mariadbd` options (for example
    /// `--read-only=1`).
    ///
    /// # Panics
    /// As [`MariaDb::start`].
    pub fn start_with(options: &[&str]) -> Self {
        require_installed();
        match Self::try_start(options) {
            Ok(server) => server,
            Err(error) => panic!("dbferry-testkit: cannot start a MariaDB server: {error}"),
        }
    }

    /// The one server of this test binary, started on first use and shared
    /// by all its tests. It is killed and its directory removed when the
    /// process exits (a `static` is never dropped, so a server kept in one
    /// directly would leave its data behind).
    ///
    /// # Panics
    /// As [`MariaDb::start`].
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<&'static MariaDb> = OnceLock::new();
        SHARED.get_or_init(|| MariaDb::start().leak_until_exit())
    }

    /// Starts a server, returning why it failed instead of panicking.
    pub fn try_start(options: &[&str]) -> Result<Self, Error> {
        remove_abandoned_dirs();
        let template = template_datadir()?;
        let version = mariadb_version()?;
        let mut last = Error::new("no attempt made");
        for _ in 0..PORT_ATTEMPTS {
            match Self::attempt(&template, &version, options) {
                Ok(server) => return Ok(server),
                Err(Attempt::PortTaken(error)) => last = error,
                Err(Attempt::Failed(error)) => return Err(error),
            }
        }
        Err(last)
    }

    fn attempt(template: &Path, version: &str, options: &[&str]) -> Result<Self, Attempt> {
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .map_err(|e| Attempt::Failed(Error::io("creating a server directory", e)))?;
        fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .map_err(|e| Attempt::Failed(Error::io("writing the server directory's owner", e)))?;
        let data = dir.path().join("data");
        copy_dir(template, &data).map_err(Attempt::Failed)?;
        let socket = dir.path().join("mysqld.sock");
        let log = dir.path().join("error.log");
        let port = free_port().map_err(Attempt::Failed)?;
        let mut command = Command::new(MARIADBD);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.path().join("mysqld.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--tmpdir={}", dir.path().display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--local-infile=1")
            .arg("--max-allowed-packet=256M")
            .arg("--innodb-buffer-pool-size=64M")
            .arg(format!("--innodb-log-file-size={LOG_FILE_SIZE}"))
            .arg("--innodb-flush-log-at-trx-commit=0")
            .arg("--innodb-doublewrite=0")
            .arg("--skip-log-bin")
            .arg("--performance-schema=OFF")
            .arg("--max-connections=500")
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            command.arg("--user=root");
        }
        let child = spawn_tied(command).map_err(|e| Attempt::Failed(Error::io("spawning mariadbd", e)))?;
        let server = MariaDb {
            child: Mutex::new(Some(child)),
            port,
            socket,
            log,
            version: version.to_string(),
            admin_password: format!("adm-{port}-{}", std::process::id()),
            dir: Some(dir),
        };
        server.wait_ready()?;
        server
            .try_exec(&format!(
                "CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{pw}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION;",
                pw = server.admin_password
            ))
            .map_err(Attempt::Failed)?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<(), Attempt> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = {
                let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
                match guard.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    Some(Err(e)) => Some(e.to_string()),
                    _ => None,
                }
            };
            if let Some(status) = exited {
                let log = self.log_tail();
                let error = Error::new(format!(
                    "mariadbd on port {} exited during startup ({status}); its log:\n{log}",
                    self.port
                ));
                let taken = log.contains("Address already in use") || log.contains("Do you already have another");
                return Err(if taken {
                    Attempt::PortTaken(error)
                } else {
                    Attempt::Failed(error)
                });
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.try_query("SELECT 1").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Attempt::Failed(Error::new(format!(
                    "mariadbd on port {} did not accept connections within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log_tail()
                ))));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server version, as `mariadbd --version` reports it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `mysql://ADMIN_USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mysql://{ADMIN_USER}:{}@127.0.0.1:{}", self.admin_password, self.port)
    }

    /// The password of [`ADMIN_USER`].
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// A plugin session's settings for this server, as [`ADMIN_USER`] over
    /// TCP with no engine options, for tests that drive a plugin directly.
    pub fn session_config(
        &self,
        instance_id: &str,
        max_connections: u32,
    ) -> dbferry_plugin_abi::protocol::SessionConfig {
        dbferry_plugin_abi::protocol::SessionConfig {
            instance_id: instance_id.into(),
            host: self.host().into(),
            port: self.port,
            user: ADMIN_USER.into(),
            password: self.admin_password.clone(),
            max_connections,
            options: Default::default(),
        }
    }

    /// The last 60 lines of the server's error log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Creates `name`@`%` with `password` and applies each grant, written as
    /// `PRIVILEGES ON what`, e.g. `"SELECT, SHOW VIEW ON *.*"`.
    ///
    /// # Panics
    /// If a statement fails.
    pub fn create_user(&self, name: &str, password: &str, grants: &[&str]) {
        let mut sql = format!(
            "CREATE USER {}@'%' IDENTIFIED BY {};\n",
            crate::sql::literal(name),
            crate::sql::literal(password)
        );
        for grant in grants {
            sql.push_str(&format!("GRANT {grant} TO {}@'%';\n", crate::sql::literal(name)));
        }
        self.exec(&sql);
    }

    /// Stops the server now (SIGKILL) and waits for it. Idempotent.
    pub fn kill(&self) {
        let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Keeps this server for the rest of the process (for servers shared by
    /// the tests of one binary through a `static`). It is killed and its
    /// directory removed when the process exits; if the process dies
    /// abruptly, the kernel still kills the server (parent-death signal).
    pub fn leak_until_exit(self) -> &'static MariaDb {
        let leaked: &'static MariaDb = Box::leak(Box::new(self));
        let mut registry = at_exit_registry().lock().unwrap_or_else(PoisonError::into_inner);
        registry.push(leaked);
        leaked
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        // The TempDir is removed after the server is gone.
        drop(self.dir.take());
    }
}

enum Attempt {
    PortTaken(Error),
    Failed(Error),
}

fn at_exit_registry() -> &'static Mutex<Vec<&'static MariaDb>> {
    static REGISTRY: OnceLock<Mutex<Vec<&'static MariaDb>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        extern "C" fn cleanup() {
            if let Some(registry) = REGISTRY.get() {
                let servers = std::mem::take(&mut *registry.lock().unwrap_or_else(PoisonError::into_inner));
                for server in servers {
                    server.kill();
                    if let Some(dir) = &server.dir {
                        let _ = fs::remove_dir_all(dir.path());
                    }
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
/// them (parent-death signal), but each left 300+ MiB of data in the temp
/// dir. Only a directory whose owning process (see [`OWNER_FILE`]) is gone
/// counts as abandoned, so parallel test binaries never touch each other's.
fn remove_abandoned_dirs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| remove_abandoned_dirs_in(&std::env::temp_dir()));
}

fn remove_abandoned_dirs_in(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
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

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
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
        } else if entry.file_name() != ".complete" {
            fs::copy(entry.path(), &target).map_err(|e| Error::io(format!("copying {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}

/// `mariadbd --version`, e.g. `10.11.6-MariaDB-0+deb12u1`.
fn mariadb_version() -> Result<String, Error> {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let out = Command::new(MARIADBD)
                .arg("--version")
                .output()
                .map_err(|e| format!("running {MARIADBD} --version: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            text.split_whitespace()
                .skip_while(|w| *w != "Ver")
                .nth(1)
                .map(str::to_string)
                .ok_or_else(|| format!("unexpected `{MARIADBD} --version` output: {text}"))
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

/// Runs `mariadb-install-db` once per MariaDB version into
/// `target/testkit-template-<version>`, under an exclusive file lock so
/// parallel test binaries neither race nor repeat the work.
fn template_datadir() -> Result<PathBuf, Error> {
    let version = mariadb_version()?;
    let safe: String = version
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
    let mut command = Command::new(INSTALL_DB);
    command
        .arg("--no-defaults")
        .arg(format!("--datadir={}", staging.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg(format!("--innodb-log-file-size={TEMPLATE_LOG_FILE_SIZE}"));
    if is_root() {
        command.arg("--user=root");
    }
    let out = command
        .output()
        .map_err(|e| Error::io(format!("running {INSTALL_DB}"), e))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "{INSTALL_DB} failed ({}):\n{}\n{}",
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

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn server_dir(parent: &Path, name: &str, owner: Option<u32>) -> std::io::Result<PathBuf> {
        let dir = parent.join(format!("{DIR_PREFIX}{name}"));
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

        let abandoned = server_dir(parent.path(), "abandoned", Some(dead_pid))?;
        let ours = server_dir(parent.path(), "ours", Some(std::process::id()))?;
        let starting = server_dir(parent.path(), "starting", None)?;
        let unrelated = parent.path().join("unrelated");
        fs::create_dir_all(&unrelated)?;
        fs::write(unrelated.join(OWNER_FILE), dead_pid.to_string())?;

        remove_abandoned_dirs_in(parent.path());

        assert!(!abandoned.exists(), "a dead owner's directory is removed");
        assert!(ours.exists(), "a live owner's directory stays");
        assert!(starting.exists(), "a directory without an owner file stays");
        assert!(unrelated.exists(), "only dbferry-mariadb-* directories are touched");
        Ok(())
    }
}
