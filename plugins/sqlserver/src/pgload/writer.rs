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

use bytes::{Bytes, BytesMut};
use dbferry_plugin_abi::protocol::{WriteRequest, WriteSummary};
use futures_util::SinkExt;
use tiberius::ColumnData;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::text::{push_escaped, push_hex, push_value, BYTES_PREFIX};
use super::{chain, PgPort};
use crate::cell::int;
use crate::conn::{rows, Lease};
use crate::detail::TableDetail;
use crate::encode::{Decoder, Record};
use crate::error::{Error, Result};
use crate::feed::Feed;
use crate::quote;
use crate::types::Transport;

/// `COPY` data is sent in messages of about this many bytes.
const MESSAGE: usize = 256 << 10;

/// The session temp table a chunk with binary columns is copied into.
const STAGE: &str = "dbferry_copy_stage";

/// One copied column of the target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyColumn {
    /// Its name, quoted.
    pub name: String,
    /// Its type as PostgreSQL spells it (`format_type`).
    pub ty: String,
    /// Binary (`varbinary`, `binary`, `image`): Babelfish's input function
    /// takes a text's own bytes, not hex, so such a column is copied as
    /// `bytea` into a staging table and cast on the server.
    pub bytes: bool,
}

/// Where a chunk is copied to: the table and its copied columns, as
/// PostgreSQL names them (quoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyTarget {
    /// `"schema"."table"`.
    pub relation: String,
    /// The copied columns, in the batch's order.
    pub columns: Vec<CopyColumn>,
}

impl CopyTarget {
    /// Whether rows go through a staging table first (see [`CopyColumn::bytes`]).
    pub fn staged(&self) -> bool {
        self.columns.iter().any(|c| c.bytes)
    }

    fn names(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The staging table, dropped at commit: the target's own types, but
    /// `bytea` for binary columns.
    pub fn stage_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, if c.bytes { "bytea" } else { c.ty.as_str() }))
            .collect();
        format!("CREATE TEMP TABLE {STAGE} ({}) ON COMMIT DROP", columns.join(", "))
    }

    /// The `COPY` statement, into the staging table when [`Self::staged`].
    pub fn copy_sql(&self) -> String {
        let into = if self.staged() { STAGE } else { &self.relation };
        format!("COPY {into} ({}) FROM STDIN", self.names())
    }

    /// Moves the staged rows into the table, identity values as they are.
    pub fn move_sql(&self) -> String {
        let values: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                if c.bytes {
                    format!("{}::sys.bbf_varbinary::{}", c.name, c.ty)
                } else {
                    c.name.clone()
                }
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {STAGE}",
            self.relation,
            self.names(),
            values.join(", ")
        )
    }
}

/// Finds `detail`'s table of `database` in PostgreSQL's catalogue: its oid
/// from T-SQL's `OBJECT_ID` (Babelfish's object ids are oids), its columns
/// by position. `None` when a column's name differs from T-SQL's beyond
/// case (PostgreSQL shortens names over 63 bytes), or the columns do not
/// line up: the chunk then goes over TDS.
pub async fn resolve(
    lease: &mut Lease,
    client: &Client,
    database: &str,
    detail: &TableDetail,
) -> Result<Option<CopyTarget>> {
    let sql = format!("SELECT OBJECT_ID({})", quote::string(&detail.three_part(database)));
    let found = rows(lease.conn()?, &sql).await?;
    let Some(id) = found.first().and_then(|r| int(r, 0)) else {
        return Err(Error::NotFound(format!(
            "{} does not exist",
            detail.three_part(database)
        )));
    };
    // T-SQL shows oids above 2^31 as negative ints.
    let oid = id & 0xffff_ffff;
    let pg =
        |e: tokio_postgres::Error| Error::Data(format!("finding {} in PostgreSQL: {}", detail.two_part(), chain(&e)));
    let relation = client
        .query_one(
            &format!(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = {oid}"
            ),
            &[],
        )
        .await
        .map_err(pg)?
        .try_get::<_, String>(0)
        .map_err(pg)?;
    let attributes: Vec<(String, String)> = client
        .query(
            &format!(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
                 WHERE attrelid = {oid} AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            ),
            &[],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
        .collect::<std::result::Result<_, tokio_postgres::Error>>()
        .map_err(pg)?;
    if attributes.len() != detail.columns.len() {
        return Ok(None);
    }
    let mut columns = Vec::new();
    for (column, (attribute, ty)) in detail.columns.iter().zip(&attributes) {
        if column.name.to_lowercase() != attribute.to_lowercase() {
            return Ok(None);
        }
        if column.copied() {
            columns.push(CopyColumn {
                name: quote_ident(attribute),
                ty: ty.clone(),
                bytes: matches!(column.transport(), Transport::Bytes { .. }),
            });
        }
    }
    Ok(Some(CopyTarget { relation, columns }))
}

/// A PostgreSQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

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
    target: CopyTarget,
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
}

impl CopyWriter {
    /// Starts copying into `target` on `client`.
    pub fn start(client: Client, target: CopyTarget, request: &WriteRequest, detail: &TableDetail) -> Self {
        let names = detail.copied().map(|c| c.name.clone()).collect();
        let redo = request.redo;
        let feed = Feed::start(detail.three_part(&request.database), |rx| {
            copy(client, target, redo, names, rx)
        });
        Self { feed }
    }

    /// Opens a PostgreSQL connection and finds the chunk's table, `None`
    /// when the table must go over TDS.
    pub async fn open(
        port: &PgPort,
        lease: &mut Lease,
        request: &WriteRequest,
        detail: &TableDetail,
    ) -> Result<Option<Self>> {
        let client = port.connect().await?;
        Ok(resolve(lease, &client, &request.database, detail)
            .await?
            .map(|target| Self::start(client, target, request, detail)))
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

    fn column(name: &str, ty: &str, bytes: bool) -> CopyColumn {
        CopyColumn {
            name: quote_ident(name),
            ty: ty.into(),
            bytes,
        }
    }

    #[test]
    fn the_copy_names_its_columns() {
        let target = CopyTarget {
            relation: "\"d_dbo\".\"t\"".into(),
            columns: vec![
                column("id", "integer", false),
                column("a\"b", "sys.\"varchar\"(20)", false),
            ],
        };
        assert!(!target.staged());
        assert_eq!(
            target.copy_sql(),
            "COPY \"d_dbo\".\"t\" (\"id\", \"a\"\"b\") FROM STDIN"
        );
    }

    #[test]
    fn binary_columns_are_staged_as_bytea_and_cast_by_the_server() {
        let target = CopyTarget {
            relation: "\"d_dbo\".\"t\"".into(),
            columns: vec![column("id", "integer", false), column("b", "sys.\"binary\"(4)", true)],
        };
        assert!(target.staged());
        assert_eq!(
            target.stage_sql(),
            "CREATE TEMP TABLE dbferry_copy_stage (\"id\" integer, \"b\" bytea) ON COMMIT DROP"
        );
        assert_eq!(target.copy_sql(), "COPY dbferry_copy_stage (\"id\", \"b\") FROM STDIN");
        assert_eq!(
            target.move_sql(),
            "INSERT INTO \"d_dbo\".\"t\" (\"id\", \"b\") OVERRIDING SYSTEM VALUE \
             SELECT \"id\", \"b\"::sys.bbf_varbinary::sys.\"binary\"(4) FROM dbferry_copy_stage"
        );
    }
}
