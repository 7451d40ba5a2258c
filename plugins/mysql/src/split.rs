//! Cut points of a table's key, so chunks hold about equal row counts.

use dbferry_plugin_abi::protocol::{KeyRange, KeyTuple, KeyValue, SplitRequest};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::cell;
use crate::detail::{ColumnDetail, TableDetail, ValueKind};
use crate::error::{Context, Error, Result};
use crate::quote::{ident, qualified};
use crate::range::predicate;

/// A key value read back from the server (reader session: exact bytes).
fn key_value(column: &ColumnDetail, bytes: Vec<u8>) -> Result<KeyValue> {
    let parse_err = || Error::Internal(format!("unexpected key value of {}", ident(&column.name)));
    Ok(match column.kind {
        ValueKind::Int => KeyValue::Int(
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(parse_err)?,
        ),
        ValueKind::UInt | ValueKind::Bit => KeyValue::UInt(
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(parse_err)?,
        ),
        _ => KeyValue::Bytes(bytes),
    })
}

/// Up to `parts - 1` ascending cut points. `conn` is a reader connection
/// (results as stored bytes).
pub async fn split_points(conn: &mut Conn, request: &SplitRequest) -> Result<Vec<KeyTuple>> {
    let Some(key) = request.table.key.clone().filter(|k| !k.is_empty()) else {
        return Ok(Vec::new());
    };
    if request.parts < 2 {
        return Ok(Vec::new());
    }
    let detail = TableDetail::from_json(&request.table.detail)?;
    let columns = key.iter().map(|k| detail.column(k)).collect::<Result<Vec<_>>>()?;
    let table = qualified(&request.database, &request.table.name);
    if let [column] = columns.as_slice() {
        if matches!(column.kind, ValueKind::Int | ValueKind::UInt) {
            return integer_points(conn, &table, column, request.parts).await;
        }
    }
    walk_points(conn, &table, &detail, &key, &columns, request).await
}

/// Single integer key: even steps between MIN and MAX.
async fn integer_points(conn: &mut Conn, table: &str, column: &ColumnDetail, parts: u32) -> Result<Vec<KeyTuple>> {
    let col = ident(&column.name);
    let sql = format!("SELECT MIN({col}), MAX({col}) FROM {table}");
    let row: Option<Row> = conn.query_first(sql.as_str()).await.ctx(|| format!("running {sql}"))?;
    let Some(row) = row else { return Ok(Vec::new()) };
    let parse = |i| cell::text(&row, i).and_then(|t| t.parse::<i128>().ok());
    let (Some(min), Some(max)) = (parse(0), parse(1)) else {
        return Ok(Vec::new());
    };
    let span = max - min;
    let mut points: Vec<KeyTuple> = Vec::new();
    let mut last = None;
    for i in 1..i128::from(parts) {
        let p = min + span * i / i128::from(parts);
        if p >= max || Some(p) == last {
            continue;
        }
        last = Some(p);
        points.push(vec![match column.kind {
            ValueKind::UInt => KeyValue::UInt(u64::try_from(p).map_err(|e| Error::Internal(e.to_string()))?),
            _ => KeyValue::Int(i64::try_from(p).map_err(|e| Error::Internal(e.to_string()))?),
        }]);
    }
    Ok(points)
}

/// Any other key: step through the key's index, each step an index range
/// scan of one chunk's worth of rows from the previous point.
async fn walk_points(
    conn: &mut Conn,
    table: &str,
    detail: &TableDetail,
    key: &[String],
    columns: &[&ColumnDetail],
    request: &SplitRequest,
) -> Result<Vec<KeyTuple>> {
    let mut rows = request.table.estimated_rows;
    if rows == 0 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let count: Option<Row> = conn.query_first(sql.as_str()).await.ctx(|| format!("running {sql}"))?;
        rows = count.map(|r| cell::u64(&r, 0)).unwrap_or(0);
    }
    let step = rows.div_ceil(u64::from(request.parts));
    if step == 0 {
        return Ok(Vec::new());
    }
    let select: Vec<&str> = columns.iter().map(|c| c.read.as_str()).collect();
    let order: Vec<String> = key.iter().map(|k| ident(k)).collect();
    let mut points: Vec<KeyTuple> = Vec::new();
    for _ in 1..request.parts {
        let range = KeyRange {
            columns: key.to_vec(),
            lower: points.last().cloned(),
            upper: None,
        };
        let filter = predicate(detail, &range)?
            .map(|p| format!(" WHERE {p}"))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {} FROM {table}{filter} ORDER BY {} LIMIT 1 OFFSET {}",
            select.join(", "),
            order.join(", "),
            step - 1
        );
        let row: Option<Row> = conn.query_first(sql.as_str()).await.ctx(|| format!("running {sql}"))?;
        let Some(row) = row else { break };
        let mut tuple = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let bytes = cell::bytes(&row, i)
                .ok_or_else(|| Error::Internal(format!("NULL in key column {} of {table}", ident(&column.name))))?;
            tuple.push(key_value(column, bytes)?);
        }
        points.push(tuple);
    }
    Ok(points)
}
