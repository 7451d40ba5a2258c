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
/// A first batch at most this big waits for the next one, or for commit,
/// before the load starts: the memory held back is small next to a lane's
/// budget (readers send a chunk's first batch at this size).
const HOLD_MAX: usize = dbferry_plugin_sdk::reader::FIRST_BATCH;
/// How often a writer waiting for room in a full queue looks whether its
/// load has ended.
const LOAD_CHECK: Duration = Duration::from_millis(200);
/// How long an aborted load may take to wind down before its connection is dropped.
const ABORT_GRACE: Duration = Duration::from_secs(10);
/// Appended to the statement that ends a chunk's transaction before its
/// connection goes back to the pool: writer sessions start with unique
/// checks off, which autocommitted whole-table loads rely on.
const RESTORE: &str = "; SET SESSION unique_checks = 0";

/// The `LOAD DATA` statement of a table. The server asks for `file`
/// (digits and letters only), which the client serves from memory.
pub fn load_sql(request: &WriteRequest, detail: &TableDetail, target: &ServerFacts, file: &str) -> String {
    let table = qualified(&request.database, &request.table.name);
    let (columns, set) = detail.load_columns(target);
    format!("LOAD DATA LOCAL INFILE '{file}' INTO TABLE {table} {LOAD_FORMAT} ({columns}){set}")
}

/// Most bytes sent as one packet of a load. Logical packets stay well under
/// the server's max_allowed_packet, and small: mysql_async copies each into
/// a pooled buffer that it keeps, so 1 MiB packets left about 1 MiB per
/// lane behind.
pub fn slice_len(target: &ServerFacts) -> usize {
    usize::try_from(target.max_allowed_packet / 2)
        .unwrap_or(MAX_SLICE)
        .clamp(16 << 10, MAX_SLICE)
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
///
/// Its load starts with its second batch, or at commit: a chunk of one small
/// batch (most tables of a database of many small ones) then loads on the
/// caller's thread in one go, without a loading task and a channel, which
/// saved a task start and two thread wake-ups per chunk.
pub struct MysqlWriter {
    /// The connection until the load starts.
    lease: Option<Lease>,
    /// The `LOAD DATA` statement.
    sql: String,
    /// A first batch held back until the load starts.
    held: Option<Bytes>,
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
    /// Opens the chunk's transaction on `lease`; the load itself starts
    /// with the data (see [`MysqlWriter`]).
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
        let sql = load_sql(request, detail, target, "dbferry");
        let slice = slice_len(target);
        Ok(Self {
            lease: Some(lease),
            sql,
            held: None,
            tx: None,
            task: None,
            rows: 0,
            slice,
            table,
            undo,
            benign: detail.benign_warnings(),
        })
    }

    /// The connection, which only a load not yet started still holds.
    fn take_lease(&mut self) -> Result<Lease> {
        self.lease
            .take()
            .ok_or_else(|| Error::Invalid("the writer already finished".into()))
    }

    /// Starts the load on a task fed through a channel, with the held batch
    /// first; returns the channel.
    async fn start_load(&mut self) -> Result<mpsc::Sender<std::io::Result<Bytes>>> {
        let mut lease = self.take_lease()?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(DEPTH);
        lease.conn()?.set_infile_handler(async move {
            let stream =
                futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
            Ok(stream.boxed())
        });
        let sql = self.sql.clone();
        self.task = Some(tokio::spawn(async move {
            let result = match lease.conn() {
                Ok(conn) => conn.query_drop(sql.as_str()).await.ctx(|| "loading rows".to_string()),
                Err(e) => Err(e),
            };
            (lease, result)
        }));
        self.tx = Some(tx.clone());
        if let Some(held) = self.held.take() {
            // Should the load stop reading, the caller's own send fails as
            // well and reports why.
            self.send(&tx, held).await;
        }
        Ok(tx)
    }

    /// Queues `batch` towards the server in slices; false when the load has
    /// stopped reading.
    async fn send(&self, tx: &mpsc::Sender<std::io::Result<Bytes>>, batch: Bytes) -> bool {
        let mut offset = 0;
        while offset < batch.len() {
            let end = (offset + self.slice).min(batch.len());
            // Zero copy: a slice shares the batch's buffer.
            let slice = Ok(batch.slice(offset..end));
            let queued = match tx.try_send(slice) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
                Err(mpsc::error::TrySendError::Full(slice)) => self.send_when_read(tx, slice).await,
            };
            if !queued {
                return false;
            }
            offset = end;
        }
        true
    }

    /// Waits for room in the queue while the load still runs. A load that
    /// failed before the server asked for its rows (the server went away
    /// mid-statement) ends its task with the infile handler, and with it
    /// the queue's receiver, still installed on the connection that the
    /// task's result holds: the queue never closes, so a plain `send`
    /// would wait forever.
    async fn send_when_read(&self, tx: &mpsc::Sender<std::io::Result<Bytes>>, slice: std::io::Result<Bytes>) -> bool {
        let mut slice = Some(slice);
        loop {
            match tokio::time::timeout(LOAD_CHECK, tx.reserve()).await {
                Ok(Ok(permit)) => {
                    if let Some(slice) = slice.take() {
                        permit.send(slice);
                    }
                    return true;
                }
                Ok(Err(_)) => return false,
                Err(_) if self.task.as_ref().is_none_or(JoinHandle::is_finished) => return false,
                Err(_) => {}
            }
        }
    }

    /// Loads the held batch (or nothing) on the caller's thread, in one go.
    async fn load_inline(&mut self) -> Result<(Lease, Result<()>)> {
        let mut lease = self.take_lease()?;
        let conn = lease.conn()?;
        let held: Vec<std::io::Result<Bytes>> = self.held.take().into_iter().map(Ok).collect();
        conn.set_infile_handler(async move { Ok(futures_util::stream::iter(held).boxed()) });
        let loaded = conn
            .query_drop(self.sql.as_str())
            .await
            .ctx(|| "loading rows".to_string());
        Ok((lease, loaded))
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

    /// Waits for the load to end (its input closed) and returns the
    /// connection; a load not started yet runs now, on this thread.
    async fn finish_load(&mut self) -> Result<(Lease, Result<()>)> {
        self.tx.take();
        let Some(task) = self.task.take() else {
            return self.load_inline().await;
        };
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
                let unseen = usize::from(warnings).saturating_sub(shown.len());
                let hidden = if unseen > 0 {
                    format!(
                        " ({unseen} more could not be read: max_error_count is below {warnings} and raising it \
                         needs SESSION_VARIABLES_ADMIN on MySQL)"
                    )
                } else {
                    String::new()
                };
                return Err(Error::Data(format!(
                    "the target would alter rows of {table} ({warnings} warning(s)): {}{hidden}",
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
        let Some(task) = self.task.take() else {
            // Nothing was loaded; only a transaction may need ending.
            if let Some(mut lease) = self.lease.take() {
                let clean = match lease.conn() {
                    Ok(conn) => match self.undo {
                        Undo::Rollback => self.undo(conn, RESTORE).await.is_ok(),
                        Undo::Delete(_) => true,
                    },
                    Err(_) => false,
                };
                if clean {
                    lease.release();
                }
            }
            return;
        };
        self.tx.take();
        // On timeout, dropping the handle does not stop the task: the load
        // ends on its own and its connection is then dropped unpooled.
        // An autocommitted load commits what was streamed before the abort;
        // the DELETE takes it out again.
        if let Ok(Ok((mut lease, loaded))) = tokio::time::timeout(ABORT_GRACE, task).await {
            let undone = match lease.conn() {
                Ok(conn) => self.undo(conn, RESTORE).await.is_ok(),
                Err(_) => false,
            };
            // A load that failed may have failed before the server asked for
            // its rows: the connection then still holds its one-shot infile
            // handler, and the next load on it (a group's) would be served
            // these aborted rows instead of its own.
            if undone && loaded.is_ok() {
                lease.release();
            }
        }
    }
}

impl Writer for MysqlWriter {
    fn write(&mut self, batch: Bytes, rows: u64) -> std::result::Result<(), PluginError> {
        let rt = runtime()?;
        if self.task.is_none() && self.held.is_none() && batch.len() <= HOLD_MAX {
            self.held = Some(batch);
            self.rows += rows;
            return Ok(());
        }
        let sent = rt.block_on(async {
            let tx = match self.tx.clone() {
                Some(tx) => tx,
                None => self.start_load().await?,
            };
            Ok::<_, Error>(self.send(&tx, batch).await)
        })?;
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
