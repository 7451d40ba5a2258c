//! Table sizes that do not trust cached statistics.
//!
//! InnoDB's `DATA_LENGTH` comes from persistent statistics that a bulk load
//! leaves behind: a table loaded a minute ago with 500 MB reads as 16 to
//! 48 KiB until `ANALYZE TABLE` or the background recalculation (seconds
//! later, or never for a change under 10% of the rows), on MariaDB and
//! MySQL alike. MySQL 8+ also caches `information_schema.TABLES` for
//! `information_schema_stats_expiry` seconds (a day by default). Planning
//! on that reads big tables whole on one connection, and the storage
//! precheck under-counts. So:
//!
//! - on MySQL the describing session sets `information_schema_stats_expiry
//!   = 0` ([`ServerFacts::fresh_statistics`]), which makes `TABLE_ROWS`
//!   current and sizes as recent as InnoDB's background statistics;
//! - a table's bytes are at least its tablespace file's size, read from
//!   `information_schema.INNODB_TABLESPACES` (MySQL) or
//!   `INNODB_SYS_TABLESPACES` (MariaDB): the file as it is now. Both need
//!   the PROCESS privilege, which the documented grant list has; without it
//!   the statistics are used as they are, with a warning.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::{cell, ServerFacts};
use crate::error::{Context, Result};

/// On-disk bytes of InnoDB file-per-table tablespaces, by database and
/// table (partitions added up). Empty when the account may not read the
/// server's tablespace view. Names that the server had to encode for
/// the file system (anything but ASCII letters, digits and `_`, `$`) are
/// left out: their tables keep their statistics.
pub async fn file_sizes(conn: &mut Conn, facts: &ServerFacts) -> Result<HashMap<(String, String), u64>> {
    let mut sizes = HashMap::new();
    let view = if facts.mariadb {
        "INNODB_SYS_TABLESPACES"
    } else {
        "INNODB_TABLESPACES"
    };
    let rows: Vec<Row> = match conn
        .query(format!(
            "SELECT NAME, FILE_SIZE FROM information_schema.{view} WHERE NAME LIKE '%/%'"
        ))
        .await
        .ctx(|| format!("reading information_schema.{view}"))
    {
        Ok(rows) => rows,
        Err(e) if e.is_access_denied() => {
            tracing::warn!(
                reason = %e,
                "table sizes come from cached statistics (no PROCESS privilege): freshly loaded tables may be under-counted"
            );
            return Ok(sizes);
        }
        Err(e) => return Err(e),
    };
    for r in rows {
        if let Some(key) = table_of(&cell::string(&r, 0)) {
            *sizes.entry(key).or_insert(0) += cell::u64(&r, 1);
        }
    }
    Ok(sizes)
}

/// `db/table` or `db/table#p#part…` to (db, table), when neither name was
/// encoded for the file system.
fn table_of(name: &str) -> Option<(String, String)> {
    let (db, file) = name.split_once('/')?;
    let table = file
        .split_once("#p#")
        .or_else(|| file.split_once("#P#"))
        .map_or(file, |(t, _)| t);
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    (plain(db) && plain(table)).then(|| (db.to_string(), table.to_string()))
}

/// The bytes to plan a table with: its statistics, or its file when the
/// statistics are behind (the file holds the indexes too; their statistics
/// are subtracted so far as they are known).
pub fn table_bytes(data_length: u64, index_length: u64, file: Option<u64>) -> u64 {
    data_length.max(file.unwrap_or(0).saturating_sub(index_length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablespace_names_map_to_tables() {
        assert_eq!(table_of("shop/orders"), Some(("shop".into(), "orders".into())));
        assert_eq!(table_of("shop/orders#p#p2024"), Some(("shop".into(), "orders".into())));
        assert_eq!(
            table_of("shop/orders#P#p0#SP#s1"),
            Some(("shop".into(), "orders".into()))
        );
        assert_eq!(table_of("sh@002dop/orders"), None);
        assert_eq!(table_of("innodb_system"), None);
    }

    #[test]
    fn a_stale_statistic_gives_way_to_the_file() {
        assert_eq!(table_bytes(49_152, 0, Some(83_886_080)), 83_886_080);
        assert_eq!(table_bytes(80_000_000, 5_000_000, Some(83_886_080)), 80_000_000);
        assert_eq!(table_bytes(10, 0, None), 10);
    }
}
