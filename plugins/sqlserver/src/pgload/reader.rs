//! Reading a whole table of a Babelfish source through its PostgreSQL port,
//! for a Babelfish target that loads by `COPY` too ([`COPY_TEXT`]).
//!
//! One `COPY (SELECT ...) TO STDOUT` in a read-only REPEATABLE READ
//! transaction reads the table as of one instant, as the TDS reader's
//! single statement does. Its text rows are handed to the target's
//! `COPY FROM STDIN` as they are: both servers hold the same Babelfish
//! types, so every value goes through its type's output function here and
//! its input function there, as a `pg_dump` and restore's do, and nothing
//! is decoded on the way. Babelfish's T-SQL layer (a TDS result, its
//! decoding and this plugin's batch encoding) is left out, which was most
//! of the copy's CPU on both servers.
//!
//! Binary columns travel as `bytea` hex, which the target's staging table
//! takes ([`super::table::PgTable::staged`]). Only tables whose every value
//! is bounded go this way: PostgreSQL sends a row as one message, so a
//! 64 MiB value would be held whole; tables with `(max)` columns are read
//! over TDS, in pieces ([`crate::pieces`]).

use bytes::{BufMut, Bytes};
use dbferry_plugin_abi::protocol::ReadRequest;
use dbferry_plugin_sdk::reader::{BatchChannel, BatchSender, BatchSizes};
use futures_util::TryStreamExt;
use tokio_postgres::Client;

use super::table::{resolve, PgTable};
use super::{carries, PgPort};
use crate::conn::runtime;
use crate::detail::TableDetail;
use crate::error::{Error, Result};
use crate::range::predicate;
use crate::reader::SqlServerReader;

/// The batch format of `COPY` text rows, which a Babelfish target loading
/// through its PostgreSQL port takes (`ServerInfo::batch_formats`).
pub const COPY_TEXT: &str = "babelfish-copy-text";

/// The header of a [`COPY_TEXT`] batch; whole rows of `COPY` text follow.
pub const MAGIC: &[u8; 4] = b"DFP1";

/// The rows of a [`COPY_TEXT`] batch, `None` for a batch of another format.
pub fn copy_text_rows(batch: &Bytes) -> Option<Bytes> {
    batch.starts_with(MAGIC).then(|| batch.slice(MAGIC.len()..))
}

/// Whether the chunk `request` names may be read out by `COPY`: its writer
/// takes [`COPY_TEXT`], it is the whole table, and every copied column is
/// one `COPY` carries and of bounded size.
pub fn applies(request: &ReadRequest, detail: &TableDetail) -> Result<bool> {
    let bounded = detail
        .copied()
        .all(|c| c.max_length >= 0 && !matches!(c.base.as_str(), "text" | "ntext" | "image" | "xml"));
    Ok(request.formats.iter().any(|f| f == COPY_TEXT)
        && bounded
        && carries(detail)
        && predicate(detail, &request.range)?.is_none())
}

/// Starts reading the chunk by `COPY`, `None` when the table cannot be
/// (its columns do not line up with PostgreSQL's, or the login may not
/// read it through this port): it is then read over TDS.
pub async fn open(port: &PgPort, request: &ReadRequest, detail: &TableDetail) -> Result<Option<SqlServerReader>> {
    let client = port.client().await?;
    let Some(table) = resolve(&client, &request.database, detail).await? else {
        port.give_back(client);
        return Ok(None);
    };
    let readable = client
        .query_one("SELECT has_table_privilege($1, 'SELECT')", &[&table.relation])
        .await
        .and_then(|row| row.try_get::<_, bool>(0))
        .unwrap_or(false);
    if !readable {
        tracing::info!(table = %detail.two_part(), "read over TDS: the login may not read it through the PostgreSQL port");
        port.give_back(client);
        return Ok(None);
    }
    let name = detail.three_part(&request.database);
    let batch = usize::try_from(request.batch_bytes)
        .unwrap_or(usize::MAX)
        .clamp(4096, 256 << 20);
    let port = port.clone();
    let channel = BatchChannel::spawn(runtime()?, move |tx| async move {
        match copy_out(client, &table, &name, batch, &tx).await {
            Ok(Some(client)) => port.give_back(client),
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    Ok(Some(SqlServerReader::from_channel(channel)))
}

/// Streams the table's rows into batches of about `batch` bytes, whole
/// rows each; ends early, quietly, when the host went away. Gives the
/// client back when it read to the end and committed.
async fn copy_out(
    client: Client,
    table: &PgTable,
    name: &str,
    batch: usize,
    tx: &BatchSender<Error>,
) -> Result<Option<Client>> {
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
             SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'",
        )
        .await
        .map_err(Error::postgres(format!("starting to read {name}")))?;
    let stream = client
        .copy_out(&table.copy_out_sql())
        .await
        .map_err(Error::postgres(format!("reading {name}")))?;
    futures_util::pin_mut!(stream);
    let mut sizes = BatchSizes::new(batch);
    let (mut buf, mut limit) = sizes.next_buffer();
    buf.put_slice(MAGIC);
    let mut rows = 0u64;
    while let Some(data) = stream
        .try_next()
        .await
        .map_err(Error::postgres(format!("reading {name}")))?
    {
        // A row's text holds no raw newline (COPY escapes it as `\n`), so
        // every newline ends one row; a message is one whole row.
        rows += memchr_count(&data);
        buf.put_slice(&data);
        if buf.len() >= limit {
            let (next, next_limit) = sizes.next_buffer();
            let full = std::mem::replace(&mut buf, next);
            limit = next_limit;
            buf.put_slice(MAGIC);
            if tx.send(Ok((full.freeze(), std::mem::take(&mut rows)))).await.is_err() {
                return Ok(None);
            }
        }
    }
    if buf.len() > MAGIC.len() && tx.send(Ok((buf.freeze(), rows))).await.is_err() {
        return Ok(None);
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(Error::postgres(format!("ending the read of {name}")))?;
    Ok(Some(client))
}

/// Newlines in `data`.
fn memchr_count(data: &[u8]) -> u64 {
    data.iter().filter(|b| **b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_copy_text_batches_are_recognised() {
        let rows = Bytes::from_static(b"DFP11\tx\n2\ty\n");
        assert_eq!(copy_text_rows(&rows).as_deref(), Some(&b"1\tx\n2\ty\n"[..]));
        assert_eq!(copy_text_rows(&Bytes::from_static(b"DFS1\x02\x00")), None);
        assert_eq!(memchr_count(b"1\tx\n2\ty\n"), 2);
    }
}
