//! Writing one chunk: `LOAD DATA LOCAL INFILE` inside one transaction, fed
//! from memory through the connection's infile handler.

use std::time::Duration;

use bytes::Bytes;
use dbferry_plugin_abi::plugin::Writer;
use dbferry_plugin_abi::protocol::{PluginError, WriteRequest, WriteSummary};
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::conn::{cell, runtime, Lease, ServerFacts};
use crate::detail::TableDetail;
use crate::encode::LOAD_FORMAT;
use crate::error::{Context, Error, Result};
use crate::quote::qualified;
use crate::range::predicate;

/// Slices of a batch queued towards the server.
const DEPTH: usize = 4;
/// Most bytes of a batch sent as one packet.
const MAX_SLICE: usize = 128 << 10;
/// How long an aborted load may take to wind down before its connection is dropped.
const ABORT_GRACE: Duration = Duration::from_secs(10);
/// Appended to the statement that ends a chunk's transaction before its
/// connection goes back to the pool: writer sessions start with unique
/// checks off, which autocommitted whole-table loads rely on.
const RESTORE: &str = "; SET SESSION unique_checks = 0";

/// The `LOAD DATA` statement of a table.
pub fn load_sql(request: &WriteRequest, detail: &TableDetail, target: &ServerFacts) -> String {
    let table = qualified(&request.database, &request.table.name);
    let (columns, set) = detail.load_columns(target);
    format!("LOAD DATA LOCAL INFILE 'dbferry' INTO TABLE {table} {LOAD_FORMAT} ({columns}){set}")
}

/// The statement that empties a chunk's range before it is written again.
pub fn delete_sql(request: &WriteRequest, detail: &TableDetail) -> Result<String> {
    let table = qualified(&request.database, &request.table.name);
    Ok(match predicate(detail, &request.range)? {
        Some(filter) => format!("DELETE FROM {table} WHERE {filter}"),
        None => format!("DELETE FROM {table}"),
    })
}

type Loading = JoinHandle<(Lease, Result<()>)>;

/// How a chunk's rows are undone if its checks fail or it is aborted.
enum Undo {
    /// The load runs in a transaction: roll it back.
    Rollback,
    /// The load autocommits: run this `DELETE` (the table was empty before).
    Delete(String),
}

/// A chunk being written.
pub struct MysqlWriter {
    tx: Option<mpsc::Sender<std::io::Result<Bytes>>>,
    task: Option<Loading>,
    rows: u64,
    slice: usize,
    table: String,
    undo: Undo,
    /// Warnings that do not mean an altered value (see `TableDetail::benign_warnings`).
    benign: Vec<(u16, String)>,
}

impl MysqlWriter {
    /// Opens the chunk's transaction on `lease` and starts the load.
    pub async fn start(
        mut lease: Lease,
        request: &WriteRequest,
        detail: &TableDetail,
        target: &ServerFacts,
    ) -> Result<Self> {
        let table = qualified(&request.database, &request.table.name);
        let conn = lease.conn()?;
        // A whole table written for the first time goes into a table this
        // import just created, so nothing else is in it: its one LOAD DATA
        // statement is atomic alone and autocommits, and a DELETE undoes it.
        // That saves the START TRANSACTION and COMMIT round trips, a seventh
        // of the copy phase on 1,000 small tables.
        let autocommit = request.range.is_whole() && !request.redo;
        let undo = if autocommit {
            Undo::Delete(delete_sql(request, detail)?)
        } else {
            // A whole table loads in InnoDB's bulk mode (MariaDB 10.6+: empty
            // table, unique_checks=0): fast, but it locks the table. Slices of
            // a split table load side by side, so they keep unique checks on;
            // pooled writers go back with the session's 0 (see `RESTORE`).
            let unique_checks = u8::from(!request.range.is_whole());
            conn.query_drop(format!(
                "SET SESSION unique_checks = {unique_checks}; START TRANSACTION"
            ))
            .await
            .ctx(|| format!("starting a transaction on {table}"))?;
            Undo::Rollback
        };
        if request.redo {
            let sql = delete_sql(request, detail)?;
            conn.query_drop(sql.as_str())
                .await
                .ctx(|| format!("clearing the chunk of {table}"))?;
        }
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(DEPTH);
        conn.set_infile_handler(async move {
            let stream =
                futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
            Ok(stream.boxed())
        });
        let sql = load_sql(request, detail, target);
        let task = tokio::spawn(async move {
            let result = match lease.conn() {
                Ok(conn) => conn.query_drop(sql.as_str()).await.ctx(|| "loading rows".to_string()),
                Err(e) => Err(e),
            };
            (lease, result)
        });
        // Logical packets stay well under the server's max_allowed_packet,
        // and small: mysql_async copies each into a pooled buffer that it
        // keeps, so 1 MiB packets left about 1 MiB per lane behind.
        let slice = usize::try_from(target.max_allowed_packet / 2)
            .unwrap_or(MAX_SLICE)
            .clamp(16 << 10, MAX_SLICE);
        Ok(Self {
            tx: Some(tx),
            task: Some(task),
            rows: 0,
            slice,
            table,
            undo,
            benign: detail.benign_warnings(),
        })
    }

    /// Undoes the chunk's rows; `then` runs in the same round trip.
    async fn undo(&self, conn: &mut mysql_async::Conn, then: &str) -> Result<()> {
        let sql = match &self.undo {
            Undo::Rollback => format!("ROLLBACK{then}"),
            Undo::Delete(delete) => format!("{delete}{then}"),
        };
        conn.query_drop(sql.as_str())
            .await
            .ctx(|| format!("undoing the chunk of {}", self.table))
    }

    /// Waits for the load to end (its input closed) and returns the connection.
    async fn finish_load(&mut self) -> Result<(Lease, Result<()>)> {
        self.tx.take();
        let task = self
            .task
            .take()
            .ok_or_else(|| Error::Invalid("the writer already finished".into()))?;
        task.await
            .map_err(|e| Error::Internal(format!("the load task of {} failed: {e}", self.table)))
    }

    async fn commit_async(mut self) -> Result<WriteSummary> {
        let (mut lease, loaded) = self.finish_load().await?;
        let table = self.table.clone();
        let conn = lease.conn()?;
        if let Err(e) = loaded {
            let _ = self.undo(conn, "").await;
            return Err(match e {
                Error::Sql { source, .. } => Error::Sql {
                    context: format!("loading {table}"),
                    source,
                },
                other => other,
            });
        }
        let warnings = conn.get_warnings();
        let accepted = conn.affected_rows();
        if warnings > 0 {
            let shown: Vec<Row> = conn.query("SHOW WARNINGS").await.unwrap_or_default();
            let expected = |r: &Row| {
                let (code, message) = (cell::u64(r, 1), cell::string(r, 2));
                self.benign.iter().any(|(c, column)| {
                    u64::from(*c) == code && message.contains(&format!(" column '{column}' at row "))
                })
            };
            if shown.len() != usize::from(warnings) || !shown.iter().all(expected) {
                let text: Vec<String> = shown
                    .iter()
                    .filter(|r| !expected(r))
                    .take(5)
                    .map(|r| format!("{} {}: {}", cell::string(r, 0), cell::string(r, 1), cell::string(r, 2)))
                    .collect();
                let _ = self.undo(conn, "").await;
                return Err(Error::Data(format!(
                    "the target would alter rows of {table} ({warnings} warning(s)): {}",
                    text.join("; ")
                )));
            }
        }
        if accepted != self.rows {
            let _ = self.undo(conn, "").await;
            return Err(Error::Data(format!(
                "the target accepted {accepted} rows of {table} but {} were sent",
                self.rows
            )));
        }
        if let Undo::Rollback = self.undo {
            conn.query_drop(format!("COMMIT{RESTORE}"))
                .await
                .ctx(|| format!("committing a chunk of {table}"))?;
        }
        lease.release();
        Ok(WriteSummary {
            rows: accepted,
            warnings: Vec::new(),
        })
    }

    async fn abort_async(mut self) {
        let Some(task) = self.task.take() else { return };
        self.tx.take();
        // On timeout, dropping the handle does not stop the task: the load
        // ends on its own and its connection is then dropped unpooled.
        // An autocommitted load commits what was streamed before the abort;
        // the DELETE takes it out again.
        if let Ok(Ok((mut lease, _))) = tokio::time::timeout(ABORT_GRACE, task).await {
            let clean = match lease.conn() {
                Ok(conn) => self.undo(conn, RESTORE).await.is_ok(),
                Err(_) => false,
            };
            if clean {
                lease.release();
            }
        }
    }
}

impl Writer for MysqlWriter {
    fn write(&mut self, batch: Bytes, rows: u64) -> std::result::Result<(), PluginError> {
        let rt = runtime()?;
        let Some(tx) = self.tx.clone() else {
            return Err(Error::Invalid("the writer already finished".into()).into());
        };
        let slice = self.slice;
        let sent = rt.block_on(async move {
            let mut offset = 0;
            while offset < batch.len() {
                let end = (offset + slice).min(batch.len());
                // Zero copy: a slice shares the batch's buffer.
                if tx.send(Ok(batch.slice(offset..end))).await.is_err() {
                    return false;
                }
                offset = end;
            }
            true
        });
        if sent {
            self.rows += rows;
            return Ok(());
        }
        // The server stopped reading: the load failed; report why.
        let outcome = rt.block_on(self.finish_load());
        Err(match outcome {
            Ok((_, Err(e))) => e,
            Ok((_, Ok(()))) => Error::Internal(format!("the load of {} ended early", self.table)),
            Err(e) => e,
        }
        .into())
    }

    fn commit(self) -> std::result::Result<WriteSummary, PluginError> {
        let rt = runtime()?;
        Ok(rt.block_on(self.commit_async())?)
    }

    fn abort(self) {
        if let Ok(rt) = runtime() {
            rt.block_on(self.abort_async());
        }
    }
}
