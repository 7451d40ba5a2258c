//! How readers get a consistent view of the source.
//!
//! SQL Server cannot share one snapshot between connections (there is no
//! exported snapshot as in PostgreSQL, and a SNAPSHOT transaction's
//! snapshot is taken at its first data access, so N connections started
//! together still see N different instants). The copy is therefore
//! per-table consistent and the host does not split tables across readers:
//!
//! - `ALLOW_SNAPSHOT_ISOLATION ON`: each table is read inside its own
//!   `SNAPSHOT` transaction, a single instant of that table, without
//!   blocking writers;
//! - else `READ_COMMITTED_SNAPSHOT ON`: each table is read by one statement,
//!   which row versioning makes a single instant of it;
//! - else: each table is read by one statement under `READ COMMITTED` with a
//!   shared table lock (`WITH (TABLOCK)`), so it cannot change while it is
//!   read; writers to that table wait until the read ends.
//!
//! In every case different tables may reflect different moments.

use dbferry_plugin_abi::protocol::{Consistency, SnapshotInfo};

/// How one database is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// A SNAPSHOT transaction per table.
    Snapshot,
    /// One statement per table under READ_COMMITTED_SNAPSHOT.
    StatementVersioned,
    /// One statement per table under a shared table lock.
    TableLock,
}

impl Isolation {
    /// The choice for a database with these settings.
    pub fn decide(snapshot_allowed: bool, read_committed_snapshot: bool) -> Self {
        if snapshot_allowed {
            Isolation::Snapshot
        } else if read_committed_snapshot {
            Isolation::StatementVersioned
        } else {
            Isolation::TableLock
        }
    }

    /// Statements run before the chunk's SELECT.
    pub fn begin(self) -> &'static str {
        match self {
            Isolation::Snapshot => "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION",
            _ => "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        }
    }

    /// Statements run after it.
    pub fn end(self) -> &'static str {
        match self {
            Isolation::Snapshot => "COMMIT; SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            _ => "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        }
    }

    /// The table hint of the SELECT.
    pub fn table_hint(self) -> &'static str {
        match self {
            Isolation::TableLock => " WITH (TABLOCK)",
            _ => "",
        }
    }
}

/// What `BeginSnapshot` reports for the described databases (name, isolation).
pub fn snapshot_info(databases: &[(String, Isolation)]) -> SnapshotInfo {
    let names = |which: Isolation| {
        databases
            .iter()
            .filter(|(_, i)| *i == which)
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
    };
    let mut parts = vec![
        "SQL Server cannot share one snapshot between connections, so each table is copied \
         from a single moment of its own while different tables may reflect different moments"
            .to_string(),
    ];
    let snapshot = names(Isolation::Snapshot);
    if !snapshot.is_empty() {
        parts.push(format!("{}: read under SNAPSHOT isolation", snapshot.join(", ")));
    }
    let versioned = names(Isolation::StatementVersioned);
    if !versioned.is_empty() {
        parts.push(format!(
            "{}: ALLOW_SNAPSHOT_ISOLATION is off; each table is read by one statement under READ_COMMITTED_SNAPSHOT",
            versioned.join(", ")
        ));
    }
    let locked = names(Isolation::TableLock);
    if !locked.is_empty() {
        parts.push(format!(
            "{}: neither ALLOW_SNAPSHOT_ISOLATION nor READ_COMMITTED_SNAPSHOT is on; each table is read under \
             READ COMMITTED with a shared table lock, which makes writers to it wait while it is read",
            locked.join(", ")
        ));
    }
    SnapshotInfo {
        consistency: Consistency::PerTable,
        warning: Some(parts.join("; ")),
        method: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_isolation_is_used_when_the_database_allows_it() {
        assert_eq!(Isolation::decide(true, false), Isolation::Snapshot);
        assert_eq!(Isolation::decide(true, true), Isolation::Snapshot);
        assert_eq!(Isolation::decide(false, true), Isolation::StatementVersioned);
        assert_eq!(Isolation::decide(false, false), Isolation::TableLock);
        assert!(Isolation::Snapshot
            .begin()
            .contains("ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION"));
        assert!(Isolation::Snapshot.end().starts_with("COMMIT"));
        assert_eq!(Isolation::TableLock.table_hint(), " WITH (TABLOCK)");
        assert_eq!(Isolation::Snapshot.table_hint(), "");
    }

    #[test]
    fn the_warning_says_what_consistency_each_database_gets() {
        let info = snapshot_info(&[("a".into(), Isolation::Snapshot), ("b".into(), Isolation::TableLock)]);
        assert_eq!(info.consistency, Consistency::PerTable);
        let warning = info.warning.unwrap_or_default();
        assert!(warning.contains("a: read under SNAPSHOT isolation"));
        assert!(warning.contains("b: neither ALLOW_SNAPSHOT_ISOLATION"));
        assert!(!warning.contains("READ_COMMITTED_SNAPSHOT;"));
    }
}
