//! Reading one chunk: a task on the plugin runtime streams the SELECT
//! (text protocol), encodes rows into batches and hands them over a
//! bounded channel; `next_batch` waits at most ~200 ms so the host stays
//! responsive to cancellation.

use bytes::Bytes;
use dbferry_plugin_abi::plugin::Reader;
use dbferry_plugin_abi::protocol::{PluginError, ReadRequest};
use dbferry_plugin_sdk::reader::{BatchChannel, BatchSender, BatchSizes};
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
    channel: BatchChannel<Error>,
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
        Ok(Self { channel })
    }

    /// Starts reading `sql` on a wire connection of the global snapshot.
    pub fn start_wire(lease: WireLease, sql: String, batch_bytes: u64) -> Result<Self> {
        let rt = runtime()?;
        let batch = batch_size(batch_bytes);
        let channel = BatchChannel::spawn(rt, |tx| async move {
            match read_wire(lease, &sql, batch, &tx).await {
                Ok(Some(lease)) => lease.release(),
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        Ok(Self { channel })
    }
}

fn batch_size(batch_bytes: u64) -> usize {
    usize::try_from(batch_bytes)
        .unwrap_or(usize::MAX)
        .clamp(4096, 256 << 20)
}

/// [`read`] on a wire connection: rows go from the packet buffer straight
/// into the batch, with no value objects in between.
async fn read_wire(
    mut lease: WireLease,
    sql: &str,
    batch: usize,
    tx: &BatchSender<Error>,
) -> Result<Option<WireLease>> {
    let conn = lease.conn()?;
    let columns = conn
        .start_rows(sql)
        .await
        .map_err(|e| e.during(|| format!("running {sql}")))?;
    let mut sizes = BatchSizes::new(batch);
    loop {
        let (mut buf, limit) = sizes.next_buffer();
        let (rows, ended) = conn
            .encode_rows(columns, &mut buf, limit)
            .await
            .map_err(|e| e.during(|| format!("reading rows of {sql}")))?;
        if rows > 0 && tx.send(Ok((buf.freeze(), rows))).await.is_err() {
            return Ok(None);
        }
        if ended {
            return Ok(Some(lease));
        }
    }
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
        Ok(self.channel.next_batch(runtime()?)?)
    }
}
