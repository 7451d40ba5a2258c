//! Table digests: a row count, and an order-independent content checksum
//! computed by the server, identical for identical tables on either side.

use dbferry_plugin_abi::protocol::{Digest, DigestRequest, VerifyMode};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::cell;
use crate::detail::TableDetail;
use crate::error::{Context, Result};
use crate::quote::qualified;
use crate::wire::WireConn;

/// The checksum query: each row hashes (MD5) the length-prefixed bytes of
/// every copied column as it is read for copying (so FLOAT and BIT compare
/// exactly), with a marker for NULL; the table's checksum is the count,
/// the XOR of the first 64 bits and the sum of the next 64 bits of the row
/// hashes (the sum keeps duplicate rows from cancelling out).
pub fn checksum_sql(table: &str, detail: &TableDetail) -> String {
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
        "SELECT COUNT(*), BIT_XOR(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED)), \
         SUM(CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS UNSIGNED)) \
         FROM (SELECT MD5({row}) AS h FROM {table}) AS dbferry_rows"
    )
}

/// The digest query of `request` and what it is doing, for errors.
fn digest_sql(request: &DigestRequest) -> Result<(String, String)> {
    let table = qualified(&request.database, &request.table.name);
    if request.mode != VerifyMode::Checksum {
        return Ok((
            format!("SELECT COUNT(*) FROM {table}"),
            format!("counting rows of {table}"),
        ));
    }
    let detail = TableDetail::from_json(&request.table.detail)?;
    Ok((checksum_sql(&table, &detail), format!("checksumming {table}")))
}

/// The digest from the query's row: the count, then (checksum) XOR and sum.
fn digest_from(request: &DigestRequest, cells: &[Option<String>]) -> Digest {
    let cell = |i: usize| cells.get(i).cloned().flatten();
    let rows = cell(0).map_or(0, |t| crate::conn::cell::number(&t));
    let checksum = (request.mode == VerifyMode::Checksum).then(|| {
        let xor = cell(1).unwrap_or_else(|| "0".into());
        let sum = cell(2).unwrap_or_else(|| "0".into());
        format!("{rows}:{xor}:{sum}")
    });
    Digest { rows, checksum }
}

/// Computes the digest of `request.table` on `conn`.
pub async fn digest(conn: &mut Conn, request: &DigestRequest) -> Result<Digest> {
    let (sql, doing) = digest_sql(request)?;
    let row: Option<Row> = conn.query_first(sql.as_str()).await.ctx(|| doing)?;
    let cells: Vec<Option<String>> = row.map_or_else(Vec::new, |r| (0..r.len()).map(|i| cell::text(&r, i)).collect());
    Ok(digest_from(request, &cells))
}

/// [`digest`] on a wire connection of the snapshot.
pub async fn digest_wire(conn: &mut WireConn, request: &DigestRequest) -> Result<Digest> {
    let (sql, doing) = digest_sql(request)?;
    let row = conn.first_row(&sql).await.map_err(|e| e.during(|| doing))?;
    let cells: Vec<Option<String>> = row
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect();
    Ok(digest_from(request, &cells))
}
