//! Values too long to hold whole, streamed in pieces.
//!
//! A `(max)` value can reach 2 GiB. Read whole, it would be held several
//! times over (tiberius's row, the batch, the writer's request), so peak
//! memory would follow the longest value. Instead, when the chunk is read
//! under SNAPSHOT isolation and the table has a chunk key:
//!
//! 1. the chunk's SELECT reads a `(max)` value stored in over
//!    [`PIECEWISE_OVER`] bytes as NULL, with a flag column per such column
//!    saying so;
//! 2. once the SELECT is done, each flagged value is read in pieces by key,
//!    on the same connection and in the same snapshot transaction, so the
//!    pieces are of the same moment as the row;
//! 3. the batch carries the row with the value marked pending, then its
//!    pieces ([`crate::encode::Record`]);
//! 4. the writer stages the row with an empty value, then appends each
//!    piece to it by key, checking that exactly one staged row took it.
//!
//! Elsewhere values travel whole, as [`crate::long`] describes: under
//! statement-level isolation or a table lock a second statement would see
//! another moment, and a keyless table has no way to find the row again.
//!
//! Piece boundaries are counted in the server's own units, never computed
//! by the client: the server says how many units each piece holds. SQL
//! Server counts nvarchar in UTF-16 units, so a piece there is cut one unit
//! short when it would end on a high surrogate; Babelfish counts characters
//! ([`Flavour::text_piece`]).

use dbferry_plugin_abi::protocol::ReadRequest;
use tiberius::{ColumnData, Query};

use crate::cell::int;
use crate::conn::Conn;
use crate::detail::TableDetail;
use crate::error::{Context, Error, Result};
use crate::flavour::Flavour;
use crate::quote::ident;
use crate::snapshot::Isolation;
use crate::types::Transport;
use crate::writer::STAGE;

/// Values stored in more bytes than this (`DATALENGTH` of the column) are
/// read in pieces.
pub const PIECEWISE_OVER: i64 = 4 << 20;
/// Characters (server units) per text piece: at most 16 MiB of UTF-8, 8 MiB
/// of UTF-16. Each piece costs Babelfish a pass over the value up to it
/// (PostgreSQL finds a character offset by counting from the start), so
/// pieces are as large as memory allows.
pub const TEXT_PIECE: i64 = 4 << 20;
/// Bytes per binary piece.
pub const BYTES_PIECE: i64 = 8 << 20;

/// Indexes in a row's values of `key`'s columns, `None` when one is not a
/// single copied value (a key the pieces could not be found by).
pub fn key_indexes(detail: &TableDetail, key: &[String]) -> Option<Vec<usize>> {
    let mut found = Vec::with_capacity(key.len());
    for name in key {
        let mut index = 0;
        let mut hit = None;
        for column in detail.copied() {
            let transport = column.transport();
            if column.name == *name {
                if transport.width() == 1 && transport != Transport::Variant {
                    hit = Some(index);
                }
                break;
            }
            index += transport.width();
        }
        found.push(hit?);
    }
    (!found.is_empty()).then_some(found)
}

/// The values of a row at `indexes` (its key).
fn values_at(values: &[ColumnData<'static>], indexes: impl Iterator<Item = usize>) -> Result<Vec<ColumnData<'static>>> {
    indexes
        .map(|i| {
            values
                .get(i)
                .cloned()
                .ok_or_else(|| Error::Invalid(format!("a row of {} values has no key value at {i}", values.len())))
        })
        .collect()
}

/// A column whose long values are read in pieces.
#[derive(Clone, Debug)]
struct LongColumn {
    /// Its value's index in a row.
    index: usize,
    /// The reader's expression for it.
    expr: String,
    /// The quoted column, whose stored length decides: measuring `expr`
    /// would convert every value (varchar, text, xml to nvarchar) twice
    /// more per row only to learn its length.
    column: String,
    /// varbinary (else nvarchar).
    binary: bool,
}

/// How a chunk reads its long values in pieces.
#[derive(Clone, Debug)]
pub struct Piecewise {
    columns: Vec<LongColumn>,
    /// The key's value indexes and quoted column names.
    key: Vec<(usize, String)>,
    /// `[db].[schema].[table]`.
    table: String,
    flavour: Flavour,
}

impl Piecewise {
    /// The plan for a chunk, `None` when its values travel whole (see the
    /// module doc) or it has no `(max)` column.
    pub fn plan(request: &ReadRequest, detail: &TableDetail, isolation: Isolation, flavour: Flavour) -> Option<Self> {
        if isolation != Isolation::Snapshot {
            return None;
        }
        let key_names = &request.range.columns;
        let indexes = key_indexes(detail, key_names)?;
        let mut columns = Vec::new();
        let mut index = 0;
        for column in detail.copied() {
            let transport = column.transport();
            let exprs = column.read_exprs();
            let binary = match transport {
                Transport::Text { chars: None } => Some(false),
                Transport::Bytes { len: None } => Some(true),
                _ => None,
            };
            if let (Some(binary), [expr]) = (binary, exprs.as_slice()) {
                columns.push(LongColumn {
                    index,
                    expr: expr.clone(),
                    column: ident(&column.name),
                    binary,
                });
            }
            index += transport.width();
        }
        if columns.is_empty() {
            return None;
        }
        Some(Self {
            columns,
            key: indexes.into_iter().zip(key_names.iter().map(|n| ident(n))).collect(),
            table: detail.three_part(&request.database),
            flavour,
        })
    }

    /// The chunk's SELECT list: `detail`'s values, a long one read as NULL,
    /// then one flag (1 or 0) per long-capable column.
    pub fn select_list(&self, detail: &TableDetail) -> String {
        let mut list: Vec<String> = detail.copied().flat_map(|c| c.read_exprs()).collect();
        let mut flags = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let long = format!("DATALENGTH({}) > {PIECEWISE_OVER}", column.column);
            // A typed NULL: Babelfish gives `CASE ... THEN NULL ELSE
            // nvarchar END` the type varchar, which loses every character
            // outside the code page.
            let null = if column.binary {
                "CAST(NULL AS varbinary(max))"
            } else {
                "CAST(NULL AS nvarchar(max))"
            };
            if let Some(value) = list.get_mut(column.index) {
                *value = format!("CASE WHEN {long} THEN {null} ELSE {} END", column.expr);
            }
            flags.push(format!("CASE WHEN {long} THEN 1 ELSE 0 END"));
        }
        list.extend(flags);
        list.join(", ")
    }

    /// Flag values after a row's values.
    pub fn flags(&self) -> usize {
        self.columns.len()
    }

    /// The value indexes `flags` (a row's trailing values) mark as long.
    pub fn flagged<'a>(&self, flags: impl Iterator<Item = &'a ColumnData<'static>>) -> Vec<usize> {
        self.columns
            .iter()
            .zip(flags)
            .filter(|(_, flag)| matches!(flag, ColumnData::I32(Some(1))))
            .map(|(column, _)| column.index)
            .collect()
    }

    /// The key of a row, from its values.
    pub fn key_of(&self, values: &[ColumnData<'static>]) -> Result<Vec<ColumnData<'static>>> {
        values_at(values, self.key.iter().map(|(index, _)| *index))
    }

    /// The statement reading one piece of the value at `index`: `@P1` the
    /// first unit, `@P2` the units wanted, then the key; it answers the
    /// piece and its length in the server's units.
    pub fn piece_sql(&self, index: usize) -> Result<String> {
        let column = self
            .columns
            .iter()
            .find(|c| c.index == index)
            .ok_or_else(|| Error::Internal(format!("value {index} is not read in pieces")))?;
        let e = &column.expr;
        let filter: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(n, (_, name))| format!("{name} = @P{}", n + 3))
            .collect();
        let (piece, length) = if column.binary {
            (format!("SUBSTRING({e}, @P1, @P2)"), "DATALENGTH(p)".to_string())
        } else {
            (self.flavour.text_piece(e), "LEN(p + N'.') - 1".to_string())
        };
        Ok(format!(
            "SELECT p, {length} FROM (SELECT {piece} AS p FROM {} WHERE {}) AS x",
            self.table,
            filter.join(" AND ")
        ))
    }

    /// Units per piece of the value at `index`.
    pub fn piece_units(&self, index: usize) -> i64 {
        match self.columns.iter().find(|c| c.index == index) {
            Some(c) if c.binary => BYTES_PIECE,
            _ => TEXT_PIECE,
        }
    }
}

/// Reads the piece of `sql` ([`Piecewise::piece_sql`]) starting at unit
/// `from`: the piece and its length in units, `None` past the value's end.
pub async fn read_piece(
    conn: &mut Conn,
    sql: &str,
    from: i64,
    units: i64,
    key: &[ColumnData<'static>],
) -> Result<Option<(ColumnData<'static>, i64)>> {
    let params = [ColumnData::I64(Some(from)), ColumnData::I64(Some(units))];
    let row = first_row(conn, sql, params, key, "reading a piece of a long value")
        .await?
        .ok_or_else(|| Error::Data("a row with a long value was not found again by its key".into()))?;
    let length = int(&row, 1).unwrap_or(0);
    if length <= 0 {
        return Ok(None);
    }
    let piece = row
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("a piece row without its piece".into()))?;
    Ok(Some((piece, length)))
}

/// The first row `sql` answers, its parameters `params` then `key`.
async fn first_row<const N: usize>(
    conn: &mut Conn,
    sql: &str,
    params: [ColumnData<'static>; N],
    key: &[ColumnData<'static>],
    doing: &'static str,
) -> Result<Option<tiberius::Row>> {
    let mut query = Query::new(sql.to_string());
    for value in params.into_iter().chain(key.iter().cloned()) {
        query.bind(value);
    }
    query
        .query(conn)
        .await
        .ctx(|| doing.into())?
        .into_row()
        .await
        .ctx(|| doing.into())
}

/// Appends pieces to the staged row they belong to.
#[derive(Debug)]
pub struct Appender {
    /// The key's value indexes, `None` for a table without one.
    key: Option<Vec<usize>>,
    flavour: Flavour,
}

impl Appender {
    /// For a chunk of `detail` keyed by `key`.
    pub fn new(detail: &TableDetail, key: &[String], flavour: Flavour) -> Self {
        Self {
            key: key_indexes(detail, key),
            flavour,
        }
    }

    /// The key of a staged row, from its staging values.
    pub fn key_of(&self, values: &[ColumnData<'static>]) -> Result<Vec<ColumnData<'static>>> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| Error::Invalid("pieces of a value in a table without a key".into()))?;
        values_at(values, key.iter().copied())
    }

    /// `UPDATE` appending `@P1` to staging column `index` of the row whose
    /// key is `@P2...`, then the rows it touched.
    pub fn append_sql(&self, index: usize, binary: bool) -> Result<String> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| Error::Invalid("pieces of a value in a table without a key".into()))?;
        let column = ident(&format!("c{index}"));
        let value = if binary {
            self.flavour.append_bytes(&column, "@P1")
        } else {
            format!("{column} + @P1")
        };
        let filter: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(n, i)| format!("{} = @P{}", ident(&format!("c{i}")), n + 2))
            .collect();
        Ok(format!(
            "UPDATE {STAGE} SET {column} = {value} WHERE {}; SELECT @@ROWCOUNT",
            filter.join(" AND ")
        ))
    }

    /// Appends `data` to staging column `index` of the row keyed `key`.
    pub async fn append(
        &self,
        conn: &mut Conn,
        index: usize,
        data: ColumnData<'static>,
        key: &[ColumnData<'static>],
    ) -> Result<()> {
        let binary = matches!(data, ColumnData::Binary(_));
        let sql = self.append_sql(index, binary)?;
        let row = first_row(conn, &sql, [data], key, "appending a piece of a long value").await?;
        match row.as_ref().and_then(|r| int(r, 0)) {
            Some(1) => Ok(()),
            touched => Err(Error::Data(format!(
                "a piece of a long value reached {} staged rows, not one",
                touched.unwrap_or(0)
            ))),
        }
    }
}

/// An empty value of the kind `data` is, to stage before its pieces.
pub fn empty_like(binary: bool) -> ColumnData<'static> {
    if binary {
        ColumnData::Binary(Some(Vec::new().into()))
    } else {
        ColumnData::String(Some(String::new().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ColumnDetail;
    use dbferry_plugin_abi::protocol::{KeyRange, TableSchema};

    fn detail() -> TableDetail {
        let mut id = ColumnDetail::plain("id", "int", 4, 10, 0);
        id.nullable = false;
        TableDetail {
            schema: "dbo".into(),
            name: "big".into(),
            columns: vec![
                id,
                ColumnDetail::plain("n", "nvarchar", -1, 0, 0),
                ColumnDetail::plain("short", "nvarchar", 40, 0, 0),
                ColumnDetail::plain("b", "varbinary", -1, 0, 0),
            ],
            ..TableDetail::default()
        }
    }

    fn request(key: &[&str]) -> ReadRequest {
        ReadRequest {
            database: "src".into(),
            table: TableSchema::default(),
            range: KeyRange::whole(key.iter().map(|k| k.to_string()).collect()),
            batch_bytes: 1 << 20,
            formats: Vec::new(),
        }
    }

    #[test]
    fn only_max_columns_of_keyed_snapshot_chunks_go_in_pieces() {
        let plan =
            Piecewise::plan(&request(&["id"]), &detail(), Isolation::Snapshot, Flavour::SqlServer).expect("plan");
        assert_eq!(plan.flags(), 2);
        assert_eq!(
            plan.flagged([ColumnData::I32(Some(0)), ColumnData::I32(Some(1))].iter()),
            vec![3]
        );
        assert!(Piecewise::plan(&request(&[]), &detail(), Isolation::Snapshot, Flavour::SqlServer).is_none());
        assert!(Piecewise::plan(&request(&["id"]), &detail(), Isolation::TableLock, Flavour::SqlServer).is_none());
        assert!(Piecewise::plan(
            &request(&["id"]),
            &detail(),
            Isolation::StatementVersioned,
            Flavour::SqlServer
        )
        .is_none());
        let list = plan.select_list(&detail());
        assert!(list.starts_with(
            "[id], CASE WHEN DATALENGTH([n]) > 4194304 THEN CAST(NULL AS nvarchar(max)) \
             ELSE CAST([n] AS nvarchar(max)) END, "
        ));
        assert!(list.ends_with(
            "CASE WHEN DATALENGTH([n]) > 4194304 THEN 1 ELSE 0 END, \
             CASE WHEN DATALENGTH([b]) > 4194304 THEN 1 ELSE 0 END"
        ));
    }

    #[test]
    fn text_pieces_never_end_inside_a_surrogate_pair() {
        let plan =
            Piecewise::plan(&request(&["id"]), &detail(), Isolation::Snapshot, Flavour::SqlServer).expect("plan");
        let text = plan.piece_sql(1).expect("sql");
        assert!(text.contains("BETWEEN 55296 AND 56319"), "{text}");
        let babelfish = Piecewise::plan(&request(&["id"]), &detail(), Isolation::Snapshot, Flavour::Babelfish)
            .expect("plan")
            .piece_sql(1)
            .expect("sql");
        assert!(!babelfish.contains("UNICODE"), "{babelfish}");
        assert!(
            text.ends_with("FROM [src].[dbo].[big] WHERE [id] = @P3) AS x"),
            "{text}"
        );
        assert!(plan
            .piece_sql(3)
            .expect("sql")
            .starts_with("SELECT p, DATALENGTH(p) FROM (SELECT SUBSTRING([b], @P1, @P2)"));
        assert!(plan.piece_sql(2).is_err());
        assert_eq!(plan.piece_units(3), BYTES_PIECE);
        assert_eq!(plan.piece_units(1), TEXT_PIECE);
    }

    #[test]
    fn pieces_append_to_the_one_staged_row_of_their_key() {
        let appender = Appender::new(&detail(), &["id".to_string()], Flavour::SqlServer);
        assert_eq!(
            appender.append_sql(1, false).expect("sql"),
            "UPDATE #dbferry_stage SET [c1] = [c1] + @P1 WHERE [c0] = @P2; SELECT @@ROWCOUNT"
        );
        let babelfish = Appender::new(&detail(), &["id".to_string()], Flavour::Babelfish);
        assert!(babelfish.append_sql(3, true).expect("sql").contains("byteacat"));
        let keyless = Appender::new(&detail(), &[], Flavour::SqlServer);
        assert!(keyless.append_sql(1, false).is_err());
    }
}
