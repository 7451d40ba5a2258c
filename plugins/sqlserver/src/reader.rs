//! Reading one chunk: a task on the plugin runtime streams the SELECT,
//! encodes rows into batches (see [`crate::encode`]) and hands them over a
//! bounded channel; `next_batch` waits at most ~200 ms so the host stays
//! responsive to cancellation. Memory stays bounded: two batches in the
//! channel, one being filled, and the row being decoded; values too long
//! to hold whole follow their row in pieces ([`crate::pieces`]).

use bytes::{Bytes, BytesMut};
use dbferry_plugin_abi::plugin::Reader;
use dbferry_plugin_abi::protocol::{PluginError, ReadRequest};
use dbferry_plugin_sdk::reader::{BatchChannel, BatchSender, BatchSizes};
use futures_util::TryStreamExt;

use crate::conn::{exec, runtime, Lease};
use crate::detail::TableDetail;
use crate::encode::{put_pending, put_piece, put_value, start_batch};
use crate::error::{Context, Error, Result};
use crate::pieces::{read_piece, Piecewise};
use crate::quote::ident;
use crate::range::predicate;
use crate::snapshot::Isolation;

/// The SELECT of one chunk; with `pieces`, long values are left out and
/// flagged ([`Piecewise::select_list`]).
pub fn select_sql(
    request: &ReadRequest,
    detail: &TableDetail,
    isolation: Isolation,
    pieces: Option<&Piecewise>,
) -> Result<String> {
    let table = detail.three_part(&request.database);
    let list = match pieces {
        Some(plan) => plan.select_list(detail),
        None => detail.select_list(),
    };
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
    /// A reader of the batches another task sends on `channel` (a read
    /// through Babelfish's PostgreSQL port, [`crate::pgload::reader`]).
    pub fn from_channel(channel: BatchChannel<Error>) -> Self {
        Self { channel }
    }

    /// Starts reading `sql` on `lease` in `database`, `width` values per row
    /// (then `pieces`' flags, when it reads long values in pieces).
    pub fn start(
        lease: Lease,
        database: &str,
        sql: String,
        width: usize,
        batch_bytes: u64,
        isolation: Isolation,
        pieces: Option<Piecewise>,
    ) -> Result<Self> {
        // In the source database: SNAPSHOT isolation is checked per database.
        let begin = format!("USE {}; {}", ident(database), isolation.begin());
        let rt = runtime()?;
        let batch = usize::try_from(batch_bytes)
            .unwrap_or(usize::MAX)
            .clamp(4096, 256 << 20);
        let channel = BatchChannel::spawn(rt, |tx| async move {
            let chunk = Chunk {
                begin: &begin,
                sql: &sql,
                width,
                batch,
                isolation,
                pieces: pieces.as_ref(),
            };
            match chunk.read(lease, &tx).await {
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

/// The batch being filled.
struct Filler {
    sizes: BatchSizes,
    buf: BytesMut,
    /// The length that ends it.
    limit: usize,
    width: usize,
    /// Rows in it (pieces are not rows).
    rows: u64,
}

impl Filler {
    fn new(batch: usize, width: usize) -> Result<Self> {
        let mut sizes = BatchSizes::new(batch);
        let (mut buf, limit) = sizes.next_buffer();
        start_batch(&mut buf, width)?;
        Ok(Self {
            sizes,
            buf,
            limit,
            width,
            rows: 0,
        })
    }

    /// Whether anything follows the header.
    fn has_records(&self) -> bool {
        self.buf.len() > crate::encode::MAGIC.len() + 2
    }

    /// Sends the batch once it is full; `false` when the host went away.
    async fn send_if_full(&mut self, tx: &BatchSender<Error>) -> Result<bool> {
        if self.buf.len() < self.limit {
            return Ok(true);
        }
        let (mut next, limit) = self.sizes.next_buffer();
        start_batch(&mut next, self.width)?;
        self.limit = limit;
        let full = std::mem::replace(&mut self.buf, next).freeze();
        let rows = std::mem::take(&mut self.rows);
        Ok(tx.send(Ok((full, rows))).await.is_ok())
    }

    /// Sends what is left; `false` when the host went away.
    async fn send_rest(self, tx: &BatchSender<Error>) -> bool {
        !self.has_records() || tx.send(Ok((self.buf.freeze(), self.rows))).await.is_ok()
    }
}

/// A row whose long values follow once the chunk's SELECT is done.
struct Deferred {
    /// Its values, the long ones NULL.
    values: Vec<tiberius::ColumnData<'static>>,
    /// The indexes of the long ones.
    long: Vec<usize>,
}

/// One chunk's read, as [`SqlServerReader::start`] was asked.
struct Chunk<'a> {
    begin: &'a str,
    sql: &'a str,
    width: usize,
    batch: usize,
    isolation: Isolation,
    pieces: Option<&'a Piecewise>,
}

impl Chunk<'_> {
    /// Streams the result. Returns the lease when it is clean for reuse,
    /// `None` when the host went away mid-result (the lease is then
    /// dropped, which discards the connection with its unfinished result).
    async fn read(&self, mut lease: Lease, tx: &BatchSender<Error>) -> Result<Option<Lease>> {
        let conn = lease.conn()?;
        exec(conn, self.begin).await?;
        let mut filler = Filler::new(self.batch, self.width)?;
        let flags = self.pieces.map_or(0, Piecewise::flags);
        let mut deferred = Vec::new();
        {
            let mut stream = conn
                .simple_query(self.sql)
                .await
                .ctx(|| format!("running {}", crate::conn::abbreviate(self.sql)))?
                .into_row_stream();
            while let Some(row) = stream
                .try_next()
                .await
                .ctx(|| format!("reading rows of {}", crate::conn::abbreviate(self.sql)))?
            {
                if row.len() != self.width + flags {
                    return Err(Error::Internal(format!(
                        "the source returned {} values per row, {} expected",
                        row.len(),
                        self.width + flags
                    )));
                }
                // Only a row with a long value is collected; the others
                // go straight into the batch, as without pieces.
                let long = self
                    .pieces
                    .map(|plan| plan.flagged(row.cells().skip(self.width).map(|(_, v)| v)));
                match long {
                    Some(long) if !long.is_empty() => {
                        let values = row.into_iter().take(self.width).collect();
                        deferred.push(Deferred { values, long });
                        continue;
                    }
                    _ => {
                        for value in row.into_iter().take(self.width) {
                            put_value(&mut filler.buf, &value)?;
                        }
                    }
                }
                filler.rows += 1;
                if !filler.send_if_full(tx).await? {
                    return Ok(None);
                }
            }
        }
        if let Some(plan) = self.pieces {
            for row in deferred {
                if !send_in_pieces(conn, plan, row, &mut filler, tx).await? {
                    return Ok(None);
                }
            }
        }
        if !filler.send_rest(tx).await {
            return Ok(None);
        }
        exec(conn, self.isolation.end()).await?;
        Ok(Some(lease))
    }
}

/// Adds `row` with its long values pending, then their pieces, read by key
/// in the chunk's snapshot; `false` when the host went away.
async fn send_in_pieces(
    conn: &mut crate::conn::Conn,
    plan: &Piecewise,
    row: Deferred,
    filler: &mut Filler,
    tx: &BatchSender<Error>,
) -> Result<bool> {
    let key = plan.key_of(&row.values)?;
    for (index, value) in row.values.iter().enumerate() {
        if row.long.contains(&index) {
            put_pending(&mut filler.buf);
        } else {
            put_value(&mut filler.buf, value)?;
        }
    }
    filler.rows += 1;
    for index in row.long {
        let sql = plan.piece_sql(index)?;
        let units = plan.piece_units(index);
        let mut from = 1i64;
        while let Some((piece, length)) = read_piece(conn, &sql, from, units, &key).await? {
            put_piece(&mut filler.buf, index, &piece)?;
            from += length;
            if !filler.send_if_full(tx).await? {
                return Ok(false);
            }
        }
    }
    Ok(true)
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
            formats: Vec::new(),
        };
        assert_eq!(
            select_sql(&request, &detail, Isolation::Snapshot, None).expect("sql"),
            "SELECT [id], CAST([m] AS decimal(19,4)) FROM [src].[s].[t] WHERE ([id] > 10)"
        );
        assert!(select_sql(&request, &detail, Isolation::TableLock, None)
            .expect("sql")
            .contains("FROM [src].[s].[t] WITH (TABLOCK) WHERE"));
        assert_eq!(detail.width(), 2);
    }
}
