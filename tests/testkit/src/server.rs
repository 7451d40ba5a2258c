//! Throwaway database servers, MariaDB or Oracle MySQL (see [`Flavour`]).

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::flavour::Flavour;
use crate::process::{free_port, is_root, kill_at_exit, remove_abandoned_dirs, spawn_tied, OWNER_FILE};
use crate::template::{copy_dir, server_version, template_datadir};

/// An account with every privilege (`WITH GRANT OPTION`) that every server
/// gets, reachable over TCP from 127.0.0.1. Its password is
/// [`Server::admin_password`].
pub const ADMIN_USER: &str = "dbferry_admin";

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Attempts when the chosen port was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 6;

/// The name existing tests use: a [`Server`], whose flavour-less
/// constructors ([`Server::start`], [`Server::shared`], ...) start MariaDB.
pub type MariaDb = Server;

/// A private database server: own datadir in a temporary directory, own
/// ephemeral port on 127.0.0.1, killed and removed on drop.
///
/// ```no_run
/// use dbferry_testkit::Flavour;
/// for flavour in Flavour::ALL {
///     let db = flavour.start();
///     db.exec("CREATE DATABASE d");
///     assert_eq!(db.query("SELECT 1+1")[0][0].as_deref(), Some("2"));
/// }
/// ```
pub struct Server {
    flavour: Flavour,
    child: Mutex<Option<Child>>,
    port: u16,
    socket: PathBuf,
    log: PathBuf,
    version: String,
    admin_password: String,
    // Dropped after the child is killed (see Drop).
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("flavour", &self.flavour)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("version", &self.version)
            .finish()
    }
}

impl Flavour {
    /// Starts a server of this flavour and waits until it accepts
    /// connections.
    ///
    /// # Panics
    /// If the flavour is not installed (with a message saying to run `make
    /// test`), or the server does not come up (with its log).
    pub fn start(self) -> Server {
        self.start_with(&[])
    }

    /// Like [`Flavour::start`], with extra server options (for example
    /// `--read-only=1`).
    ///
    /// # Panics
    /// As [`Flavour::start`].
    pub fn start_with(self, options: &[&str]) -> Server {
        self.require_installed();
        match self.try_start(options) {
            Ok(server) => server,
            Err(error) => panic!("dbferry-testkit: cannot start a {self} server: {error}"),
        }
    }

    /// The one server of this flavour in this test binary, started on
    /// first use and shared by all its tests. It is killed and its
    /// directory removed when the process exits (a `static` is never
    /// dropped, so a server kept in one directly would leave its data
    /// behind).
    ///
    /// # Panics
    /// As [`Flavour::start`].
    pub fn shared(self) -> &'static Server {
        static SHARED: [OnceLock<&'static Server>; 2] = [OnceLock::new(), OnceLock::new()];
        SHARED[self as usize].get_or_init(|| self.start().leak_until_exit())
    }

    /// Starts a server, returning why it failed instead of panicking.
    pub fn try_start(self, options: &[&str]) -> Result<Server, Error> {
        remove_abandoned_dirs();
        let template = template_datadir(self)?;
        let version = server_version(self)?;
        let mut last = Error::new("no attempt made");
        for _ in 0..PORT_ATTEMPTS {
            match Server::attempt(self, &template, &version, options) {
                Ok(server) => return Ok(server),
                Err(Attempt::PortTaken(error)) => last = error,
                Err(Attempt::Failed(error)) => return Err(error),
            }
        }
        Err(last)
    }
}

impl Server {
    /// Starts a MariaDB server ([`Flavour::start`] for either flavour).
    ///
    /// # Panics
    /// As [`Flavour::start`].
    pub fn start() -> Self {
        Flavour::MariaDb.start()
    }

    /// Starts a MariaDB server with extra options.
    ///
    /// # Panics
    /// As [`Flavour::start`].
    pub fn start_with(options: &[&str]) -> Self {
        Flavour::MariaDb.start_with(options)
    }

    /// The shared MariaDB server of this test binary ([`Flavour::shared`]).
    ///
    /// # Panics
    /// As [`Flavour::start`].
    pub fn shared() -> &'static Server {
        Flavour::MariaDb.shared()
    }

    /// Starts a MariaDB server, returning why it failed instead of
    /// panicking.
    pub fn try_start(options: &[&str]) -> Result<Self, Error> {
        Flavour::MariaDb.try_start(options)
    }

    fn attempt(flavour: Flavour, template: &std::path::Path, version: &str, options: &[&str]) -> Result<Self, Attempt> {
        let dir = tempfile::Builder::new()
            .prefix(flavour.dir_prefix())
            .tempdir()
            .map_err(|e| Attempt::Failed(Error::io("creating a server directory", e)))?;
        fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .map_err(|e| Attempt::Failed(Error::io("writing the server directory's owner", e)))?;
        let data = dir.path().join("data");
        copy_dir(template, &data).map_err(Attempt::Failed)?;
        let socket = dir.path().join("mysqld.sock");
        let log = dir.path().join("error.log");
        let port = free_port().map_err(Attempt::Failed)?;
        let mut command = Command::new(flavour.server_binary());
        command
            .arg("--no-defaults")
            .args(flavour.server_options(port))
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
            .arg("--innodb-flush-log-at-trx-commit=0")
            .arg("--innodb-doublewrite=OFF")
            .arg("--performance-schema=OFF")
            .arg("--max-connections=500")
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            command.arg("--user=root");
        }
        let child =
            spawn_tied(command).map_err(|e| Attempt::Failed(Error::io(format!("spawning the {flavour} server"), e)))?;
        let server = Server {
            flavour,
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
                    "the {} server on port {} exited during startup ({status}); its log:\n{log}",
                    self.flavour, self.port
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
                    "the {} server on port {} did not accept connections within {START_TIMEOUT:?}; its log:\n{}",
                    self.flavour,
                    self.port,
                    self.log_tail()
                ))));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Which engine this server runs.
    pub fn flavour(&self) -> Flavour {
        self.flavour
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
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The server's data directory (where MySQL keeps the certificates it
    /// generates for itself: `ca.pem`, `server-cert.pem`).
    pub fn datadir(&self) -> PathBuf {
        self.socket.with_file_name("data")
    }

    /// The server version, as `<server> --version` reports it (e.g.
    /// `10.11.6-MariaDB-0+deb12u1`, `9.7.4-2`).
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
        self.session_config_as(instance_id, max_connections, ADMIN_USER, &self.admin_password)
    }

    /// Like [`Server::session_config`], logging in as `user`.
    pub fn session_config_as(
        &self,
        instance_id: &str,
        max_connections: u32,
        user: &str,
        password: &str,
    ) -> dbferry_plugin_abi::protocol::SessionConfig {
        dbferry_plugin_abi::protocol::SessionConfig {
            instance_id: instance_id.into(),
            host: self.host().into(),
            port: self.port,
            user: user.into(),
            password: password.into(),
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

    /// Removes the server's directory (for a leaked server, once killed).
    pub(crate) fn remove_dir(&self) {
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir_all(dir.path());
        }
    }

    /// Keeps this server for the rest of the process (for servers shared by
    /// the tests of one binary through a `static`). It is killed and its
    /// directory removed when the process exits; if the process dies
    /// abruptly, the kernel still kills the server (parent-death signal).
    pub fn leak_until_exit(self) -> &'static Server {
        let leaked: &'static Server = Box::leak(Box::new(self));
        kill_at_exit(leaked);
        leaked
    }
}

impl Drop for Server {
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
