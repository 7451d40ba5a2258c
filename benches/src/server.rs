//! Throwaway MariaDB or Oracle MySQL servers, booted the way the test
//! harness does it: a private datadir, an ephemeral port, torn down on drop.
//! MariaDB is Debian's `mariadbd`; MySQL is the 9.7 server that `make deps`
//! unpacks into `$DBFERRY_MYSQL_PREFIX` (default `/var/cache/dbferry-mysql`).
//!
//! Every server gets the same settings, so no tool is favoured:
//! `--innodb-buffer-pool-size` (512M by default), a 512M redo log,
//! `--innodb-flush-log-at-trx-commit=2`, no binary log, `--local-infile=1`,
//! `--max-allowed-packet=256M`, and `--secure-file-priv` pointing at a
//! directory shared by both servers (for the `LOAD DATA INFILE` floor).

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The password of `root@127.0.0.1` on every bench server (TCP clients use it).
pub const PASSWORD: &str = "dbferry-bench";
/// The user every tool connects as.
pub const USER: &str = "root";

/// Server settings shared by source and target.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `--innodb-buffer-pool-size`.
    pub buffer_pool: String,
    /// `--innodb-log-file-size`.
    pub redo_log: String,
    /// Directory both servers may read and write with `INTO OUTFILE` / `LOAD DATA INFILE`.
    pub file_dir: PathBuf,
}

/// Which server a bench runs on. Everything that differs between the two
/// (binaries, bootstrap, option names, the client) is answered here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Flavour {
    /// Debian's MariaDB.
    MariaDb,
    /// Oracle MySQL from `$DBFERRY_MYSQL_PREFIX`.
    MySql,
}

impl Flavour {
    /// Both flavours, MariaDB first.
    pub const ALL: [Flavour; 2] = [Flavour::MariaDb, Flavour::MySql];

    /// Parses `mariadb` or `mysql`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "mariadb" => Ok(Flavour::MariaDb),
            "mysql" => Ok(Flavour::MySql),
            other => bail!("unknown flavour {other:?} (expected mariadb, mysql or both)"),
        }
    }

    /// The key used on the command line, in file names and in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Flavour::MariaDb => "mariadb",
            Flavour::MySql => "mysql",
        }
    }

    /// Where Oracle MySQL was unpacked (`make deps` puts it there).
    pub fn mysql_prefix() -> PathBuf {
        std::env::var_os("DBFERRY_MYSQL_PREFIX")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/dbferry-mysql"))
    }

    /// A client program by its MariaDB name (`mariadb`, `mariadb-dump`):
    /// Debian's for MariaDB, the prefix's `mysql`/`mysqldump` for MySQL.
    pub fn program(self, mariadb_name: &str) -> PathBuf {
        match self {
            Flavour::MariaDb => PathBuf::from(mariadb_name),
            Flavour::MySql => {
                let name = mariadb_name
                    .replacen("mariadb", "mysql", 1)
                    .replace("mysql-dump", "mysqldump");
                Self::mysql_prefix().join("bin").join(name)
            }
        }
    }

    /// Initialises an empty datadir.
    fn bootstrap(self, datadir: &Path) -> Result<()> {
        let mut install = match self {
            Flavour::MariaDb => {
                let mut cmd = Command::new("mariadb-install-db");
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", datadir.display()))
                    .arg("--auth-root-authentication-method=normal")
                    .arg("--skip-test-db");
                cmd
            }
            Flavour::MySql => {
                let root = Self::mysql_prefix().join("root");
                let mut cmd = Command::new(Self::mysql_prefix().join("bin/mysqld"));
                cmd.arg("--no-defaults")
                    .arg("--initialize-insecure")
                    .arg(format!("--basedir={}", root.join("usr").display()))
                    .arg(format!("--lc-messages-dir={}", root.join("usr/share/mysql").display()))
                    .arg(format!("--datadir={}", datadir.display()));
                cmd
            }
        };
        install.stdout(Stdio::null()).stderr(Stdio::piped());
        if is_root() {
            install.arg("--user=root");
        }
        let out = install
            .output()
            .with_context(|| format!("bootstrapping a {} datadir (run `make deps`)", self.key()))?;
        if !out.status.success() {
            bail!(
                "bootstrapping {}: {}",
                datadir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The server command with the options that differ between flavours.
    fn server(self, options: &ServerOptions, port: u16) -> Command {
        match self {
            Flavour::MariaDb => {
                let mut cmd = Command::new("mariadbd");
                cmd.arg("--no-defaults")
                    .arg("--skip-log-bin")
                    .arg(format!("--innodb-log-file-size={}", options.redo_log));
                cmd
            }
            Flavour::MySql => {
                let root = Self::mysql_prefix().join("root");
                let mut cmd = Command::new(Self::mysql_prefix().join("bin/mysqld"));
                cmd.arg("--no-defaults")
                    .arg(format!("--basedir={}", root.join("usr").display()))
                    .arg(format!("--lc-messages-dir={}", root.join("usr/share/mysql").display()))
                    .arg(format!("--plugin-dir={}", root.join("usr/lib/mysql/plugin").display()))
                    .arg("--mysqlx=OFF")
                    .arg("--disable-log-bin")
                    .arg(format!("--server-id={port}"))
                    .arg(format!("--innodb-redo-log-capacity={}", options.redo_log));
                cmd
            }
        }
    }
}

/// A running server; killed and its datadir left to the caller's tempdir on drop.
pub struct Server {
    /// MariaDB or MySQL.
    pub flavour: Flavour,
    /// `source` or `target`.
    pub name: String,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Unix socket path.
    pub socket: PathBuf,
    /// The server's private datadir.
    pub datadir: PathBuf,
    child: Child,
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port")?;
    Ok(listener.local_addr()?.port())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Server {
    /// Initialises a datadir under `base/name` and boots a server on it.
    pub fn start(flavour: Flavour, name: &str, base: &Path, options: &ServerOptions) -> Result<Self> {
        let root = base.join(name);
        let datadir = root.join("data");
        // MySQL's --initialize wants to create the datadir itself.
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let socket = root.join("mysqld.sock");
        flavour.bootstrap(&datadir)?;
        let mut last_error = None;
        for _attempt in 0..3 {
            let port = free_port()?;
            let log = root.join("error.log");
            let mut cmd = flavour.server(options, port);
            cmd.arg(format!("--datadir={}", datadir.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--pid-file={}", root.join("mysqld.pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .arg("--skip-name-resolve")
                .arg("--local-infile=1")
                .arg("--max-allowed-packet=256M")
                .arg(format!("--innodb-buffer-pool-size={}", options.buffer_pool))
                .arg("--innodb-flush-log-at-trx-commit=2")
                .arg("--max-connections=500")
                .arg(format!("--secure-file-priv={}", options.file_dir.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if is_root() {
                cmd.arg("--user=root");
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("spawning the {} server", flavour.key()))?;
            let mut server = Server {
                flavour,
                name: name.to_string(),
                port,
                socket: socket.clone(),
                datadir: datadir.clone(),
                child,
            };
            match server.wait_ready(Duration::from_secs(60)) {
                Ok(()) => {
                    server.exec(&format!(
                        "CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1';\
                         ALTER USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\
                         GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' WITH GRANT OPTION;\
                         FLUSH PRIVILEGES;"
                    ))?;
                    return Ok(server);
                }
                Err(error) => {
                    let tail = fs::read_to_string(&log).unwrap_or_default();
                    let tail: String = tail
                        .lines()
                        .rev()
                        .take(15)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n");
                    last_error = Some(anyhow::anyhow!("{name} did not start: {error:#}\n{tail}"));
                    // Drop kills it; try again on another port (the port may have been taken).
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{name} did not start")))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the {} server exited with {status}", self.flavour.key());
            }
            if self.socket.exists() && self.query("SELECT 1").is_ok() {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("not ready after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the server process has used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        proc_cpu_seconds(self.pid())
    }

    /// A `mariadb` (or `mysql`) client connected over the Unix socket as root.
    pub fn client(&self) -> Command {
        let mut cmd = Command::new(self.flavour.program("mariadb"));
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--user=root")
            .arg("--batch")
            .arg("--skip-column-names");
        cmd
    }

    /// TCP connection arguments for `mariadb`, `mariadb-dump`, `mydumper`, ...
    pub fn tcp_args(&self) -> Vec<String> {
        vec![
            "--host=127.0.0.1".into(),
            format!("--port={}", self.port),
            format!("--user={USER}"),
            format!("--password={PASSWORD}"),
        ]
    }

    /// Runs a query and returns its rows, tab-split (values in `--batch` escaping).
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let out = self
            .client()
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .context("running the client")?;
        if !out.status.success() {
            bail!(
                "{}: query failed: {}\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                abbreviate(sql)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| line.split('\t').map(str::to_string).collect())
            .collect())
    }

    /// One value of a one-row, one-column query.
    pub fn query_value(&self, sql: &str) -> Result<String> {
        self.query(sql)?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .with_context(|| format!("{}: no value from {}", self.name, abbreviate(sql)))
    }

    /// Runs a script of statements (fed on stdin).
    pub fn exec(&self, script: &str) -> Result<()> {
        let mut child = self
            .client()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning the client")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .context("writing a script to the client")?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{}: script failed: {}\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                abbreviate(script)
            );
        }
        Ok(())
    }

    /// Waits (up to a minute) until InnoDB has written out its dirty pages,
    /// so that no run pays for the writes of the one before it or of the
    /// dataset's load: the first run after a load was 1.5–2× slower than
    /// the next, and it was always the same tool's. The flushing is hurried
    /// along with `innodb_max_dirty_pages_pct = 0`, restored afterwards.
    pub fn settle(&self) -> Result<()> {
        const QUIET_PAGES: u64 = 64;
        let dirty = || -> Result<u64> {
            let rows = self.query("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")?;
            let value = rows.first().and_then(|row| row.get(1)).context("no dirty page count")?;
            value.parse::<u64>().context("dirty page count")
        };
        let previous = self.query_value("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")?;
        self.exec("SET GLOBAL innodb_max_dirty_pages_pct = 0")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut waited = Ok(());
        loop {
            match dirty() {
                Ok(pages) if pages <= QUIET_PAGES => break,
                Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Ok(pages) => {
                    eprintln!("  note: {} still has {pages} dirty pages after 60 s", self.name);
                    break;
                }
                Err(error) => {
                    waited = Err(error);
                    break;
                }
            }
        }
        self.exec(&format!("SET GLOBAL innodb_max_dirty_pages_pct = {previous}"))?;
        waited
    }

    /// `SHOW CREATE TABLE`, with its real newlines.
    pub fn show_create_table(&self, db: &str, table: &str) -> Result<String> {
        let out = self
            .client()
            .arg("--raw")
            .arg("-e")
            .arg(format!("SHOW CREATE TABLE {}.{}", ident(db), ident(table)))
            .output()
            .context("running the client")?;
        if !out.status.success() {
            bail!(
                "SHOW CREATE TABLE {db}.{table}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8(out.stdout).context("SHOW CREATE TABLE is not UTF-8")?;
        let (_, create) = text.split_once('\t').context("unexpected SHOW CREATE TABLE output")?;
        Ok(create.trim_end().to_string())
    }

    /// Drops and re-creates an empty database.
    pub fn recreate_database(&self, db: &str) -> Result<()> {
        self.exec(&format!(
            "DROP DATABASE IF EXISTS {0}; CREATE DATABASE {0} DEFAULT CHARACTER SET utf8mb4;",
            ident(db)
        ))
    }

    /// Base tables of a database, by name.
    pub fn tables(&self, db: &str) -> Result<Vec<String>> {
        Ok(self
            .query(&format!(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = {} AND table_type = 'BASE TABLE' ORDER BY table_name",
                literal(db)
            ))?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect())
    }

    /// Exact row counts (`COUNT(*)`) of every base table.
    pub fn exact_counts(&self, db: &str) -> Result<Vec<(String, u64)>> {
        let tables = self.tables(db)?;
        let mut counts = Vec::with_capacity(tables.len());
        for group in tables.chunks(200) {
            let sql = group
                .iter()
                .map(|t| format!("SELECT {}, COUNT(*) FROM {}.{}", literal(t), ident(db), ident(t)))
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            for row in self.query(&sql)? {
                let [name, count] =
                    <[String; 2]>::try_from(row).map_err(|_| anyhow::anyhow!("unexpected COUNT(*) output"))?;
                counts.push((name, count.parse().context("COUNT(*) is not a number")?));
            }
        }
        counts.sort();
        Ok(counts)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The datadir is thrown away, so there is nothing to flush: kill at once.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads utime + stime of a process from `/proc/PID/stat`.
pub fn proc_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("bad /proc stat")?.parse()?;
    let stime: f64 = fields.get(12).context("bad /proc stat")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((utime + stime) / ticks.max(1.0))
}

/// A backquoted identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A single-quoted string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn abbreviate(sql: &str) -> String {
    if sql.len() > 300 {
        let mut end = 300;
        while !sql.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &sql[..end])
    } else {
        sql.to_string()
    }
}
