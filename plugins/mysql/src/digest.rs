//! Table and key-range digests: a row count, and an order-independent,
//! duplicate-sensitive content checksum that each server computes over its
//! own rows, identical for identical rows on MariaDB and MySQL alike.
//!
//! Only `CRC32`, `CONCAT_WS`, `ISNULL` and `LENGTH` are used: MySQL 9.6+
//! has no built-in `MD5()` or `SHA1()`, and MariaDB lacks MySQL's
//! other hashes, but both have these.

use dbferry_plugin_abi::protocol::{Digest, DigestsRequest, RangeDigestsRequest, TableSchema, VerifyMode};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::cell;
use crate::detail::{ColumnDetail, TableDetail, ValueKind};
use crate::error::{Context, Error, Result};
use crate::quote::{ident, qualified};
use crate::range;
use crate::wire::WireConn;

/// A column's value in a row's checksum text: as it is read for copying (so
/// FLOAT and BIT compare exactly), text as its bytes, so that columns of
/// different collations concatenate without an "illegal mix" error.
fn value(column: &ColumnDetail) -> String {
    match column.kind {
        ValueKind::Text | ValueKind::Json => format!("CAST({} AS BINARY)", column.read),
        _ => column.read.clone(),
    }
}

/// Whether a column's checksum text may hold the `#` that separates
/// values (numbers and temporal values never do).
fn may_hold_separator(column: &ColumnDetail) -> bool {
    matches!(
        column.kind,
        ValueKind::Text | ValueKind::Json | ValueKind::Binary | ValueKind::Spatial
    )
}

/// The bytes of a row that its checksum hashes: the values joined by `#`,
/// then the lengths of all but one of those that may hold a `#`, then which
/// of the nullable ones were NULL. `CONCAT_WS` skips a NULL, so the NULL
/// flags tell NULL from `''`, and the lengths tell `('a#', 'b')` from
/// `('a', '#b')`: read from its end, the text decodes back to the row (the
/// values before the unmeasured one split at the first separators, those
/// after it at the last). Flags and lengths that could not tell anything
/// apart (a NOT NULL column, a number, the last value that may hold `#`)
/// are left out, a row without nullable columns is joined by `CONCAT`
/// (the same text, without the NULL skipping), and text columns that all
/// share one character set and collation are joined as they are (their
/// bytes are the same; only a mix needs each cast to bytes): every
/// function is paid once per row on both servers, and MySQL's string
/// functions cost twice MariaDB's.
fn row_text<'a>(columns: impl Iterator<Item = &'a ColumnDetail>) -> String {
    let columns: Vec<&ColumnDetail> = columns.collect();
    if columns.is_empty() {
        return "''".into();
    }
    let mut texts = columns
        .iter()
        .filter(|c| c.kind == ValueKind::Text)
        .map(|c| (&c.charset, &c.collation));
    let one_collation = texts.next().is_none_or(|first| texts.all(|other| other == first));
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| match c.kind {
            ValueKind::Text if one_collation => c.read.clone(),
            _ => value(c),
        })
        .collect();
    parts.extend(
        columns
            .iter()
            .filter(|c| may_hold_separator(c))
            .skip(1)
            .map(|c| format!("LENGTH({})", c.read)),
    );
    let nulls: Vec<String> = columns
        .iter()
        .filter(|c| c.nullable)
        .map(|c| format!("ISNULL({})", c.read))
        .collect();
    if nulls.is_empty() {
        return format!("CONCAT({})", parts.join(", '#', "));
    }
    parts.push(format!("CONCAT({})", nulls.join(", ")));
    format!("CONCAT_WS('#', {})", parts.join(", "))
}

/// What a table's checksum selects, after the count.
///
/// Each row hashes to `h = CRC32(row)`, and its key to `k = CRC32(key)`
/// (the whole row for a keyless table). The checksum is `SUM(h * (k + 1))`:
/// a sum keeps duplicate rows from cancelling out and does not depend on
/// order. A row whose text changed in any run of up to 32 bits (a byte, a
/// FLOAT bit, NULL to `''`) changes its `h`, and so its term, without fail.
/// CRC32 is linear, so two rows that swapped equal-length values often
/// keep `SUM(h)`; weighted by their own key hashes their terms change
/// unless the key hashes are equal (distinct keys within 32 bits of each
/// other never are). One sum, so that the server builds and hashes each
/// row's text once.
///
/// A key of one column is left out of the row's text: a changed key value
/// changes `k` just as surely, and turning numbers into text is much of
/// what the text costs. A key of several columns stays in, because its
/// `k` joins their values without lengths and could not tell `('a#', 'b')`
/// from `('a', '#b')`; so does a key that is all the row has.
fn checksum_columns(detail: &TableDetail, key: Option<&[String]>) -> Result<String> {
    let key = key.unwrap_or_default();
    let key_columns = key.iter().map(|name| detail.column(name)).collect::<Result<Vec<_>>>()?;
    let rest: Vec<&ColumnDetail> = match key {
        [single] => detail.copied().filter(|c| c.name != *single).collect(),
        _ => Vec::new(),
    };
    let row = if rest.is_empty() {
        row_text(detail.copied())
    } else {
        row_text(rest.into_iter())
    };
    // A key is never NULL, and need not decode: it only weighs.
    let key_hash = match key_columns.as_slice() {
        [] => format!("CRC32({row})"),
        [one] => format!("CRC32({})", value(one)),
        many => format!(
            "CRC32(CONCAT_WS('#', {}))",
            many.iter().map(|c| value(c)).collect::<Vec<_>>().join(", ")
        ),
    };
    // h < 2^32 and k + 1 <= 2^32, so a term fits BIGINT UNSIGNED; SUM of
    // integers is exact DECIMAL on both flavours.
    Ok(format!("COALESCE(SUM(CRC32({row}) * ({key_hash} + 1)), 0)"))
}

/// What one digest selects after `SELECT`: the count, and with a checksum
/// its sum, over the rows of `table` that `predicate` keeps.
fn digest_select(name: &str, table: &TableSchema, mode: VerifyMode, predicate: Option<&str>) -> Result<String> {
    let filter = predicate.map(|p| format!(" WHERE {p}")).unwrap_or_default();
    if mode != VerifyMode::Checksum {
        return Ok(format!("COUNT(*) FROM {name}{filter}"));
    }
    let detail = TableDetail::from_json(&table.detail)?;
    let sums = checksum_columns(&detail, table.key.as_deref())?;
    Ok(format!("COUNT(*), {sums} FROM {name}{filter}"))
}

/// One query for several digests: one row each, led by its index (a
/// `UNION ALL` promises no order).
fn union_sql(selects: Vec<String>) -> String {
    selects
        .into_iter()
        .enumerate()
        .map(|(i, select)| format!("SELECT {i}, {select}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// The digest query of several whole tables.
fn digests_sql(request: &DigestsRequest) -> Result<String> {
    let selects = request
        .tables
        .iter()
        .map(|table| digest_select(&qualified(&request.database, &table.name), table, request.mode, None))
        .collect::<Result<Vec<_>>>()?;
    Ok(union_sql(selects))
}

/// The digest query of key ranges of one table.
fn range_digests_sql(request: &RangeDigestsRequest) -> Result<String> {
    let name = qualified(&request.database, &request.table.name);
    let detail = TableDetail::from_json(&request.table.detail)?;
    let selects = request
        .ranges
        .iter()
        .map(|r| {
            let predicate = range::predicate(&detail, r)?;
            digest_select(&name, &request.table, request.mode, predicate.as_deref())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(union_sql(selects))
}

/// The verb of a digest query, for its errors.
fn verb(mode: VerifyMode) -> &'static str {
    if mode == VerifyMode::Checksum {
        "checksumming"
    } else {
        "counting rows of"
    }
}

/// What a digest query of whole tables is doing, for its errors.
fn doing(request: &DigestsRequest) -> String {
    let verb = verb(request.mode);
    match request.tables.as_slice() {
        [one] => format!("{verb} {}", qualified(&request.database, &one.name)),
        tables => format!("{verb} {} tables of {}", tables.len(), ident(&request.database)),
    }
}

/// What a digest query of key ranges is doing, for its errors.
fn doing_ranges(request: &RangeDigestsRequest) -> String {
    format!(
        "{} {} key ranges of {}",
        verb(request.mode),
        request.ranges.len(),
        qualified(&request.database, &request.table.name)
    )
}

/// The digest from a row's cells after the index: the count, then
/// (checksum) the weighted sum.
fn digest_from(mode: VerifyMode, cells: &[Option<String>]) -> Digest {
    let cell = |i: usize| cells.get(i).cloned().flatten();
    let rows = cell(0).map_or(0, |t| crate::conn::cell::number(&t));
    let checksum = (mode == VerifyMode::Checksum).then(|| {
        let sum = cell(1).unwrap_or_else(|| "0".into());
        format!("{rows}:{sum}")
    });
    Digest { rows, checksum }
}

/// Puts the query's rows (each led by its digest's index) in order.
fn in_order(
    count: usize,
    mode: VerifyMode,
    doing: &dyn Fn() -> String,
    rows: Vec<Vec<Option<String>>>,
) -> Result<Vec<Digest>> {
    let mut digests: Vec<Option<Digest>> = vec![None; count];
    for row in rows {
        let slot = row
            .first()
            .cloned()
            .flatten()
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| digests.get_mut(i));
        match slot {
            Some(slot) => *slot = Some(digest_from(mode, &row[1..])),
            None => return Err(Error::Internal(format!("{}: a row of no digest", doing()))),
        }
    }
    digests
        .into_iter()
        .map(|d| d.ok_or_else(|| Error::Internal(format!("{}: a digest without its row", doing()))))
        .collect()
}

/// Runs a digest query on `conn`.
async fn cells(conn: &mut Conn, sql: &str, doing: &dyn Fn() -> String) -> Result<Vec<Vec<Option<String>>>> {
    let rows: Vec<Row> = conn.query(sql).await.ctx(doing)?;
    Ok(rows
        .iter()
        .map(|r| (0..r.len()).map(|i| cell::text(r, i)).collect())
        .collect())
}

/// Runs a digest query on a wire connection of the snapshot.
async fn cells_wire(conn: &mut WireConn, sql: &str, doing: &dyn Fn() -> String) -> Result<Vec<Vec<Option<String>>>> {
    let rows = conn.all_rows(sql).await.map_err(|e| e.during(doing))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .collect()
        })
        .collect())
}

/// Either connection a digest can run on.
pub enum DigestConn<'a> {
    /// A pooled or snapshot connection of mysql_async.
    Driver(&'a mut Conn),
    /// A wire connection of the snapshot.
    Wire(&'a mut WireConn),
}

impl DigestConn<'_> {
    async fn cells(&mut self, sql: &str, doing: &dyn Fn() -> String) -> Result<Vec<Vec<Option<String>>>> {
        match self {
            DigestConn::Driver(conn) => cells(conn, sql, doing).await,
            DigestConn::Wire(conn) => cells_wire(conn, sql, doing).await,
        }
    }
}

/// Computes the digests of `request.tables` on `conn`, in one query.
pub async fn digests(mut conn: DigestConn<'_>, request: &DigestsRequest) -> Result<Vec<Digest>> {
    let doing = || doing(request);
    let rows = conn.cells(&digests_sql(request)?, &doing).await?;
    in_order(request.tables.len(), request.mode, &doing, rows)
}

/// Computes the digests of `request.ranges` on `conn`, in one query.
pub async fn range_digests(mut conn: DigestConn<'_>, request: &RangeDigestsRequest) -> Result<Vec<Digest>> {
    if request.ranges.is_empty() {
        return Ok(Vec::new());
    }
    let doing = || doing_ranges(request);
    let rows = conn.cells(&range_digests_sql(request)?, &doing).await?;
    in_order(request.ranges.len(), request.mode, &doing, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: ValueKind, nullable: bool, collation: Option<&str>) -> ColumnDetail {
        ColumnDetail {
            name: name.into(),
            data_type: String::new(),
            column_type: String::new(),
            kind,
            nullable,
            charset: collation.map(|c| c.split('_').next().unwrap_or_default().to_string()),
            collation: collation.map(str::to_string),
            generated: false,
            invisible: false,
            read: ident(name),
        }
    }

    #[test]
    fn a_row_text_mentions_only_what_tells_rows_apart() {
        let columns = [
            column("id", ValueKind::Int, false, None),
            column("c", ValueKind::Text, false, Some("utf8mb4_bin")),
            column("n", ValueKind::Text, true, Some("utf8mb4_bin")),
        ];
        assert_eq!(
            row_text(columns.iter()),
            "CONCAT_WS('#', `id`, `c`, `n`, LENGTH(`n`), CONCAT(ISNULL(`n`)))"
        );
    }

    #[test]
    fn mixed_collations_are_joined_as_bytes() {
        let columns = [
            column("a", ValueKind::Text, false, Some("latin1_swedish_ci")),
            column("b", ValueKind::Text, false, Some("utf8mb4_bin")),
        ];
        assert_eq!(
            row_text(columns.iter()),
            "CONCAT(CAST(`a` AS BINARY), '#', CAST(`b` AS BINARY), '#', LENGTH(`b`))"
        );
    }

    #[test]
    fn a_row_with_one_value_that_may_hold_the_separator_measures_nothing() {
        let columns = [
            column("id", ValueKind::Int, false, None),
            column("c", ValueKind::Text, false, Some("utf8mb4_bin")),
            column("k", ValueKind::Int, false, None),
        ];
        assert_eq!(row_text(columns.iter()), "CONCAT(`id`, '#', `c`, '#', `k`)");
    }
}
