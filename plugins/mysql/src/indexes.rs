//! Deferred secondary indexes: which statements add a table's, and adding
//! one table's while the copy of the others goes on.

use std::collections::HashSet;

use dbferry_plugin_abi::protocol::TableIndexesRequest;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::conn::cell;
use crate::detail::{DetailCache, TableDetail};
use crate::error::{Context, Result};
use crate::fanout::Task;
use crate::quote::{hex_str, qualified};

/// Adds the deferred indexes of `request.table` that the target table does
/// not have yet, on `conn` (see `Request::AddTableIndexes`).
pub async fn add_table_indexes(conn: &mut Conn, details: &DetailCache, request: &TableIndexesRequest) -> Result<()> {
    let (database, table) = (request.database.as_str(), request.table.name.as_str());
    let detail = details.table(&request.table.detail)?;
    let sql = format!(
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
        hex_str(database),
        hex_str(table)
    );
    let have: HashSet<String> = conn
        .query::<mysql_async::Row, _>(sql.as_str())
        .await
        .ctx(|| format!("listing the indexes of {}", qualified(database, table)))?
        .iter()
        .map(|r| cell::string(r, 0))
        .collect();
    let Some(task) = index_task(database, table, &detail, |index| have.contains(index)) else {
        return Ok(());
    };
    for statement in &task.statements {
        conn.query_drop(statement.as_str()).await.ctx(|| task.context.clone())?;
    }
    Ok(())
}

/// The statements that add `table`'s deferred indexes that it does not
/// `have` (by name): one ALTER with every plain index, then one per
/// FULLTEXT index (InnoDB builds one FULLTEXT index per statement). `None`
/// when nothing is missing.
pub fn index_task(database: &str, table: &str, detail: &TableDetail, have: impl Fn(&str) -> bool) -> Option<Task> {
    let pending = detail.deferred_indexes.iter().filter(|i| !have(&i.name));
    let (fulltext, plain): (Vec<_>, Vec<_>) = pending.partition(|i| i.fulltext);
    let name = qualified(database, table);
    let mut statements = Vec::new();
    if !plain.is_empty() {
        let adds: Vec<String> = plain.iter().map(|i| format!("ADD {}", i.definition)).collect();
        statements.push(format!("ALTER TABLE {name} {}", adds.join(", ")));
    }
    for i in fulltext {
        statements.push(format!("ALTER TABLE {name} ADD {}", i.definition));
    }
    (!statements.is_empty()).then(|| Task {
        context: format!("adding indexes to {name}"),
        statements,
    })
}
