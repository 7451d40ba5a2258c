//! Table digests: a row count, and an order-independent content checksum
//! computed by the server, identical for identical tables on either side.

use dbferry_plugin_abi::protocol::{Digest, DigestsRequest, TableSchema, VerifyMode};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::cell;
use crate::detail::TableDetail;
use crate::error::{Context, Error, Result};
use crate::quote::{ident, qualified};
use crate::wire::WireConn;

/// What the checksum query selects: each row hashes (MD5) the
/// length-prefixed bytes of every copied column as it is read for copying
/// (so FLOAT and BIT compare exactly), with a marker for NULL; the table's
/// checksum is the count, the XOR of the first 64 bits and the sum of the
/// next 64 bits of the row hashes (the sum keeps duplicate rows from
/// cancelling out).
fn checksum_select(table: &str, detail: &TableDetail) -> String {
    let parts: Vec<String> = detail
        .copied()
        .map(|c| {
            let value = format!("CAST({} AS BINARY)", c.read);
            format!("IFNULL(CONCAT(LENGTH({value}), ':', {value}), '-')")
        })
        .collect();
    let row = if parts.is_empty() {
        "''".to_string()
    } else {
        format!("CONCAT({})", parts.join(", '|', "))
    };
    format!(
        "COUNT(*), BIT_XOR(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED)), \
         SUM(CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS UNSIGNED)) \
         FROM (SELECT MD5({row}) AS h FROM {table}) AS dbferry_rows"
    )
}

/// What one table's digest selects, after `SELECT`.
fn digest_select(database: &str, table: &TableSchema, mode: VerifyMode) -> Result<String> {
    let name = qualified(database, &table.name);
    if mode != VerifyMode::Checksum {
        return Ok(format!("COUNT(*) FROM {name}"));
    }
    Ok(checksum_select(&name, &TableDetail::from_json(&table.detail)?))
}

/// The digest query of several tables: one row per table, led by the
/// table's index in `request.tables` (a `UNION ALL` promises no order).
fn digests_sql(request: &DigestsRequest) -> Result<String> {
    let mut parts = Vec::with_capacity(request.tables.len());
    for (i, table) in request.tables.iter().enumerate() {
        parts.push(format!(
            "SELECT {i}, {}",
            digest_select(&request.database, table, request.mode)?
        ));
    }
    Ok(parts.join(" UNION ALL "))
}

/// What a digest query is doing, for its errors.
fn doing(request: &DigestsRequest) -> String {
    let verb = if request.mode == VerifyMode::Checksum {
        "checksumming"
    } else {
        "counting rows of"
    };
    match request.tables.as_slice() {
        [one] => format!("{verb} {}", qualified(&request.database, &one.name)),
        tables => format!("{verb} {} tables of {}", tables.len(), ident(&request.database)),
    }
}

/// The digest from a row's cells after the index: the count, then
/// (checksum) XOR and sum.
fn digest_from(mode: VerifyMode, cells: &[Option<String>]) -> Digest {
    let cell = |i: usize| cells.get(i).cloned().flatten();
    let rows = cell(0).map_or(0, |t| crate::conn::cell::number(&t));
    let checksum = (mode == VerifyMode::Checksum).then(|| {
        let xor = cell(1).unwrap_or_else(|| "0".into());
        let sum = cell(2).unwrap_or_else(|| "0".into());
        format!("{rows}:{xor}:{sum}")
    });
    Digest { rows, checksum }
}

/// Puts the query's rows (each led by a table's index) in table order.
fn in_order(request: &DigestsRequest, rows: Vec<Vec<Option<String>>>) -> Result<Vec<Digest>> {
    let mut digests: Vec<Option<Digest>> = vec![None; request.tables.len()];
    for row in rows {
        let slot = row
            .first()
            .cloned()
            .flatten()
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| digests.get_mut(i));
        match slot {
            Some(slot) => *slot = Some(digest_from(request.mode, &row[1..])),
            None => return Err(Error::Internal(format!("{}: a row of no table", doing(request)))),
        }
    }
    digests
        .into_iter()
        .map(|d| d.ok_or_else(|| Error::Internal(format!("{}: a table without its row", doing(request)))))
        .collect()
}

/// Computes the digests of `request.tables` on `conn`, in one query.
pub async fn digests(conn: &mut Conn, request: &DigestsRequest) -> Result<Vec<Digest>> {
    let sql = digests_sql(request)?;
    let rows: Vec<Row> = conn.query(sql.as_str()).await.ctx(|| doing(request))?;
    let cells = rows
        .iter()
        .map(|r| (0..r.len()).map(|i| cell::text(r, i)).collect())
        .collect();
    in_order(request, cells)
}

/// [`digests`] on a wire connection of the snapshot.
pub async fn digests_wire(conn: &mut WireConn, request: &DigestsRequest) -> Result<Vec<Digest>> {
    let sql = digests_sql(request)?;
    let rows = conn.all_rows(&sql).await.map_err(|e| e.during(|| doing(request)))?;
    let cells = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .collect()
        })
        .collect();
    in_order(request, cells)
}
