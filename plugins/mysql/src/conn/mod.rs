//! Connections: the plugin's tokio runtime, connection options, per-role
//! session settings and a small pool capped at `max_connections`.

mod dial;
mod pool;
mod socket;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::runtime::Runtime;

pub use dial::{options, Dialer, CONNECT_TIMEOUT};
pub use pool::{Home, Lease, Pool};
pub use socket::{
    guard_connections_to, guard_socket, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES, USER_TIMEOUT,
};

use crate::error::{Context, Error, Result};

/// The `sql_mode` of writer connections while loading.
///
/// - `STRICT_ALL_TABLES`: a value the target would truncate or alter is an
///   error (with `LOCAL` the server reports it as a warning, which the
///   writer turns into an error), never a silent change.
/// - no `NO_ZERO_DATE`/`NO_ZERO_IN_DATE`, plus `ALLOW_INVALID_DATES`:
///   whatever dates the source holds (zero dates, `2020-02-31` written under
///   a lax mode) load unchanged; these are values, not truncations.
/// - `NO_AUTO_VALUE_ON_ZERO`: a 0 in an AUTO_INCREMENT column stays 0.
/// - `NO_ENGINE_SUBSTITUTION`: never silently change a table's engine.
/// - nothing else: no `ANSI_QUOTES`, `PAD_CHAR_TO_FULL_LENGTH`,
///   `NO_BACKSLASH_ESCAPES` or `ORACLE` that would change how our SQL parses.
pub const LOAD_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES,NO_ENGINE_SUBSTITUTION";

/// A neutral `sql_mode` for our own statements (reads, catalogue queries).
pub const PLAIN_SQL_MODE: &str = "NO_ENGINE_SUBSTITUTION";

/// The process-wide runtime every plugin call blocks on.
pub fn runtime() -> Result<&'static Runtime> {
    dbferry_plugin_sdk::runtime::runtime("dbferry-mysql").map_err(Error::Internal)
}

/// What a connection is used for; each role has its own session settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Catalogue queries and DDL.
    Control,
    /// Reading rows: results arrive as stored bytes.
    Reader,
    /// Loading rows.
    Writer,
}

impl Role {
    /// Statements that put a connection into this role, whatever it was before.
    /// Every role sets the same variables, so switching roles is one round trip.
    /// None of them needs a privilege on MySQL 9.7 or MariaDB 10.11 (a
    /// cloud-shaped account has no `SESSION_VARIABLES_ADMIN`); the one that
    /// does, `max_error_count`, is raised apart, where permitted
    /// ([`RAISE_ERROR_COUNT`]).
    pub fn setup(self) -> String {
        let (results, mode, checks, isolation) = match self {
            Role::Control => ("utf8mb4", PLAIN_SQL_MODE, 1, "REPEATABLE READ"),
            // No conversion: text and binary columns arrive as stored bytes.
            Role::Reader => ("binary", PLAIN_SQL_MODE, 1, "REPEATABLE READ"),
            // READ COMMITTED: clearing a chunk's range before a redo takes no
            // gap locks, so neighbouring chunks load in parallel without deadlocks.
            Role::Writer => ("utf8mb4", LOAD_SQL_MODE, 0, "READ COMMITTED"),
        };
        // Long net timeouts: backpressure may pause a result set (reader)
        // or a LOAD DATA stream (writer) for a while.
        format!(
            "SET NAMES utf8mb4, time_zone = '+00:00', character_set_results = {results}, \
             sql_mode = '{mode}', foreign_key_checks = {checks}, unique_checks = {checks}, \
             net_read_timeout = 3600, net_write_timeout = 3600; \
             SET SESSION TRANSACTION ISOLATION LEVEL {isolation}"
        )
    }
}

/// Lets a writer see every warning of a `LOAD DATA` (MySQL's default is
/// 1,024, MariaDB's 64), so that it can tell benign ones from altered values.
/// MySQL 8.0.26+ wants `SESSION_VARIABLES_ADMIN` for it: without that, only
/// the server's default number of warnings can be inspected, and a load with
/// more warnings than that is refused rather than trusted blindly.
pub const RAISE_ERROR_COUNT: &str = "SET SESSION max_error_count = 65535";

/// Facts about the server, read once at connect.
#[derive(Clone, Debug, Default)]
pub struct ServerFacts {
    /// `@@version`.
    pub version: String,
    /// MariaDB rather than MySQL.
    pub mariadb: bool,
    /// Major, minor, patch.
    pub numbers: (u16, u16, u16),
    /// `@@max_allowed_packet`.
    pub max_allowed_packet: u64,
}

impl ServerFacts {
    /// `MariaDB` or `MySQL`.
    pub fn product(&self) -> &'static str {
        if self.mariadb {
            "MariaDB"
        } else {
            "MySQL"
        }
    }

    /// Makes `information_schema.TABLES` on `conn` report sizes as the
    /// storage engine has them now. MySQL 8.0+ caches those statistics for
    /// `information_schema_stats_expiry` seconds (a day by default), so a
    /// table bulk-loaded after it was created reads as a few KiB: the
    /// planner would read it whole on one connection and the storage
    /// precheck would under-count it. The variable needs no privilege.
    /// MariaDB has no such cache (nor the variable).
    pub async fn fresh_statistics(&self, conn: &mut Conn) -> Result<()> {
        if self.mariadb || self.numbers < (8, 0, 0) {
            return Ok(());
        }
        conn.query_drop("SET SESSION information_schema_stats_expiry = 0")
            .await
            .ctx(|| "asking for uncached table statistics".into())
    }

    /// Whether `CAST(x AS DOUBLE)` exists (MariaDB 10.4+, MySQL 8.0.17+).
    pub fn has_cast_double(&self) -> bool {
        let (a, b, c) = self.numbers;
        if self.mariadb {
            (a, b) >= (10, 4)
        } else {
            (a, b, c) >= (8, 0, 17)
        }
    }
}

/// Parses `10.11.6-MariaDB-0+deb12u1` or `8.0.36`.
pub fn parse_version(version: &str) -> (u16, u16, u16) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u16>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("10.11.6-MariaDB-0+deb12u1"), (10, 11, 6));
        assert_eq!(parse_version("8.0.36"), (8, 0, 36));
        assert_eq!(parse_version("5.5.5-10.4.1-MariaDB"), (5, 5, 5));
        assert_eq!(parse_version(""), (0, 0, 0));
    }

    #[test]
    fn every_role_sets_the_same_variables() {
        let vars = [
            "SET NAMES utf8mb4",
            "time_zone = '+00:00'",
            "character_set_results = ",
            "sql_mode = ",
            "foreign_key_checks = ",
            "unique_checks = ",
            "net_read_timeout = ",
            "net_write_timeout = ",
            "SET SESSION TRANSACTION ISOLATION LEVEL ",
        ];
        for role in [Role::Control, Role::Reader, Role::Writer] {
            let sql = role.setup();
            for var in vars {
                assert!(sql.contains(var), "{role:?} lacks {var}");
            }
        }
        assert!(Role::Reader.setup().contains("character_set_results = binary"));
        assert!(Role::Writer.setup().contains(LOAD_SQL_MODE));
    }

    #[test]
    fn no_role_sets_a_variable_that_needs_a_privilege() {
        // SESSION_VARIABLES_ADMIN on MySQL 8.0.26+; cloud accounts lack it.
        for role in [Role::Control, Role::Reader, Role::Writer] {
            let sql = role.setup().to_ascii_lowercase();
            for restricted in [
                "max_error_count",
                "sql_log_bin",
                "binlog_format",
                "gtid_next",
                "pseudo_",
            ] {
                assert!(!sql.contains(restricted), "{role:?} sets {restricted}");
            }
        }
    }
}

/// Helpers to read result cells whatever the protocol delivered.
pub mod cell {
    use mysql_async::{Row, Value};

    /// Raw bytes of a cell; `None` for NULL.
    pub fn bytes(row: &Row, i: usize) -> Option<Vec<u8>> {
        match row.as_ref(i)? {
            Value::NULL => None,
            Value::Bytes(b) => Some(b.clone()),
            Value::Int(v) => Some(v.to_string().into_bytes()),
            Value::UInt(v) => Some(v.to_string().into_bytes()),
            Value::Float(v) => Some(v.to_string().into_bytes()),
            Value::Double(v) => Some(v.to_string().into_bytes()),
            other => Some(other.as_sql(true).into_bytes()),
        }
    }

    /// A cell as text; `None` for NULL. Describing 1,000 tables reads some
    /// 60,000 cells, so text is not copied through `bytes` first.
    pub fn text(row: &Row, i: usize) -> Option<String> {
        match row.as_ref(i)? {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => bytes(row, i).map(|b| String::from_utf8_lossy(&b).into_owned()),
        }
    }

    /// A cell as text, NULL as empty.
    pub fn string(row: &Row, i: usize) -> String {
        text(row, i).unwrap_or_default()
    }

    /// A cell as an unsigned number; NULL or garbage as 0.
    pub fn u64(row: &Row, i: usize) -> u64 {
        match row.as_ref(i) {
            Some(Value::Bytes(b)) => std::str::from_utf8(b).map_or(0, number),
            _ => text(row, i).map_or(0, |t| number(&t)),
        }
    }

    /// Text as an unsigned number (a decimal's integer part); garbage as 0.
    pub fn number(text: &str) -> u64 {
        text.trim().split('.').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    }
}
