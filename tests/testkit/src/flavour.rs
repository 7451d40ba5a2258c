//! The two server flavours the harness starts, and everything that differs
//! between them: binaries, datadir initialisation, startup options and the
//! command-line client. Every other part of the harness is flavour-neutral.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `scripts/fetch-mysql.sh` (run by `make deps` / `make test`) puts
/// Oracle MySQL unless `$DBFERRY_MYSQL_PREFIX` says otherwise.
pub const DEFAULT_MYSQL_PREFIX: &str = "/var/cache/dbferry-mysql";

/// Debian's MariaDB server binary.
const MARIADBD: &str = "/usr/sbin/mariadbd";
/// Debian's MariaDB client.
const MARIADB_CLIENT: &str = "/usr/bin/mariadb";
/// Debian's MariaDB datadir initialiser.
const MARIADB_INSTALL_DB: &str = "/usr/bin/mariadb-install-db";

/// The redo log size of every server. Large enough for a 64 MiB BLOB row
/// in one transaction.
const REDO_LOG_SIZE: &str = "256M";
/// The template's redo log: small, so copying the template is cheap; each
/// server grows it to [`REDO_LOG_SIZE`] at startup.
const TEMPLATE_REDO_LOG_SIZE: &str = "16M";

/// Which server engine a [`crate::Server`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavour {
    /// Debian 12's MariaDB 10.11 (`/usr/sbin/mariadbd`), binary log off.
    MariaDb,
    /// Oracle MySQL 9.7 from `$DBFERRY_MYSQL_PREFIX`, with its shipped
    /// defaults: binary log on (ROW), GTID mode on, `caching_sha2_password`.
    MySql,
}

impl Flavour {
    /// Both flavours, MariaDB first.
    pub const ALL: [Flavour; 2] = [Flavour::MariaDb, Flavour::MySql];

    /// `"mariadb"` or `"mysql"`: for names of directories, databases, logs.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::MariaDb => "mariadb",
            Flavour::MySql => "mysql",
        }
    }

    /// A table expression of the integers 1 to `n` in a column `seq`, in
    /// ascending order, for `INSERT … SELECT … FROM {seq}`: MariaDB's
    /// Sequence engine table `seq_1_to_n`, and on MySQL, which has no such
    /// engine, a cross join of digit tables (no recursion limit to raise).
    /// MariaDB's needs a default database (`USE`, or [`crate::Server::exec_in`]).
    pub fn seq(self, n: u64) -> String {
        match self {
            Flavour::MariaDb => format!("seq_1_to_{n}"),
            Flavour::MySql => {
                let places = n.max(1).to_string().len();
                let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL \
                              SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL \
                              SELECT 8 UNION ALL SELECT 9)";
                let value: Vec<String> = (0..places).map(|i| format!("d{i}.d * 1{}", "0".repeat(i))).collect();
                let from: Vec<String> = (0..places).map(|i| format!("{digits} AS d{i}")).collect();
                format!(
                    "(SELECT seq FROM (SELECT {} + 1 AS seq FROM {}) AS numbers WHERE seq <= {n} ORDER BY seq) \
                     AS seq_1_to_{n}",
                    value.join(" + "),
                    from.join(" CROSS JOIN ")
                )
            }
        }
    }

    /// The server binary.
    pub(crate) fn server_binary(self) -> PathBuf {
        match self {
            Flavour::MariaDb => PathBuf::from(MARIADBD),
            Flavour::MySql => mysql_prefix().join("bin/mysqld"),
        }
    }

    /// The command-line client the SQL helpers shell out to.
    pub fn client_binary(self) -> PathBuf {
        match self {
            Flavour::MariaDb => PathBuf::from(MARIADB_CLIENT),
            Flavour::MySql => mysql_prefix().join("bin/mysql"),
        }
    }

    /// The name every server directory in the temp dir starts with.
    pub(crate) fn dir_prefix(self) -> &'static str {
        match self {
            Flavour::MariaDb => "dbferry-mariadb-",
            Flavour::MySql => "dbferry-mysql-",
        }
    }

    /// Panics, loudly, when this flavour's binaries are missing.
    pub(crate) fn require_installed(self) {
        let needed = match self {
            Flavour::MariaDb => vec![
                PathBuf::from(MARIADBD),
                PathBuf::from(MARIADB_CLIENT),
                PathBuf::from(MARIADB_INSTALL_DB),
            ],
            Flavour::MySql => vec![self.server_binary(), self.client_binary()],
        };
        let missing: Vec<String> = needed
            .iter()
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            return;
        }
        let (what, how) = match self {
            Flavour::MariaDb => ("MARIADB", "installs mariadb-server and mariadb-client"),
            Flavour::MySql => (
                "ORACLE MYSQL",
                "runs scripts/fetch-mysql.sh, which puts MySQL 9.7 into\n\
                 $DBFERRY_MYSQL_PREFIX (default /var/cache/dbferry-mysql)",
            ),
        };
        panic!(
            "\n\n==================== {what} IS NOT INSTALLED ====================\n\
             dbferry's tests start real {what} servers, and {} missing.\n\
             Run `make test` (or `make deps`) from the repository root: it\n\
             {how}, then runs the suite.\n\
             A skipped database test would hide a failure, so this one fails.\n\
             ==================================================================\n",
            missing.join(", ")
        );
    }

    /// The command that initialises an empty datadir at `datadir` with a
    /// password-less `root@localhost`.
    pub(crate) fn init_command(self, datadir: &Path) -> Command {
        match self {
            Flavour::MariaDb => {
                let mut command = Command::new(MARIADB_INSTALL_DB);
                command
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", datadir.display()))
                    .arg("--auth-root-authentication-method=normal")
                    .arg("--skip-test-db")
                    .arg(format!("--innodb-log-file-size={TEMPLATE_REDO_LOG_SIZE}"));
                command
            }
            Flavour::MySql => {
                let mut command = Command::new(self.server_binary());
                command
                    .arg("--no-defaults")
                    .arg("--initialize-insecure")
                    .args(mysql_prefix_options())
                    .arg(format!("--datadir={}", datadir.display()))
                    .arg(format!("--innodb-redo-log-capacity={TEMPLATE_REDO_LOG_SIZE}"));
                command
            }
        }
    }

    /// The options only this flavour's server gets (after `--no-defaults`
    /// and the flavour-neutral ones). `port` doubles as MySQL's server id.
    pub(crate) fn server_options(self, port: u16) -> Vec<String> {
        match self {
            Flavour::MariaDb => vec![
                format!("--innodb-log-file-size={REDO_LOG_SIZE}"),
                "--skip-log-bin".into(),
            ],
            // Binary log, GTID mode and caching_sha2_password are 9.7's
            // defaults; GTID is spelled out so an older 8.x prefix gets the
            // same shape. sync_binlog=0 only trades crash safety for speed.
            Flavour::MySql => {
                let mut options = mysql_prefix_options();
                options.extend([
                    format!("--innodb-redo-log-capacity={REDO_LOG_SIZE}"),
                    format!("--server-id={port}"),
                    "--gtid-mode=ON".into(),
                    "--enforce-gtid-consistency=ON".into(),
                    "--sync-binlog=0".into(),
                    "--mysqlx=OFF".into(),
                    "--secure-file-priv=".into(),
                ]);
                options
            }
        }
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavour::MariaDb => "MariaDB",
            Flavour::MySql => "MySQL",
        })
    }
}

/// `$DBFERRY_MYSQL_PREFIX`, else [`DEFAULT_MYSQL_PREFIX`].
pub fn mysql_prefix() -> PathBuf {
    std::env::var_os("DBFERRY_MYSQL_PREFIX").map_or_else(|| PathBuf::from(DEFAULT_MYSQL_PREFIX), PathBuf::from)
}

/// MySQL runs from an unpacked package tree, not from where it was built
/// to live: point it at its own base, messages and plugins.
fn mysql_prefix_options() -> Vec<String> {
    let root = mysql_prefix().join("root");
    vec![
        format!("--basedir={}", root.join("usr").display()),
        format!("--lc-messages-dir={}", root.join("usr/share/mysql").display()),
        format!("--plugin-dir={}", root.join("usr/lib/mysql/plugin").display()),
    ]
}
