//! Reading one chunk. Over the wire client, each `next_batch` reads the
//! next batch itself; over mysql_async, a task on the plugin runtime streams
//! the SELECT (text protocol), encodes rows into batches and hands them over
//! a bounded channel. Either way `next_batch` waits at most ~200 ms so the
//! host stays responsive to cancellation.

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use dbferry_plugin_abi::plugin::Reader;
use dbferry_plugin_abi::protocol::{PluginError, ReadRequest};
use dbferry_plugin_sdk::reader::{BatchChannel, BatchSender, BatchSizes, POLL};
use mysql_async::prelude::Queryable;

use crate::conn::{runtime, Lease};
use crate::detail::TableDetail;
use crate::encode::push_row;
use crate::error::{Context, Error, Result};
use crate::quote::{ident, qualified};
use crate::range::predicate;
use crate::snapshot::WireLease;

/// The SELECT of one chunk.
pub fn select_sql(request: &ReadRequest, detail: &TableDetail) -> Result<String> {
    let table = qualified(&request.database, &request.table.name);
    let list = detail.select_list();
    if list.is_empty() {
        return Err(Error::Unsupported(format!("{table} has no column to copy")));
    }
    let mut sql = format!("SELECT {list} FROM {table}");
    if let Some(filter) = predicate(detail, &request.range)? {
        sql.push_str(" WHERE ");
        sql.push_str(&filter);
    }
    // Key order helps the target's clustered index; it is free for the
    // primary key. A secondary unique key is not worth a sort.
    if detail.key_index.as_deref() == Some("PRIMARY") && !request.range.columns.is_empty() {
        let order: Vec<String> = request.range.columns.iter().map(|c| ident(c)).collect();
        sql.push_str(" ORDER BY ");
        sql.push_str(&order.join(", "));
    }
    Ok(sql)
}

/// A chunk being read.
pub struct MysqlReader {
    source: Source,
}

enum Source {
    /// Batches from a reading task.
    Channel(BatchChannel<Error>),
    /// Batches read on the caller's thread.
    Wire(Box<WirePull>),
}

impl MysqlReader {
    /// Starts reading `sql` on `lease`. `own_snapshot`: the connection is not
    /// part of a shared snapshot, so the chunk opens its own.
    pub fn start(lease: Lease, sql: String, batch_bytes: u64, own_snapshot: bool) -> Result<Self> {
        let rt = runtime()?;
        let batch = batch_size(batch_bytes);
        let channel = BatchChannel::spawn(rt, |tx| async move {
            match read(lease, &sql, batch, own_snapshot, &tx).await {
                Ok(Some(lease)) => lease.release(),
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        Ok(Self {
            source: Source::Channel(channel),
        })
    }

    /// Starts reading `sql` on a wire connection of the global snapshot.
    pub fn start_wire(lease: WireLease, sql: String, batch_bytes: u64) -> Self {
        Self {
            source: Source::Wire(Box::new(WirePull {
                lease: Some(lease),
                pending: None,
                sql,
                columns: None,
                sizes: BatchSizes::new(batch_size(batch_bytes)),
            })),
        }
    }
}

/// One batch read over the wire: the buffer, its rows, whether the result
/// ended, and the result's column count.
type WireBatch = (BytesMut, u64, bool, usize);

/// A batch being read, holding the connection until it is done.
type PendingBatch = Pin<Box<dyn Future<Output = (WireLease, Result<WireBatch>)> + Send>>;

/// A chunk read over the wire on the caller's thread, a batch per call: no
/// reading task and no channel stand between the socket and the host, which
/// on 1,000 one-batch tables saved a task start and two thread wake-ups per
/// chunk. The host's own reader thread provides the read-ahead.
struct WirePull {
    /// The connection, between batches; with no batch pending either, the
    /// chunk has ended (or failed).
    lease: Option<WireLease>,
    /// A batch that outlasted one wait; the next call waits for it again.
    pending: Option<PendingBatch>,
    sql: String,
    /// Known once the query was sent.
    columns: Option<usize>,
    sizes: BatchSizes,
}

impl WirePull {
    fn next_batch(&mut self) -> Result<Option<(Bytes, u64)>> {
        let mut pending = match (self.pending.take(), self.lease.take()) {
            (Some(pending), _) => pending,
            (None, Some(lease)) => self.read_next(lease),
            (None, None) => return Ok(None),
        };
        let rt = runtime()?;
        let Ok((lease, read)) = rt.block_on(async { tokio::time::timeout(POLL, &mut pending).await }) else {
            self.pending = Some(pending);
            return Ok(Some((Bytes::new(), 0)));
        };
        // On an error the lease is dropped: its result set is unfinished.
        let (buf, rows, ended, columns) = read?;
        self.columns = Some(columns);
        if ended {
            lease.release();
        } else {
            self.lease = Some(lease);
        }
        Ok(match (rows, ended) {
            (0, true) => None,
            // Not reached: a batch ends only once it holds a row.
            (0, false) => Some((Bytes::new(), 0)),
            _ => Some((buf.freeze(), rows)),
        })
    }

    /// Starts reading the next batch on `lease` (sending the query first,
    /// the first time).
    fn read_next(&mut self, mut lease: WireLease) -> PendingBatch {
        let (mut buf, limit) = self.sizes.next_buffer();
        let (sql, columns) = (self.sql.clone(), self.columns);
        Box::pin(async move {
            let read = async {
                let conn = lease.conn()?;
                let columns = match columns {
                    Some(columns) => columns,
                    None => conn
                        .start_rows(&sql)
                        .await
                        .map_err(|e| e.during(|| format!("running {sql}")))?,
                };
                let (rows, ended) = conn
                    .encode_rows(columns, &mut buf, limit)
                    .await
                    .map_err(|e| e.during(|| format!("reading rows of {sql}")))?;
                Ok((buf, rows, ended, columns))
            }
            .await;
            (lease, read)
        })
    }
}

fn batch_size(batch_bytes: u64) -> usize {
    usize::try_from(batch_bytes)
        .unwrap_or(usize::MAX)
        .clamp(4096, 256 << 20)
}

/// Streams the result set. Returns the lease when it is clean for reuse,
/// `None` when the host went away mid-result (the lease is then dropped,
/// which discards the connection with its unfinished result set).
async fn read(
    mut lease: Lease,
    sql: &str,
    batch: usize,
    own_snapshot: bool,
    tx: &BatchSender<Error>,
) -> Result<Option<Lease>> {
    let conn = lease.conn()?;
    if own_snapshot {
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .ctx(|| "starting a snapshot".into())?;
    }
    {
        let mut result = conn.query_iter(sql).await.ctx(|| format!("running {sql}"))?;
        let mut sizes = BatchSizes::new(batch);
        let (mut buf, mut limit) = sizes.next_buffer();
        let mut rows = 0u64;
        while let Some(row) = result.next().await.ctx(|| format!("reading rows of {sql}"))? {
            push_row(&mut buf, &row);
            rows += 1;
            if buf.len() >= limit {
                let next;
                (next, limit) = sizes.next_buffer();
                let full = std::mem::replace(&mut buf, next).freeze();
                if tx.send(Ok((full, rows))).await.is_err() {
                    return Ok(None);
                }
                rows = 0;
            }
        }
        if rows > 0 && tx.send(Ok((buf.freeze(), rows))).await.is_err() {
            return Ok(None);
        }
    }
    if own_snapshot {
        conn.query_drop("COMMIT").await.ctx(|| "ending the snapshot".into())?;
    }
    Ok(Some(lease))
}

impl Reader for MysqlReader {
    fn next_batch(&mut self) -> std::result::Result<Option<(Bytes, u64)>, PluginError> {
        Ok(match &mut self.source {
            Source::Channel(channel) => channel.next_batch(runtime()?)?,
            Source::Wire(pull) => pull.next_batch()?,
        })
    }
}
