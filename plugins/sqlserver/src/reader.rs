//! Reading one chunk: a task on the plugin runtime streams the SELECT,
//! encodes rows into batches (see [`crate::encode`]) and hands them over a
//! bounded channel; `next_batch` waits at most ~200 ms so the host stays
//! responsive to cancellation. Memory stays bounded: two batches in the
//! channel, one being filled, and the row being decoded.

use bytes::{Bytes, BytesMut};
use dbferry_plugin_abi::plugin::Reader;
use dbferry_plugin_abi::protocol::{PluginError, ReadRequest};
use dbferry_plugin_sdk::reader::{BatchChannel, BatchSender, BatchSizes};
use futures_util::TryStreamExt;

use crate::conn::{exec, runtime, Lease};
use crate::detail::TableDetail;
use crate::encode::{put_value, start_batch};
use crate::error::{Context, Error, Result};
use crate::quote::ident;
use crate::range::predicate;
use crate::snapshot::Isolation;

/// The SELECT of one chunk.
pub fn select_sql(request: &ReadRequest, detail: &TableDetail, isolation: Isolation) -> Result<String> {
    let table = detail.three_part(&request.database);
    let list = detail.select_list();
    if list.is_empty() {
        return Err(Error::Unsupported(format!("{table} has no column to copy")));
    }
    let mut sql = format!("SELECT {list} FROM {table}{}", isolation.table_hint());
    if let Some(filter) = predicate(detail, &request.range)? {
        sql.push_str(" WHERE ");
        sql.push_str(&filter);
    }
    // No ORDER BY: the target loads into a heap (indexes come after the
    // data), so a sort would only cost the source tempdb and time.
    Ok(sql)
}

/// A chunk being read.
pub struct SqlServerReader {
    channel: BatchChannel<Error>,
}

impl SqlServerReader {
    /// Starts reading `sql` on `lease` in `database`, `width` values per row.
    pub fn start(
        lease: Lease,
        database: &str,
        sql: String,
        width: usize,
        batch_bytes: u64,
        isolation: Isolation,
    ) -> Result<Self> {
        // In the source database: SNAPSHOT isolation is checked per database.
        let begin = format!("USE {}; {}", ident(database), isolation.begin());
        let rt = runtime()?;
        let batch = usize::try_from(batch_bytes)
            .unwrap_or(usize::MAX)
            .clamp(4096, 256 << 20);
        let channel = BatchChannel::spawn(rt, |tx| async move {
            match read(lease, &begin, &sql, width, batch, isolation, &tx).await {
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

/// The next batch's buffer, its header written, and the length that ends it.
fn new_batch(sizes: &mut BatchSizes, width: usize) -> Result<(BytesMut, usize)> {
    let (mut buf, limit) = sizes.next_buffer();
    start_batch(&mut buf, width)?;
    Ok((buf, limit))
}

/// Streams the result. Returns the lease when it is clean for reuse, `None`
/// when the host went away mid-result (the lease is then dropped, which
/// discards the connection with its unfinished result).
async fn read(
    mut lease: Lease,
    begin: &str,
    sql: &str,
    width: usize,
    batch: usize,
    isolation: Isolation,
    tx: &BatchSender<Error>,
) -> Result<Option<Lease>> {
    let conn = lease.conn()?;
    exec(conn, begin).await?;
    {
        let mut stream = conn
            .simple_query(sql)
            .await
            .ctx(|| format!("running {}", crate::conn::abbreviate(sql)))?
            .into_row_stream();
        let mut sizes = BatchSizes::new(batch);
        let (mut buf, mut limit) = new_batch(&mut sizes, width)?;
        let header = buf.len();
        let mut rows = 0u64;
        while let Some(row) = stream
            .try_next()
            .await
            .ctx(|| format!("reading rows of {}", crate::conn::abbreviate(sql)))?
        {
            if row.len() != width {
                return Err(Error::Internal(format!(
                    "the source returned {} values per row, {width} expected",
                    row.len()
                )));
            }
            for value in row {
                put_value(&mut buf, &value)?;
            }
            rows += 1;
            if buf.len() >= limit {
                let next;
                (next, limit) = new_batch(&mut sizes, width)?;
                let full = std::mem::replace(&mut buf, next).freeze();
                if tx.send(Ok((full, rows))).await.is_err() {
                    return Ok(None);
                }
                rows = 0;
            }
        }
        if rows > 0 && buf.len() > header && tx.send(Ok((buf.freeze(), rows))).await.is_err() {
            return Ok(None);
        }
    }
    exec(conn, isolation.end()).await?;
    Ok(Some(lease))
}

impl Reader for SqlServerReader {
    fn next_batch(&mut self) -> std::result::Result<Option<(Bytes, u64)>, PluginError> {
        Ok(self.channel.next_batch(runtime()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ColumnDetail;
    use dbferry_plugin_abi::protocol::{KeyRange, KeyValue, TableSchema};

    #[test]
    fn chunks_select_the_copied_columns_in_key_order() {
        let mut rv = ColumnDetail::plain("rv", "timestamp", 8, 0, 0);
        rv.nullable = false;
        let detail = TableDetail {
            schema: "s".into(),
            name: "t".into(),
            columns: vec![
                ColumnDetail::plain("id", "int", 4, 10, 0),
                ColumnDetail::plain("m", "money", 8, 19, 4),
                rv,
            ],
            ..TableDetail::default()
        };
        let request = ReadRequest {
            database: "src".into(),
            table: TableSchema::default(),
            range: KeyRange {
                columns: vec!["id".into()],
                lower: Some(vec![KeyValue::Int(10)]),
                upper: None,
            },
            batch_bytes: 1 << 20,
        };
        assert_eq!(
            select_sql(&request, &detail, Isolation::Snapshot).expect("sql"),
            "SELECT [id], CAST([m] AS decimal(19,4)) FROM [src].[s].[t] WHERE ([id] > 10)"
        );
        assert!(select_sql(&request, &detail, Isolation::TableLock)
            .expect("sql")
            .contains("FROM [src].[s].[t] WITH (TABLOCK) WHERE"));
        assert_eq!(detail.width(), 2);
    }
}
