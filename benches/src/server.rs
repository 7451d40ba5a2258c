//! Throwaway MariaDB servers, booted the way the test harness does it:
//! Debian's `mariadbd`, a private datadir, an ephemeral port, torn down on drop.
//!
//! Every server gets the same settings, so no tool is favoured:
//! `--innodb-buffer-pool-size` (512M by default), a 512M redo log,
//! `--innodb-flush-log-at-trx-commit=2`, `--skip-log-bin`, `--local-infile=1`,
//! `--max-allowed-packet=256M`, and `--secure-file-priv` pointing at a
//! directory shared by both servers (for the `LOAD DATA INFILE` floor).

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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

/// A running `mariadbd`; killed and its datadir left to the caller's tempdir on drop.
pub struct MariaDb {
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

impl MariaDb {
    /// Initialises a datadir under `base/name` and boots a server on it.
    pub fn start(name: &str, base: &Path, options: &ServerOptions) -> Result<Self> {
        let root = base.join(name);
        let datadir = root.join("data");
        fs::create_dir_all(&datadir).with_context(|| format!("creating {}", datadir.display()))?;
        let socket = root.join("mysqld.sock");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if is_root() {
            install.arg("--user=root");
        }
        let out = install
            .output()
            .context("running mariadb-install-db (is mariadb-server installed?)")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed for {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let mut last_error = None;
        for _attempt in 0..3 {
            let port = free_port()?;
            let log = root.join("error.log");
            let mut cmd = Command::new("mariadbd");
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", datadir.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--pid-file={}", root.join("mysqld.pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .arg("--skip-log-bin")
                .arg("--skip-name-resolve")
                .arg("--local-infile=1")
                .arg("--max-allowed-packet=256M")
                .arg(format!("--innodb-buffer-pool-size={}", options.buffer_pool))
                .arg(format!("--innodb-log-file-size={}", options.redo_log))
                .arg("--innodb-flush-log-at-trx-commit=2")
                .arg("--max-connections=500")
                .arg(format!("--secure-file-priv={}", options.file_dir.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if is_root() {
                cmd.arg("--user=root");
            }
            let child = cmd.spawn().context("spawning mariadbd")?;
            let mut server = MariaDb {
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
                bail!("mariadbd exited with {status}");
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

    /// A `mariadb` client connected over the Unix socket as root.
    pub fn client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
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
            .context("running mariadb")?;
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
            .context("spawning mariadb")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .context("writing a script to mariadb")?;
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

    /// `SHOW CREATE TABLE`, with its real newlines.
    pub fn show_create_table(&self, db: &str, table: &str) -> Result<String> {
        let out = self
            .client()
            .arg("--raw")
            .arg("-e")
            .arg(format!("SHOW CREATE TABLE {}.{}", ident(db), ident(table)))
            .output()
            .context("running mariadb")?;
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

impl Drop for MariaDb {
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
