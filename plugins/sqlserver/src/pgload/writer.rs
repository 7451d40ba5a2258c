//! Writing one chunk by `COPY FROM STDIN` on a PostgreSQL connection of its
//! own: `BEGIN; [DELETE FROM t (redo)]; COPY t (columns) FROM STDIN`, the
//! copied row count checked against the rows sent, then `COMMIT`. Nothing
//! is visible before the commit, and an aborted chunk's transaction dies
//! with its connection.
//!
//! Identity values are written as they are (PostgreSQL's identity and
//! serial columns take explicit values); the identity's current value is
//! set over TDS after the data, as on the TDS path. Triggers, checks and
//! foreign keys are created after the data, so `COPY` meets none of them.
//!
//! A value read in pieces ([`crate::pieces`]) is streamed into the row as
//! its pieces arrive: the row's text is written up to the value, each
//! piece is appended (escaped, or as hex), and the rest of the row follows
//! the last piece, so no value is ever held whole.
//!
//! Rows a Babelfish source read out by `COPY` ([`super::reader`]) arrive
//! as `COPY` text already, and are sent on untouched.

use bytes::{Bytes, BytesMut};
use dbferry_plugin_abi::protocol::{WriteRequest, WriteSummary};
use futures_util::SinkExt;
use tiberius::ColumnData;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::reader::copy_text_rows;
use super::table::{resolve, PgTable};
use super::text::{push_escaped, push_hex, push_value, BYTES_PREFIX};
use super::{chain, PgPort};
use crate::detail::TableDetail;
use crate::encode::{Decoder, Record};
use crate::error::{Error, Result};
use crate::feed::Feed;

/// `COPY` data is sent in messages of about this many bytes.
const MESSAGE: usize = 256 << 10;

/// A row whose text is being written, up to a value that follows in pieces.
struct OpenRow {
    values: Vec<ColumnData<'static>>,
    pending: Vec<usize>,
    /// The next value to write.
    next: usize,
    /// The value whose pieces are being appended.
    streaming: Option<usize>,
}

/// Turns a chunk's records into `COPY` text.
struct RowText {
    /// Column names, for messages.
    names: Vec<String>,
    open: Option<OpenRow>,
}

impl RowText {
    fn push(&mut self, record: Record, out: &mut BytesMut) -> Result<()> {
        match record {
            Record::Row { values, pending } => {
                self.close(out)?;
                if values.len() != self.names.len() {
                    return Err(Error::Invalid(format!(
                        "a row has {} values, the table {}",
                        values.len(),
                        self.names.len()
                    )));
                }
                let mut row = OpenRow {
                    values,
                    pending,
                    next: 0,
                    streaming: None,
                };
                match row.pending.first().copied() {
                    None => {
                        self.write_until(&mut row, self.names.len(), out)?;
                        out.extend_from_slice(b"\n");
                    }
                    Some(first) => {
                        self.write_until(&mut row, first, out)?;
                        self.open = Some(row);
                    }
                }
            }
            Record::Piece { index, data } => {
                let Some(mut row) = self.open.take() else {
                    return Err(Error::Invalid("a piece of a long value arrived before its row".into()));
                };
                if row.streaming != Some(index) {
                    if index < row.next || !row.pending.contains(&index) {
                        return Err(Error::Invalid(format!(
                            "a piece of {} arrived out of order",
                            self.name(index)
                        )));
                    }
                    self.write_until(&mut row, index, out)?;
                    separate(index, out);
                    if matches!(data, ColumnData::Binary(_)) {
                        out.extend_from_slice(BYTES_PREFIX.as_bytes());
                    }
                    row.streaming = Some(index);
                    row.next = index + 1;
                }
                match &data {
                    ColumnData::String(Some(s)) => push_escaped(out, s),
                    ColumnData::Binary(Some(b)) => push_hex(out, b),
                    other => return Err(Error::Invalid(format!("a piece of {} is {other:?}", self.name(index)))),
                }
                self.open = Some(row);
            }
        }
        Ok(())
    }

    /// Ends the row being streamed, if any.
    fn close(&mut self, out: &mut BytesMut) -> Result<()> {
        if let Some(mut row) = self.open.take() {
            self.write_until(&mut row, self.names.len(), out)?;
            out.extend_from_slice(b"\n");
        }
        Ok(())
    }

    /// Writes the row's values from `next` up to `end` (exclusive).
    fn write_until(&self, row: &mut OpenRow, end: usize, out: &mut BytesMut) -> Result<()> {
        for index in row.next..end {
            if row.pending.contains(&index) {
                return Err(Error::Invalid(format!(
                    "{} was to follow in pieces, but none came",
                    self.name(index)
                )));
            }
            separate(index, out);
            let value = row
                .values
                .get(index)
                .ok_or_else(|| Error::Internal(format!("a row lacks value {index}")))?;
            push_value(out, value, self.name(index))?;
        }
        row.next = row.next.max(end);
        Ok(())
    }

    fn name(&self, index: usize) -> &str {
        self.names.get(index).map_or("?", String::as_str)
    }
}

/// The tab before every value but the first.
fn separate(index: usize, out: &mut BytesMut) {
    if index > 0 {
        out.extend_from_slice(b"\t");
    }
}

/// Copies every batch `rx` brings (then moves staged rows into the table);
/// returns the client, inside its open transaction, and the rows the
/// table took.
async fn copy(
    client: Client,
    target: PgTable,
    redo: bool,
    names: Vec<String>,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<(Client, u64)> {
    let failed =
        |doing: &str, e: tokio_postgres::Error| Error::Data(format!("{doing} {}: {}", target.relation, chain(&e)));
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| failed("starting the copy of", e))?;
    if redo {
        client
            .batch_execute(&format!("DELETE FROM {}", target.relation))
            .await
            .map_err(|e| failed("clearing", e))?;
    }
    if target.staged() {
        client
            .batch_execute(&target.stage_sql())
            .await
            .map_err(|e| failed("staging", e))?;
    }
    let sink = client
        .copy_in::<_, Bytes>(&target.copy_sql())
        .await
        .map_err(|e| failed("starting COPY into", e))?;
    futures_util::pin_mut!(sink);
    let width = names.len();
    let mut text = RowText { names, open: None };
    let mut out = BytesMut::with_capacity(MESSAGE * 2);
    while let Some(batch) = rx.recv().await {
        // Rows a Babelfish source sent as its own `COPY` text go on as
        // they are.
        if let Some(rows) = copy_text_rows(&batch) {
            text.close(&mut out)?;
            if !out.is_empty() {
                sink.send(out.split().freeze())
                    .await
                    .map_err(|e| failed("copying into", e))?;
            }
            sink.send(rows).await.map_err(|e| failed("copying into", e))?;
            continue;
        }
        let mut decoder = Decoder::new(batch)?;
        if decoder.width() != width {
            return Err(Error::Invalid(format!(
                "a batch has {} values per row, the table {width}",
                decoder.width()
            )));
        }
        while let Some(record) = decoder.record()? {
            text.push(record, &mut out)?;
            if out.len() >= MESSAGE {
                sink.send(out.split().freeze())
                    .await
                    .map_err(|e| failed("copying into", e))?;
            }
        }
    }
    text.close(&mut out)?;
    if !out.is_empty() {
        sink.send(out.split().freeze())
            .await
            .map_err(|e| failed("copying into", e))?;
    }
    let copied = sink.finish().await.map_err(|e| failed("ending COPY into", e))?;
    if !target.staged() {
        return Ok((client, copied));
    }
    let moved = client
        .execute(&target.move_sql(), &[])
        .await
        .map_err(|e| failed("moving staged rows into", e))?;
    if moved != copied {
        return Err(Error::Data(format!(
            "{} took {moved} of the {copied} rows staged for it",
            target.relation
        )));
    }
    Ok((client, moved))
}

/// A chunk being copied. Aborted, its connection goes with the task and
/// its transaction rolls back.
pub struct CopyWriter {
    /// The copying task, which gives back its client (in the open
    /// transaction) and the rows the table took.
    pub(crate) feed: Feed<(Client, u64)>,
    /// Where the client goes once committed.
    port: PgPort,
}

impl CopyWriter {
    /// Starts copying into `target` on `client`, a connection of `port`.
    pub fn start(port: &PgPort, client: Client, target: PgTable, request: &WriteRequest, detail: &TableDetail) -> Self {
        let names = detail.copied().map(|c| c.name.clone()).collect();
        let redo = request.redo;
        let feed = Feed::start(detail.three_part(&request.database), |rx| {
            copy(client, target, redo, names, rx)
        });
        Self {
            feed,
            port: port.clone(),
        }
    }

    /// Takes a PostgreSQL connection and finds the chunk's table, `None`
    /// when the table must go over TDS.
    pub async fn open(port: &PgPort, request: &WriteRequest, detail: &TableDetail) -> Result<Option<Self>> {
        let client = port.client().await?;
        match resolve(&client, &request.database, detail).await? {
            Some(target) => Ok(Some(Self::start(port, client, target, request, detail))),
            None => {
                port.give_back(client);
                Ok(None)
            }
        }
    }

    /// Checks the rows the table took and commits.
    pub async fn commit(mut self) -> Result<WriteSummary> {
        let (client, copied) = self.feed.finish().await?;
        let (table, sent) = (self.feed.table(), self.feed.rows());
        if copied != sent {
            // Dropping the client rolls the transaction back.
            return Err(Error::Data(format!(
                "the target copied {copied} rows of {table} but {sent} were sent"
            )));
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(Error::postgres(format!("committing a chunk of {table}")))?;
        self.port.give_back(client);
        Ok(WriteSummary {
            rows: sent,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(records: Vec<Record>, width: usize) -> Result<String> {
        let mut rows = RowText {
            names: (0..width).map(|i| format!("c{i}")).collect(),
            open: None,
        };
        let mut out = BytesMut::new();
        for record in records {
            rows.push(record, &mut out)?;
        }
        rows.close(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn row(values: Vec<ColumnData<'static>>, pending: Vec<usize>) -> Record {
        Record::Row { values, pending }
    }

    #[test]
    fn rows_are_tab_separated_lines() {
        let out = text(
            vec![
                row(
                    vec![ColumnData::I32(Some(1)), ColumnData::String(Some("a b".into()))],
                    vec![],
                ),
                row(vec![ColumnData::I32(Some(2)), ColumnData::String(None)], vec![]),
            ],
            2,
        );
        assert_eq!(out.ok().as_deref(), Some("1\ta b\n2\t\\N\n"));
    }

    #[test]
    fn pieces_stream_into_their_row_in_place() {
        let piece = |index, s: &str| Record::Piece {
            index,
            data: ColumnData::String(Some(s.to_string().into())),
        };
        let out = text(
            vec![
                row(
                    vec![
                        ColumnData::I32(Some(1)),
                        ColumnData::String(Some(String::new().into())),
                        ColumnData::I32(Some(7)),
                        ColumnData::Binary(Some(Vec::new().into())),
                    ],
                    vec![1, 3],
                ),
                piece(1, "ab\t"),
                piece(1, "cd"),
                Record::Piece {
                    index: 3,
                    data: ColumnData::Binary(Some(vec![0xca, 0xfe].into())),
                },
                row(
                    vec![
                        ColumnData::I32(Some(2)),
                        ColumnData::String(None),
                        ColumnData::I32(None),
                        ColumnData::Binary(None),
                    ],
                    vec![],
                ),
            ],
            4,
        );
        assert_eq!(
            out.ok().as_deref(),
            Some("1\tab\\tcd\t7\t\\\\xcafe\n2\t\\N\t\\N\t\\N\n")
        );
    }

    #[test]
    fn a_pending_value_without_pieces_or_pieces_out_of_order_are_refused() {
        let pending = || {
            row(
                vec![
                    ColumnData::String(Some(String::new().into())),
                    ColumnData::String(Some(String::new().into())),
                ],
                vec![0, 1],
            )
        };
        let piece = |index| Record::Piece {
            index,
            data: ColumnData::String(Some("x".into())),
        };
        assert!(text(vec![pending(), piece(1)], 2).is_err());
        assert!(text(vec![pending(), piece(0)], 2).is_err());
        assert!(text(vec![pending(), piece(1), piece(0)], 2).is_err());
        assert!(text(vec![piece(0)], 2).is_err());
        assert_eq!(
            text(vec![pending(), piece(0), piece(1)], 2).ok().as_deref(),
            Some("x\tx\n")
        );
    }
}
