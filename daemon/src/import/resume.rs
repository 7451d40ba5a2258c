//! What an interrupted import left on the target, table by table, and how a
//! resume treats it.
//!
//! A resume never has the snapshot the interrupted attempt read from (it
//! ended with that attempt's connections). Tables every chunk of which is
//! committed stay as they are; the others are copied again whole from the
//! new snapshot, so each table is still one instant of the source. The
//! import as a whole is then consistent per table, not globally.

use dbferry_copy_core::{ChunkStats, ChunkTask};
use serde::Serialize;

use super::copy::PlannedTable;
use super::ImportStore;

/// How far one table got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableProgressState {
    /// Every chunk committed.
    Copied,
    /// Some chunks committed.
    Partial,
    /// Nothing committed.
    NotStarted,
}

/// One table of an import that stopped short of success.
#[derive(Clone, Debug, Serialize)]
pub struct TableState {
    /// Target database.
    pub database: String,
    /// Table.
    pub table: String,
    /// Rows committed on the target.
    pub rows: u64,
    /// Payload bytes committed on the target.
    pub bytes: u64,
    /// How far it got.
    pub state: TableProgressState,
}

/// Per table: the committed stats and how many of its chunks are committed
/// out of how many. One pass over the plan.
fn tally(tables: &[PlannedTable], chunks: &[ChunkTask], store: &dyn ImportStore) -> Vec<(ChunkStats, usize, usize)> {
    let mut per_table = vec![(ChunkStats::default(), 0usize, 0usize); tables.len()];
    for chunk in chunks {
        let Some(entry) = per_table.get_mut(chunk.id.table as usize) else {
            continue;
        };
        entry.2 += 1;
        if let Some(stats) = store.committed(chunk.id) {
            entry.0.rows += stats.rows;
            entry.0.bytes += stats.bytes;
            entry.1 += 1;
        }
    }
    per_table
}

/// Every table's state, in plan order.
pub fn table_states(tables: &[PlannedTable], chunks: &[ChunkTask], store: &dyn ImportStore) -> Vec<TableState> {
    tables
        .iter()
        .zip(tally(tables, chunks, store))
        .map(|(table, (stats, committed, all))| TableState {
            database: table.target_database.clone(),
            table: table.schema.name.clone(),
            rows: stats.rows,
            bytes: stats.bytes,
            state: match committed {
                0 => TableProgressState::NotStarted,
                n if n == all => TableProgressState::Copied,
                _ => TableProgressState::Partial,
            },
        })
        .collect()
}

/// What [`restart_unfinished`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restarted {
    /// Tables finished before the interruption, kept as they are.
    pub kept: usize,
    /// Partly copied tables whose checkpoints were forgotten.
    pub restarted: usize,
}

/// Forgets the checkpoints of every partly copied table, so that it is
/// copied again whole (every chunk as a redo) from the new snapshot.
pub fn restart_unfinished(
    tables: &[PlannedTable],
    chunks: &[ChunkTask],
    store: &dyn ImportStore,
) -> Result<Restarted, String> {
    let mut restarted = Vec::new();
    let mut kept = 0;
    for (index, (_, committed, all)) in tally(tables, chunks, store).into_iter().enumerate() {
        if committed == all && all > 0 {
            kept += 1;
        } else if committed > 0 {
            restarted.push(index as u32);
        }
    }
    if !restarted.is_empty() {
        store.forget_tables(&restarted)?;
    }
    Ok(Restarted {
        kept,
        restarted: restarted.len(),
    })
}

/// Quotes `text` for a POSIX shell when it needs it.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// SQL that drops what an import created (`database.kind:name` entries of
/// the result), most dependent objects first; `None` for an engine this
/// does not know how to spell.
pub fn cleanup_sql(engine: &str, created: &[String]) -> Option<String> {
    let parsed: Vec<(&str, &str, &str)> = created
        .iter()
        .filter_map(|entry| {
            let (left, name) = entry.split_once(':')?;
            let (database, kind) = left.rsplit_once('.')?;
            Some((database, kind, name))
        })
        .collect();
    let rank = |kind: &str| match kind {
        "trigger" => 0,
        "event" => 1,
        "view" => 2,
        "procedure" | "function" => 3,
        "table" => 4,
        "sequence" => 5,
        _ => 6,
    };
    let mut statements = Vec::new();
    match engine {
        "mysql" => {
            let quote = |s: &str| format!("`{}`", s.replace('`', "``"));
            let mut sorted = parsed.clone();
            sorted.sort_by_key(|(_, kind, _)| rank(kind));
            statements.push("SET foreign_key_checks = 0;".to_string());
            for (database, kind, name) in sorted {
                let keyword = match kind {
                    "table" | "view" | "procedure" | "function" | "trigger" | "event" | "sequence" => {
                        kind.to_ascii_uppercase()
                    }
                    _ => continue,
                };
                statements.push(format!("DROP {keyword} IF EXISTS {}.{};", quote(database), quote(name)));
            }
        }
        "sqlserver" => {
            let mut databases: Vec<&str> = parsed.iter().map(|(database, _, _)| *database).collect();
            databases.dedup();
            for database in databases {
                statements.push(format!("DROP DATABASE IF EXISTS [{}];", database.replace(']', "]]")));
            }
        }
        _ => return None,
    }
    Some(statements.join(" "))
}

#[cfg(test)]
mod tests {
    use dbferry_copy_core::{CheckpointStore, ChunkId, KeyRange};

    use super::*;
    use crate::import::MemoryStore;

    fn table(name: &str) -> PlannedTable {
        PlannedTable {
            database_index: 0,
            source_database: "s".into(),
            target_database: "d".into(),
            schema: dbferry_plugin_abi::protocol::TableSchema {
                name: name.into(),
                ..Default::default()
            },
        }
    }

    fn chunk(table: u32, ordinal: u32) -> ChunkTask {
        ChunkTask {
            id: ChunkId { table, ordinal },
            range: KeyRange::default(),
            estimated_bytes: 0,
        }
    }

    #[test]
    fn cleanup_sql_drops_dependents_first() {
        let created = [
            "d.table:t".to_string(),
            "d.view:v".to_string(),
            "d.trigger:tr".to_string(),
        ];
        assert_eq!(
            cleanup_sql("mysql", &created).as_deref(),
            Some(
                "SET foreign_key_checks = 0; DROP TRIGGER IF EXISTS `d`.`tr`; DROP VIEW IF EXISTS `d`.`v`; \
                 DROP TABLE IF EXISTS `d`.`t`;"
            )
        );
        assert_eq!(shell_quote("/etc/db ferry.toml"), "'/etc/db ferry.toml'");
        assert_eq!(shell_quote("/etc/dbferry.toml"), "/etc/dbferry.toml");
    }

    #[test]
    fn partly_copied_tables_are_forgotten_and_finished_ones_kept() -> Result<(), String> {
        let tables = [table("done"), table("half"), table("untouched")];
        let chunks = [chunk(0, 0), chunk(0, 1), chunk(1, 0), chunk(1, 1), chunk(2, 0)];
        let store = MemoryStore::default();
        for id in [chunks[0].id, chunks[1].id, chunks[2].id] {
            store.record(id, ChunkStats { rows: 10, bytes: 100 })?;
        }
        let states: Vec<_> = table_states(&tables, &chunks, &store)
            .into_iter()
            .map(|t| (t.table, t.rows, t.state))
            .collect();
        assert_eq!(
            states,
            [
                ("done".to_string(), 20, TableProgressState::Copied),
                ("half".to_string(), 10, TableProgressState::Partial),
                ("untouched".to_string(), 0, TableProgressState::NotStarted),
            ]
        );
        let restarted = restart_unfinished(&tables, &chunks, &store)?;
        assert_eq!(restarted, Restarted { kept: 1, restarted: 1 });
        assert!(store.is_committed(chunks[1].id), "the finished table stays");
        assert!(
            !store.is_committed(chunks[2].id),
            "the partial table is copied again whole"
        );
        Ok(())
    }
}
