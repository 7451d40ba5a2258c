//! Throwaway Babelfish for PostgreSQL servers: the real TDS / T-SQL server
//! the SQL Server engine is tested against (no Microsoft SQL Server can run
//! on the build machines).
//!
//! Each server gets a private datadir in the temp dir, ephemeral TDS and
//! PostgreSQL ports on 127.0.0.1, TLS with a certificate signed by a private CA made
//! here, multi-db mode and the SQL login [`BABELFISH_USER`]. It runs as
//! `nobody` when the tests run as root (PostgreSQL refuses root), dies with
//! the test process (parent-death signal) and is stopped and removed on
//! drop, or at exit for a shared one.
//!
//! The build comes from `make babelfish` (see README). Without it
//! [`Babelfish::for_test`] prints a loud SKIPPED line and returns `None`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::process::{free_port, is_root, spawn_tied};
use crate::template::target_dir;

/// The SQL login every server has (a sysadmin: `CREATE DATABASE` and all).
pub const BABELFISH_USER: &str = "ferry";
/// The password of [`BABELFISH_USER`].
pub const BABELFISH_PASSWORD: &str = "Ferry-pw1";
/// The PostgreSQL database Babelfish keeps every T-SQL database in.
pub const BABELFISH_PG_DATABASE: &str = "babelfish_db";

/// The uid/gid the server runs as when the tests run as root.
const NOBODY: &str = "65534";
const DIR_PREFIX: &str = "dbferry-babelfish-";
const OWNER_FILE: &str = "owner.pid";
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 6;
/// How `make babelfish` is run, for the SKIPPED line.
const HOW_TO_BUILD: &str = "run `make babelfish` (see README, \"SQL Server tests: Babelfish\")";

/// The build's install prefix: `$BABELFISH_PREFIX`, else
/// `/var/cache/dbferry-babelfish`.
pub fn babelfish_prefix() -> PathBuf {
    std::env::var_os("BABELFISH_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/dbferry-babelfish"))
}

/// Whether the Babelfish build is there (`make babelfish` finished).
pub fn babelfish_available() -> bool {
    babelfish_prefix().join(".built").is_file() && babelfish_prefix().join("bin/postgres").is_file()
}

/// A private Babelfish server (see the module doc).
pub struct Babelfish {
    child: Mutex<Option<Child>>,
    tds_port: u16,
    pg_port: u16,
    data: PathBuf,
    // Dropped after the server is stopped (see Drop).
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Babelfish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Babelfish")
            .field("tds_port", &self.tds_port)
            .field("pg_port", &self.pg_port)
            .field("data", &self.data)
            .finish()
    }
}

impl Babelfish {
    /// The two servers of this test binary (source and target), started on
    /// first use, shared by its tests and removed at exit; `None`, after a
    /// loud SKIPPED line naming `test`, when there is no Babelfish build.
    /// Every call is counted for `make test`'s closing line (see
    /// [`record_sqlserver_test`]).
    ///
    /// # Panics
    /// If the build is there but a server does not come up.
    pub fn for_test(test: &str) -> Option<(&'static Babelfish, &'static Babelfish)> {
        if !runs(test) {
            return None;
        }
        static PAIR: OnceLock<(&'static Babelfish, &'static Babelfish)> = OnceLock::new();
        Some(*PAIR.get_or_init(|| {
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(Babelfish::start);
                let b = Babelfish::start();
                (a.join(), b)
            });
            let a = match a {
                Ok(a) => a,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            (a.leak_until_exit(), b.leak_until_exit())
        }))
    }

    /// A server of `test`'s own, started with the extra PostgreSQL
    /// `settings` (`name=value`, given as `-c`), for a test that needs a
    /// server configured unlike the shared pair; `None`, after the same loud
    /// SKIPPED line as [`Babelfish::for_test`], without a build.
    ///
    /// # Panics
    /// If the build is there but the server does not come up.
    pub fn private_for_test(test: &str, settings: &[&str]) -> Option<Babelfish> {
        if !runs(test) {
            return None;
        }
        match Self::try_start_with(settings) {
            Ok(server) => Some(server),
            Err(error) => panic!("dbferry-testkit: cannot start a Babelfish server with {settings:?}: {error}"),
        }
    }

    /// Starts a server and waits until it accepts T-SQL.
    ///
    /// # Panics
    /// If there is no build (saying how to get one) or the server does not
    /// come up (with its log).
    pub fn start() -> Self {
        if !babelfish_available() {
            panic!("no Babelfish build in {}: {HOW_TO_BUILD}", babelfish_prefix().display());
        }
        match Self::try_start() {
            Ok(server) => server,
            Err(error) => panic!("dbferry-testkit: cannot start a Babelfish server: {error}"),
        }
    }

    /// Starts a server, returning why it failed instead of panicking.
    pub fn try_start() -> Result<Self, Error> {
        Self::try_start_with(&[])
    }

    fn try_start_with(settings: &[&str]) -> Result<Self, Error> {
        remove_abandoned_dirs();
        let mut last = Error::new("no attempt made");
        for _ in 0..PORT_ATTEMPTS {
            match Self::attempt(settings) {
                Ok(server) => return Ok(server),
                Err((error, true)) => last = error,
                Err((error, false)) => return Err(error),
            }
        }
        Err(last)
    }

    /// One try; the flag says the failure was a port taken meanwhile.
    fn attempt(extra: &[&str]) -> Result<Self, (Error, bool)> {
        let fail = |e: Error| (e, false);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .map_err(|e| fail(Error::io("creating a server directory", e)))?;
        fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .map_err(|e| fail(Error::io("writing the server directory's owner", e)))?;
        let data = dir.path().join("data");
        fs::create_dir(&data).map_err(|e| fail(Error::io("creating the datadir", e)))?;
        give_to_server_user(dir.path()).map_err(fail)?;
        give_to_server_user(&data).map_err(fail)?;
        run(as_server_user(&bin("initdb")).arg("-D").arg(&data).args([
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth=trust",
            "-U",
            "postgres",
            "-N",
        ]))
        .map_err(fail)?;
        make_certificate(&data).map_err(fail)?;
        // `postgres` (the harness's own view, on the PostgreSQL port) is
        // trusted; every other login, over TDS too, must give its password,
        // as on SQL Server (`initdb --auth=trust` would let any password in).
        fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 md5\n",
        )
        .map_err(|e| fail(Error::io("writing pg_hba.conf", e)))?;
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .map_err(|e| fail(Error::io("opening postgresql.conf", e)))?;
        // fsync off: a test server's data need not survive a machine crash.
        let settings = format!(
            "listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{sock}'\n\
             allow_system_table_mods = on\n\
             shared_preload_libraries = 'babelfishpg_tds'\n\
             babelfishpg_tds.listen_addresses = '127.0.0.1'\n\
             babelfishpg_tsql.migration_mode = 'multi-db'\n\
             ssl = on\n\
             ssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             shared_buffers = 64MB\n\
             max_connections = 200\n\
             logging_collector = off\n",
            sock = data.display()
        );
        conf.write_all(settings.as_bytes())
            .map_err(|e| fail(Error::io("writing postgresql.conf", e)))?;
        drop(conf);
        let tds_port = free_port().map_err(fail)?;
        let pg_port = free_port().map_err(fail)?;
        let log = dir.path().join("server.log");
        let log_file = fs::File::create(&log).map_err(|e| fail(Error::io("creating the server log", e)))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| fail(Error::io("opening the server log", e)))?;
        let mut command = as_server_user(&bin("postgres"));
        command
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(pg_port.to_string())
            .arg("-c")
            .arg(format!("babelfishpg_tds.port={tds_port}"));
        for setting in extra {
            command.arg("-c").arg(setting);
        }
        command.stdin(Stdio::null()).stdout(log_file).stderr(log_err);
        let child = spawn_tied(command).map_err(|e| fail(Error::io("spawning postgres", e)))?;
        let server = Babelfish {
            child: Mutex::new(Some(child)),
            tds_port,
            pg_port,
            data,
            dir: Some(dir),
        };
        server.wait_for_postgres()?;
        server.initialize().map_err(fail)?;
        Ok(server)
    }

    fn wait_for_postgres(&self) -> Result<(), (Error, bool)> {
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
                let taken = log.contains("Address already in use");
                return Err((
                    Error::new(format!("postgres exited during startup ({status}); its log:\n{log}")),
                    taken,
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.pg_port)).is_ok() && self.try_pg("postgres", "SELECT 1").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err((
                    Error::new(format!(
                        "postgres did not accept connections within {START_TIMEOUT:?}; its log:\n{}",
                        self.log_tail()
                    )),
                    false,
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What `cluster.sh` of the shared Babelfish docs does after start: the
    /// login, the Babelfish database and its extensions.
    fn initialize(&self) -> Result<(), Error> {
        self.try_pg(
            "postgres",
            &format!(
                "CREATE USER {BABELFISH_USER} WITH SUPERUSER CREATEDB CREATEROLE PASSWORD '{BABELFISH_PASSWORD}' INHERIT"
            ),
        )?;
        self.try_pg(
            "postgres",
            &format!("CREATE DATABASE {BABELFISH_PG_DATABASE} OWNER {BABELFISH_USER}"),
        )?;
        for statement in [
            "CREATE EXTENSION IF NOT EXISTS babelfishpg_tds CASCADE".to_string(),
            format!("GRANT ALL ON SCHEMA sys TO {BABELFISH_USER}"),
            format!("ALTER SYSTEM SET babelfishpg_tsql.database_name = '{BABELFISH_PG_DATABASE}'"),
            format!("ALTER DATABASE {BABELFISH_PG_DATABASE} SET babelfishpg_tsql.migration_mode = 'multi-db'"),
            "SELECT pg_reload_conf()".to_string(),
            format!("CALL sys.initialize_babelfish('{BABELFISH_USER}')"),
        ] {
            self.try_pg(BABELFISH_PG_DATABASE, &statement)?;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.try_tsql("SELECT 1") {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() > deadline => {
                    return Err(Error::new(format!(
                        "Babelfish's TDS port {} does not answer: {error}; the log:\n{}",
                        self.tds_port,
                        self.log_tail()
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The TDS port on 127.0.0.1.
    pub fn tds_port(&self) -> u16 {
        self.tds_port
    }

    /// The PostgreSQL port on 127.0.0.1 (user `postgres`, trust).
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The server's certificate (PEM).
    pub fn certificate(&self) -> PathBuf {
        self.data.join("server.crt")
    }

    /// The private CA that signed [`Babelfish::certificate`] (PEM), for
    /// `tls_ca`.
    pub fn ca_certificate(&self) -> PathBuf {
        self.data.join("ca.crt")
    }

    /// A plugin session's settings for this server, as [`BABELFISH_USER`]
    /// with `tls = "trust"`.
    pub fn session_config(
        &self,
        instance_id: &str,
        max_connections: u32,
    ) -> dbferry_plugin_abi::protocol::SessionConfig {
        let mut options = serde_json::Map::new();
        options.insert("tls".into(), "trust".into());
        dbferry_plugin_abi::protocol::SessionConfig {
            instance_id: instance_id.into(),
            host: self.host().into(),
            port: self.tds_port,
            user: BABELFISH_USER.into(),
            password: BABELFISH_PASSWORD.into(),
            max_connections,
            options,
        }
    }

    /// The last 60 lines of the server's log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Some(dir) = &self.dir {
            if let Ok(mut file) = fs::File::open(dir.path().join("server.log")) {
                let _ = file.read_to_string(&mut text);
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Runs one T-SQL batch with FreeTDS's `tsql` (TLS required, TDS 7.4),
    /// independently of dbferry's TDS code, returning its rows: one line
    /// each, values tab-separated, NULL as `NULL`. Fails on any error
    /// message of severity above 10.
    pub fn try_tsql(&self, batch: &str) -> Result<Vec<Vec<String>>, Error> {
        let conf = self.freetds_conf()?;
        let mut child = Command::new("tsql")
            .env("FREETDSCONF", &conf)
            .args(["-H", "127.0.0.1", "-p", &self.tds_port.to_string()])
            .args(["-U", BABELFISH_USER, "-P", BABELFISH_PASSWORD, "-o", "fhq"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("running tsql (Debian's freetds-bin; `apt-get install freetds-bin`)", e))?;
        let script = format!("{batch}\ngo\nexit\n");
        let writer = child.stdin.take().map(|mut stdin| {
            std::thread::spawn(move || {
                let _ = stdin.write_all(script.as_bytes());
            })
        });
        let out = child.wait_with_output().map_err(|e| Error::io("running tsql", e))?;
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failed = stderr.lines().any(|line| {
            line.strip_prefix("Msg ")
                .and_then(|rest| rest.split("severity ").nth(1))
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|s| s.parse::<u32>().ok())
                .is_some_and(|severity| severity > 10)
        }) || stderr.contains("There was a problem connecting")
            || !out.status.success();
        if failed {
            return Err(Error::new(format!(
                "tsql on port {} failed ({}):\n{stderr}\n--- batch ---\n{batch}",
                self.tds_port, out.status
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| line.split('\t').map(str::to_string).collect())
            .collect())
    }

    /// [`Babelfish::try_tsql`], panicking with the error.
    pub fn tsql(&self, batch: &str) -> Vec<Vec<String>> {
        self.try_tsql(batch).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The first value of [`Babelfish::tsql`]'s first row.
    pub fn tsql_scalar(&self, batch: &str) -> Option<String> {
        self.tsql(batch)
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
    }

    /// Runs SQL on the PostgreSQL port with the build's `psql` as
    /// `postgres`, in PostgreSQL `database`; returns its unaligned output
    /// (rows by line, values separated by `|`).
    pub fn try_pg(&self, database: &str, sql: &str) -> Result<String, Error> {
        let out = Command::new(bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.pg_port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running psql", e))?;
        if !out.status.success() {
            return Err(Error::new(format!(
                "psql on port {} failed ({}): {}\n--- sql ---\n{sql}",
                self.pg_port,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string())
    }

    /// [`Babelfish::try_pg`] in the Babelfish database, panicking with the
    /// error.
    pub fn pg(&self, sql: &str) -> String {
        self.try_pg(BABELFISH_PG_DATABASE, sql)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The PostgreSQL schema that holds T-SQL schema `schema` of database
    /// `database` in multi-db mode, as Babelfish's own catalog maps it.
    pub fn pg_schema(&self, database: &str, schema: &str) -> String {
        self.pg(&format!(
            "SELECT n.nspname FROM sys.babelfish_namespace_ext n JOIN sys.babelfish_sysdatabases d ON d.dbid = n.dbid \
             WHERE d.name = {} AND n.orig_name = {}",
            pg_literal(database),
            pg_literal(schema)
        ))
    }

    /// `COUNT:MD5` of table `schema.table` of T-SQL database `database`,
    /// computed by PostgreSQL: the MD5 of every row's text form, sorted, so
    /// it is independent of keys, scan order, TDS and dbferry. Equal on two
    /// servers iff they hold the same rows (as PostgreSQL renders them).
    pub fn row_hash(&self, database: &str, schema: &str, table: &str) -> String {
        let pg_schema = self.pg_schema(database, schema);
        assert!(
            !pg_schema.is_empty(),
            "no schema {schema} in database {database} on port {}",
            self.tds_port
        );
        self.pg(&format!(
            "SELECT count(*) || ':' || md5(coalesce(string_agg(h, '' ORDER BY h), '')) \
             FROM (SELECT md5(t::text) AS h FROM {}.{} AS t) AS rows",
            pg_ident(&pg_schema),
            pg_ident(&table.to_lowercase())
        ))
    }

    /// Whether T-SQL database `name` exists.
    pub fn database_exists(&self, name: &str) -> bool {
        self.tsql_scalar(&format!(
            "SELECT COUNT(*) FROM sys.databases WHERE name = N'{}'",
            name.replace('\'', "''")
        ))
        .as_deref()
            == Some("1")
    }

    /// Drops T-SQL database `name` if it exists.
    pub fn drop_database(&self, name: &str) {
        self.tsql(&format!(
            "IF DB_ID(N'{}') IS NOT NULL DROP DATABASE [{}]",
            name.replace('\'', "''"),
            name.replace(']', "]]")
        ));
    }

    /// Stops the server (immediate shutdown, then SIGKILL) and waits for
    /// it. Idempotent.
    pub fn stop(&self) {
        let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut child) = guard.take() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: signals our own child, which has not been reaped.
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                }
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Keeps this server for the rest of the process; it is stopped and its
    /// directory removed when the process exits, and killed by the kernel
    /// if the process dies abruptly (parent-death signal).
    pub fn leak_until_exit(self) -> &'static Babelfish {
        let leaked: &'static Babelfish = Box::leak(Box::new(self));
        at_exit_registry()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(leaked);
        leaked
    }

    fn freetds_conf(&self) -> Result<PathBuf, Error> {
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| Error::new("the server directory is gone"))?;
        let path = dir.path().join("freetds.conf");
        if !path.is_file() {
            // `request`: encrypted wherever the server has TLS, which a
            // private server started with `ssl=off` has not.
            fs::write(
                &path,
                "[global]\n\ttds version = 7.4\n\tencryption = request\n\tclient charset = UTF-8\n",
            )
            .map_err(|e| Error::io("writing freetds.conf", e))?;
        }
        Ok(path)
    }
}

impl Drop for Babelfish {
    fn drop(&mut self) {
        self.stop();
        drop(self.dir.take());
    }
}

fn at_exit_registry() -> &'static Mutex<Vec<&'static Babelfish>> {
    static REGISTRY: OnceLock<Mutex<Vec<&'static Babelfish>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        extern "C" fn cleanup() {
            if let Some(registry) = REGISTRY.get() {
                let servers = std::mem::take(&mut *registry.lock().unwrap_or_else(PoisonError::into_inner));
                for server in servers {
                    server.stop();
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

/// Whether `test` can run against a real server: records it for
/// `make test`'s closing line, and without a build prints the loud SKIPPED
/// line that says how to get one.
fn runs(test: &str) -> bool {
    let available = babelfish_available();
    record_sqlserver_test(test, available);
    if !available {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: no Babelfish build in {} (the SQL Server tests need a real TDS server): \
             {HOW_TO_BUILD} ***\n",
            babelfish_prefix().display()
        );
    }
    available
}

/// Appends `test ran|skipped` to `target/sqlserver-tests.log`, which `make
/// test` empties before the suite and counts after it, so the run ends with
/// how many SQL Server tests talked to a real server.
pub fn record_sqlserver_test(test: &str, ran: bool) {
    let path = target_dir().join("sqlserver-tests.log");
    if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(path) {
        // One short write with O_APPEND: lines of parallel tests never mix.
        let _ = file.write_all(format!("{} {test}\n", if ran { "ran" } else { "skipped" }).as_bytes());
    }
}

fn bin(name: &str) -> PathBuf {
    babelfish_prefix().join("bin").join(name)
}

/// `program` run as `nobody` when we are root (PostgreSQL refuses root),
/// with a parent-death signal that survives the change of user (the
/// kernel clears one set before it).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid",
                NOBODY,
                "--regid",
                NOBODY,
                "--clear-groups",
                "--pdeathsig",
                "KILL",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn give_to_server_user(path: &Path) -> Result<(), Error> {
    if !is_root() {
        return Ok(());
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::new(format!("a NUL in {}", path.display())))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chown(c_path.as_ptr(), 65534, 65534) } != 0 {
        return Err(Error::io(
            format!("chown {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<(), Error> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {command:?}"), e))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "{command:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// A certificate for localhost / 127.0.0.1 signed by a private CA
/// (`ca.crt`, beside it), so that `tls = "on"` / `"verify-ca"` with
/// `tls_ca` can be tried (rustls refuses a self-signed certificate used as
/// its own CA). The key is readable only by the server user.
fn make_certificate(data: &Path) -> Result<(), Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let fail = |e: rcgen::Error| Error::new(format!("rcgen: {e}"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dbferry Babelfish test CA");
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca = ca_params.self_signed(&ca_key).map_err(fail)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(fail)?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let key_pair = KeyPair::generate().map_err(fail)?;
    let server = params.signed_by(&key_pair, &ca, &ca_key).map_err(fail)?;
    let key = data.join("server.key");
    let crt = data.join("server.crt");
    for (path, text) in [
        (&key, key_pair.serialize_pem()),
        (&crt, server.pem()),
        (&data.join("ca.crt"), ca.pem()),
    ] {
        fs::write(path, text).map_err(|e| Error::io("writing a certificate", e))?;
    }
    give_to_server_user(&key)?;
    give_to_server_user(&crt)?;
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| Error::io("chmod server.key", e))
}

fn pg_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Removes, once per process, the server directories of test processes
/// that died without cleaning up; their servers died with them.
fn remove_abandoned_dirs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
                continue;
            }
            let Some(owner) = fs::read_to_string(entry.path().join(OWNER_FILE))
                .ok()
                .and_then(|o| o.trim().parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            // SAFETY: signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(owner, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
            if !alive {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    });
}
