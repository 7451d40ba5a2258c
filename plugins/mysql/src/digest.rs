//! Table digests: a row count, and an order-independent content checksum
//! computed by the server, identical for identical tables on either side.

use dbferry_plugin_abi::protocol::{Digest, DigestRequest, VerifyMode};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::cell;
use crate::detail::TableDetail;
use crate::error::{Context, Result};
use crate::quote::qualified;

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

/// Computes the digest of `request.table` on `conn`.
pub async fn digest(conn: &mut Conn, request: &DigestRequest) -> Result<Digest> {
    let table = qualified(&request.database, &request.table.name);
    if request.mode != VerifyMode::Checksum {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let row: Option<Row> = conn
            .query_first(sql.as_str())
            .await
            .ctx(|| format!("counting rows of {table}"))?;
        return Ok(Digest {
            rows: row.map(|r| cell::u64(&r, 0)).unwrap_or(0),
            checksum: None,
        });
    }
    let detail = TableDetail::from_json(&request.table.detail)?;
    let sql = checksum_sql(&table, &detail);
    let row: Option<Row> = conn
        .query_first(sql.as_str())
        .await
        .ctx(|| format!("checksumming {table}"))?;
    let (rows, xor, sum) = match &row {
        Some(r) => (
            cell::u64(r, 0),
            cell::text(r, 1).unwrap_or_else(|| "0".into()),
            cell::text(r, 2).unwrap_or_else(|| "0".into()),
        ),
        None => (0, "0".into(), "0".into()),
    };
    Ok(Digest {
        rows,
        checksum: Some(format!("{rows}:{xor}:{sum}")),
    })
}
