//! Writing one chunk: TDS bulk load into a staging table, then one
//! transaction that moves the rows into the real table.
//!
//! Why staging: tiberius's `bulk_insert` sends only the columns the server
//! marks updateable, which leaves IDENTITY columns out (`INSERT BULK` has no
//! `KEEP_IDENTITY` through it), so a direct bulk load would renumber them.
//! The alternatives were weighed:
//!
//! - `ALTER TABLE ... SWITCH` from a staging table needs an *empty* target
//!   (or partition) with identical indexes and constraints, so it cannot
//!   take the second chunk of a table, nor a table split into key ranges;
//! - `SET IDENTITY_INSERT ON` does not apply to bulk loads.
//!
//! So each chunk is bulk-loaded into a session temp table `#dbferry_stage`
//! whose columns are the chunk's transport types (see [`crate::types`]) and
//! have no IDENTITY, then, in one transaction on the target:
//! `[DELETE the chunk's key range (redo)]; SET IDENTITY_INSERT t ON;
//! INSERT INTO t (columns) SELECT converted columns FROM #dbferry_stage;
//! SET IDENTITY_INSERT t OFF`, with the inserted row count checked against
//! the rows sent before `COMMIT`. `IDENTITY_INSERT` is per session, so
//! chunks of one table load in parallel on their own connections; explicit
//! identity values above the current one move it forward (it is set to the
//! source's value after the data, see [`crate::ddl::reseed_identity`]).
//! The same path carries the types that need a server-side conversion back
//! (money, varchar, text, xml, CLR types, sql_variant). Nothing reaches the
//! real table before commit; an aborted chunk leaves only a temp table that
//! dies with its connection.
//!
//! The writer's connection works inside the destination database (`USE`
//! before the staging table is made, two-part names after): Babelfish
//! cannot see a `#temp` table made before a `USE`, nor take a three-part
//! name in `SET IDENTITY_INSERT`. Columns its bulk load would store wrong
//! are staged as text and converted by the server
//! ([`Flavour::stages_as_text`]). A row holding a value the bulk load
//! cannot carry (over 65,535 bytes) is staged by a parameterised insert
//! between runs of bulk-loaded rows ([`crate::long`]); a value read in
//! pieces is staged empty and grown piece by piece ([`crate::pieces`]).

use bytes::Bytes;
use dbferry_plugin_abi::protocol::{WriteRequest, WriteSummary};
use tiberius::{ColumnData, TokenRow};
use tokio::sync::mpsc;

use crate::cell::int;
use crate::conn::{exec, rows, Lease};
use crate::detail::TableDetail;
use crate::encode::{is_null, Decoder, Record};
use crate::error::{Context, Error, Result};
use crate::feed::Feed;
use crate::flavour::Flavour;
use crate::long;
use crate::pieces::{self, Appender};
use crate::quote::ident;
use crate::range::predicate;
use crate::types::Transport;

/// The staging table of a writer connection.
pub const STAGE: &str = "#dbferry_stage";

/// The text type of a staging column loaded as text.
const TEXT_STAGE: &str = "nvarchar(100)";

/// One staging column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageColumn {
    /// `c0`, `c1`, ...
    pub name: String,
    /// The type of the value it carries.
    pub ty: String,
    /// Loaded as text (the column is [`TEXT_STAGE`]) and converted to `ty`.
    pub as_text: bool,
}

/// The staging columns, one per transport value.
pub fn stage_columns(detail: &TableDetail, flavour: Flavour) -> Vec<StageColumn> {
    let mut out = Vec::new();
    for column in detail.copied() {
        let transport = column.transport();
        for ty in transport.stage_types() {
            out.push(StageColumn {
                name: format!("c{}", out.len()),
                ty,
                as_text: flavour.stages_as_text(transport),
            });
        }
    }
    out
}

/// Drops a leftover staging table and creates it for `detail`.
pub fn create_stage_sql(detail: &TableDetail, flavour: Flavour) -> String {
    let columns: Vec<String> = stage_columns(detail, flavour)
        .iter()
        .map(|c| format!("{} {} NULL", ident(&c.name), if c.as_text { TEXT_STAGE } else { &c.ty }))
        .collect();
    format!(
        "IF OBJECT_ID(N'tempdb..{STAGE}') IS NOT NULL DROP TABLE {STAGE}; CREATE TABLE {STAGE} ({})",
        columns.join(", ")
    )
}

/// The transaction that moves the staged rows into the table; its last
/// statement selects the inserted row count. `COMMIT` follows separately.
/// Runs in the target database (see the module doc), so conversions that
/// take the database's default collation (sql_variant character values)
/// take the target's.
pub fn move_sql(request: &WriteRequest, detail: &TableDetail, flavour: Flavour) -> Result<String> {
    let table = detail.two_part();
    let stage_columns = stage_columns(detail, flavour);
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut next = 0;
    for column in detail.copied() {
        let width = column.transport().width();
        let stage: Vec<String> = stage_columns[next..next + width]
            .iter()
            .map(|c| {
                if c.as_text {
                    format!("CAST({} AS {})", ident(&c.name), c.ty)
                } else {
                    ident(&c.name)
                }
            })
            .collect();
        next += width;
        names.push(ident(&column.name));
        values.push(column.rebuild_expr(&stage));
    }
    let mut sql = String::from("DECLARE @n bigint; BEGIN TRANSACTION; ");
    if request.redo {
        match predicate(detail, &request.range)? {
            Some(filter) => sql.push_str(&format!("DELETE FROM {table} WHERE {filter}; ")),
            None => sql.push_str(&format!("DELETE FROM {table}; ")),
        }
    }
    let identity = detail.identity().is_some();
    if identity {
        sql.push_str(&format!("SET IDENTITY_INSERT {table} ON; "));
    }
    sql.push_str(&format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {STAGE}; SET @n = ROWCOUNT_BIG(); ",
        names.join(", "),
        values.join(", ")
    ));
    if identity {
        sql.push_str(&format!("SET IDENTITY_INSERT {table} OFF; "));
    }
    sql.push_str("SELECT @n");
    Ok(sql)
}

/// A NULL of the type tiberius encodes for a staging column of `ty`.
pub fn typed_null(transport: Transport, index: usize) -> ColumnData<'static> {
    match transport {
        Transport::Bit => ColumnData::Bit(None),
        Transport::TinyInt => ColumnData::U8(None),
        Transport::SmallInt => ColumnData::I16(None),
        Transport::Int => ColumnData::I32(None),
        Transport::BigInt => ColumnData::I64(None),
        Transport::Real => ColumnData::F32(None),
        Transport::Float => ColumnData::F64(None),
        Transport::Decimal { .. } => ColumnData::Numeric(None),
        Transport::Date => ColumnData::Date(None),
        Transport::Time { .. } => ColumnData::Time(None),
        Transport::DateTime => ColumnData::DateTime(None),
        Transport::SmallDateTime => ColumnData::SmallDateTime(None),
        Transport::DateTime2 { .. } => ColumnData::DateTime2(None),
        Transport::DateTimeOffset { .. } => ColumnData::DateTimeOffset(None),
        Transport::Bytes { .. } => ColumnData::Binary(None),
        Transport::Guid => ColumnData::Guid(None),
        Transport::Variant if index == 1 => ColumnData::U8(None),
        Transport::Text { .. } | Transport::Variant | Transport::Skip => ColumnData::String(None),
    }
}

/// What the load needs to know of each staging column.
#[derive(Clone, Debug)]
struct Slot {
    transport: Transport,
    /// The value's index within its column.
    index: usize,
    /// Sent as text (see [`Flavour::stages_as_text`]).
    as_text: bool,
    /// The column's name, for messages.
    column: String,
}

fn slots(detail: &TableDetail, flavour: Flavour) -> Vec<Slot> {
    detail
        .copied()
        .flat_map(|c| {
            let t = c.transport();
            let name = c.name.clone();
            (0..t.width()).map(move |index| Slot {
                transport: t,
                index,
                as_text: flavour.stages_as_text(t),
                column: name.clone(),
            })
        })
        .collect()
}

/// A chunk being written. Aborted, its connection is discarded: the
/// staging table and any open transaction die with it, and the real table
/// was never touched.
pub struct SqlServerWriter {
    /// The loading task, which gives back its connection and the rows it staged.
    pub(crate) feed: Feed<(Lease, u64)>,
    move_sql: String,
}

/// The staged rows of a chunk, as they arrive in batches.
struct Staged {
    rx: mpsc::Receiver<Bytes>,
    decoder: Option<Decoder>,
    slots: Vec<Slot>,
}

impl Staged {
    /// The next record, a row's values ready to stage (a pending value
    /// empty, to be grown by its pieces), `None` after the last.
    async fn next(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(decoder) = self.decoder.as_mut() {
                match decoder.record()? {
                    Some(Record::Row { values, pending }) => {
                        let mut row = Vec::with_capacity(values.len());
                        for (index, (value, slot)) in values.into_iter().zip(&self.slots).enumerate() {
                            row.push(if pending.contains(&index) {
                                pieces::empty_like(matches!(slot.transport, Transport::Bytes { .. }))
                            } else if slot.as_text {
                                ColumnData::String(crate::textform::text_of(&value, &slot.column)?.map(Into::into))
                            } else if is_null(&value) {
                                typed_null(slot.transport, slot.index)
                            } else {
                                value
                            });
                        }
                        return Ok(Some(Record::Row { values: row, pending }));
                    }
                    Some(piece) => return Ok(Some(piece)),
                    None => {}
                }
            }
            let Some(batch) = self.rx.recv().await else {
                return Ok(None);
            };
            let decoder = Decoder::new(batch)?;
            if decoder.width() != self.slots.len() {
                return Err(Error::Invalid(format!(
                    "a batch has {} values per row, the table {}",
                    decoder.width(),
                    self.slots.len()
                )));
            }
            self.decoder = Some(decoder);
        }
    }
}

/// Whether a record is a row the bulk load can carry.
fn bulk_row(record: &Record) -> bool {
    matches!(record, Record::Row { values, pending } if pending.is_empty() && !long::has_long(values))
}

/// Stages every row: runs of ordinary rows by bulk load, a row holding a
/// value too long for it by a parameterised insert ([`crate::long`]), a
/// value read in pieces by appending each to its staged row.
async fn load(lease: &mut Lease, rx: mpsc::Receiver<Bytes>, slots: Vec<Slot>, appender: Appender) -> Result<u64> {
    let conn = lease.conn()?;
    let mut staged = Staged {
        rx,
        decoder: None,
        slots,
    };
    let mut sent = 0u64;
    // The key of the last row staged with pending values: its pieces follow.
    let mut pending_key = None;
    let mut next = staged.next().await?;
    while let Some(record) = next.take() {
        if bulk_row(&record) {
            let mut bulk = conn.bulk_insert(STAGE).await.ctx(|| "starting a bulk load".into())?;
            let mut record = Some(record);
            while let Some(Record::Row { values, .. }) = record.take() {
                let mut tokens = TokenRow::with_capacity(values.len());
                for value in values {
                    tokens.push(value);
                }
                bulk.send(tokens).await.ctx(|| "bulk-loading rows".into())?;
                sent += 1;
                match staged.next().await? {
                    Some(r) if bulk_row(&r) => record = Some(r),
                    other => next = other,
                }
            }
            bulk.finalize().await.ctx(|| "ending a bulk load".into())?;
            continue;
        }
        match record {
            Record::Row { values, pending } => {
                pending_key = if pending.is_empty() {
                    None
                } else {
                    Some(appender.key_of(&values)?)
                };
                long::insert_row(conn, values).await?;
                sent += 1;
            }
            Record::Piece { index, data } => {
                let key = pending_key
                    .as_ref()
                    .ok_or_else(|| Error::Invalid("a piece of a long value arrived before its row".into()))?;
                appender.append(conn, index, data, key).await?;
            }
        }
        next = staged.next().await?;
    }
    Ok(sent)
}

impl SqlServerWriter {
    /// Creates the staging table on `lease` and starts the bulk load.
    pub async fn start(
        mut lease: Lease,
        request: &WriteRequest,
        detail: &TableDetail,
        flavour: Flavour,
    ) -> Result<Self> {
        let table = detail.three_part(&request.database);
        let move_sql = move_sql(request, detail, flavour)?;
        exec(
            lease.conn()?,
            &format!(
                "USE {}; {}",
                ident(&request.database),
                create_stage_sql(detail, flavour)
            ),
        )
        .await?;
        let slots = slots(detail, flavour);
        let appender = Appender::new(detail, &request.range.columns, flavour);
        let feed = Feed::start(table, |rx| async move {
            let staged = load(&mut lease, rx, slots, appender).await?;
            Ok((lease, staged))
        });
        Ok(Self { feed, move_sql })
    }

    /// Moves the staged rows into the table and commits.
    pub async fn commit(mut self) -> Result<WriteSummary> {
        let (mut lease, staged) = self.feed.finish().await?;
        let (table, sent) = (self.feed.table(), self.feed.rows());
        if staged != sent {
            return Err(Error::Data(format!(
                "{staged} rows of {table} were staged but {sent} were sent"
            )));
        }
        let conn = lease.conn()?;
        let found = rows(conn, &self.move_sql).await?;
        let inserted = found.first().and_then(|r| int(r, 0)).unwrap_or(-1);
        if inserted != i64::try_from(sent).unwrap_or(i64::MAX) {
            let _ = exec(conn, "IF @@TRANCOUNT > 0 ROLLBACK").await;
            return Err(Error::Data(format!(
                "the target inserted {inserted} rows of {table} but {sent} were sent"
            )));
        }
        exec(conn, &format!("COMMIT; DROP TABLE {STAGE}; USE master"))
            .await
            .map_err(|e| Error::Data(format!("committing a chunk of {table}: {e}")))?;
        lease.release();
        Ok(WriteSummary {
            rows: sent,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Identity;
    use dbferry_plugin_abi::protocol::{KeyRange, KeyValue, TableSchema};

    fn detail() -> TableDetail {
        let mut id = ColumnDetailBuilder::int("id");
        id.identity = Some(Identity {
            seed: "1".into(),
            increment: "1".into(),
            last_value: Some("10".into()),
            not_for_replication: false,
        });
        TableDetail {
            schema: "s".into(),
            name: "t]".into(),
            columns: vec![
                id,
                crate::types::ColumnDetail::plain("name", "varchar", 20, 0, 0),
                crate::types::ColumnDetail::plain("rv", "timestamp", 8, 0, 0),
                crate::types::ColumnDetail::plain("v", "sql_variant", 8016, 0, 0),
                crate::types::ColumnDetail::plain("g", "geometry", -1, 0, 0),
            ],
            ..TableDetail::default()
        }
    }

    struct ColumnDetailBuilder;
    impl ColumnDetailBuilder {
        fn int(name: &str) -> crate::types::ColumnDetail {
            let mut c = crate::types::ColumnDetail::plain(name, "int", 4, 10, 0);
            c.nullable = false;
            c
        }
    }

    fn request(redo: bool) -> WriteRequest {
        WriteRequest {
            database: "de]st".into(),
            table: TableSchema::default(),
            range: KeyRange {
                columns: vec!["id".into()],
                lower: Some(vec![KeyValue::Int(100)]),
                upper: Some(vec![KeyValue::Int(200)]),
            },
            redo,
        }
    }

    #[test]
    fn staging_has_transport_columns_without_identity() {
        assert_eq!(
            create_stage_sql(&detail(), Flavour::SqlServer),
            "IF OBJECT_ID(N'tempdb..#dbferry_stage') IS NOT NULL DROP TABLE #dbferry_stage; \
             CREATE TABLE #dbferry_stage ([c0] int NULL, [c1] nvarchar(max) NULL, [c2] nvarchar(max) NULL, \
             [c3] tinyint NULL, [c4] nvarchar(max) NULL, [c5] varbinary(max) NULL)"
        );
        assert_eq!(slots(&detail(), Flavour::SqlServer).len(), detail().width());
    }

    #[test]
    fn the_move_keeps_identity_values_and_redo_clears_the_range() {
        let sql = move_sql(&request(true), &detail(), Flavour::SqlServer).expect("sql");
        assert!(sql.starts_with(
            "DECLARE @n bigint; BEGIN TRANSACTION; DELETE FROM [s].[t]]] WHERE ([id] > 100) AND ([id] <= 200); \
             SET IDENTITY_INSERT [s].[t]]] ON; INSERT INTO [s].[t]]] ([id], [name], [v], [g]) SELECT [c0], [c1], CASE WHEN [c2] IS NULL"
        ));
        assert!(sql.ends_with(
            "CAST([c5] AS geometry) FROM #dbferry_stage; SET @n = ROWCOUNT_BIG(); \
             SET IDENTITY_INSERT [s].[t]]] OFF; SELECT @n"
        ));
        let plain = move_sql(&request(false), &detail(), Flavour::SqlServer).expect("sql");
        assert!(!plain.contains("DELETE"));
    }

    #[test]
    fn nulls_are_typed_for_their_staging_column() {
        assert!(matches!(typed_null(Transport::Guid, 0), ColumnData::Guid(None)));
        assert!(matches!(typed_null(Transport::Variant, 1), ColumnData::U8(None)));
        assert!(matches!(typed_null(Transport::Variant, 2), ColumnData::String(None)));
        assert!(matches!(
            typed_null(
                Transport::Decimal {
                    precision: 38,
                    scale: 2
                },
                0
            ),
            ColumnData::Numeric(None)
        ));
    }
}
