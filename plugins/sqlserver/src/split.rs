//! Cut points of a table's key (its primary key or clustered unique key),
//! so chunks hold about equal row counts.

use dbferry_plugin_abi::protocol::{KeyRange, KeyTuple, KeyValue, SplitRequest};

use crate::cell::{int, text};
use crate::conn::{rows, Conn};
use crate::detail::TableDetail;
use crate::error::{Error, Result};
use crate::quote::ident;
use crate::range::{key_form, key_read_expr, predicate, KeyForm};
use crate::types::ColumnDetail;

/// `SELECT MIN, MAX` of a single integer key.
pub fn min_max_sql(table: &str, column: &str) -> String {
    let c = ident(column);
    format!("SELECT CAST(MIN({c}) AS bigint), CAST(MAX({c}) AS bigint) FROM {table}")
}

/// Even steps between `min` and `max`, at most `parts - 1` of them.
pub fn even_points(min: i64, max: i64, parts: u32) -> Vec<i64> {
    let span = i128::from(max) - i128::from(min);
    let mut out: Vec<i64> = Vec::new();
    for i in 1..i128::from(parts) {
        let p = i128::from(min) + span * i / i128::from(parts);
        let Ok(p) = i64::try_from(p) else { continue };
        if p >= max || out.last() == Some(&p) {
            continue;
        }
        out.push(p);
    }
    out
}

/// The row `step` rows after the previous point, in key order.
pub fn walk_sql(table: &str, select: &str, filter: Option<&str>, order: &str, step: u64) -> String {
    let filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
    format!(
        "SELECT {select} FROM {table}{filter} ORDER BY {order} OFFSET {} ROWS FETCH NEXT 1 ROWS ONLY",
        step.saturating_sub(1)
    )
}

/// Up to `parts - 1` ascending cut points.
pub async fn split_points(conn: &mut Conn, request: &SplitRequest) -> Result<Vec<KeyTuple>> {
    let Some(key) = request.table.key.clone().filter(|k| !k.is_empty()) else {
        return Ok(Vec::new());
    };
    if request.parts < 2 {
        return Ok(Vec::new());
    }
    let detail = TableDetail::from_json(&request.table.detail)?;
    let columns = key.iter().map(|k| detail.column(k)).collect::<Result<Vec<_>>>()?;
    let table = detail.three_part(&request.database);
    if let [column] = columns.as_slice() {
        if key_form(column)? == KeyForm::Int {
            let found = rows(conn, &min_max_sql(&table, &column.name)).await?;
            let Some(r) = found.first() else { return Ok(Vec::new()) };
            let (Some(min), Some(max)) = (int(r, 0), int(r, 1)) else {
                return Ok(Vec::new());
            };
            return Ok(even_points(min, max, request.parts)
                .into_iter()
                .map(|p| vec![KeyValue::Int(p)])
                .collect());
        }
    }
    walk(conn, &table, &detail, &key, &columns, request).await
}

async fn walk(
    conn: &mut Conn,
    table: &str,
    detail: &TableDetail,
    key: &[String],
    columns: &[&ColumnDetail],
    request: &SplitRequest,
) -> Result<Vec<KeyTuple>> {
    let mut count = request.table.estimated_rows;
    if count == 0 {
        let found = rows(conn, &format!("SELECT COUNT_BIG(*) FROM {table}")).await?;
        count = found.first().and_then(|r| int(r, 0)).unwrap_or(0).max(0) as u64;
    }
    let step = count.div_ceil(u64::from(request.parts));
    if step == 0 {
        return Ok(Vec::new());
    }
    let select = columns
        .iter()
        .map(|c| key_read_expr(c))
        .collect::<Result<Vec<_>>>()?
        .join(", ");
    let order: Vec<String> = key.iter().map(|k| ident(k)).collect();
    let mut points: Vec<KeyTuple> = Vec::new();
    for _ in 1..request.parts {
        let range = KeyRange {
            columns: key.to_vec(),
            lower: points.last().cloned(),
            upper: None,
        };
        let filter = predicate(detail, &range)?;
        let sql = walk_sql(table, &select, filter.as_deref(), &order.join(", "), step);
        let found = rows(conn, &sql).await?;
        let Some(r) = found.first() else { break };
        let mut tuple = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            tuple.push(match key_form(column)? {
                KeyForm::Int => KeyValue::Int(
                    int(r, i).ok_or_else(|| Error::Internal(format!("NULL in key column {}", ident(&column.name))))?,
                ),
                KeyForm::Binary => match r.cells().nth(i).map(|(_, d)| d) {
                    Some(tiberius::ColumnData::Binary(Some(b))) => KeyValue::Bytes(b.to_vec()),
                    _ => return Err(Error::Internal(format!("NULL in key column {}", ident(&column.name)))),
                },
                _ => KeyValue::Bytes(
                    text(r, i)
                        .ok_or_else(|| Error::Internal(format!("NULL in key column {}", ident(&column.name))))?
                        .into_bytes(),
                ),
            });
        }
        points.push(tuple);
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_split_evenly() {
        assert_eq!(even_points(1, 100, 4), [25, 50, 75]);
        assert_eq!(even_points(5, 5, 4), Vec::<i64>::new());
        assert_eq!(even_points(1, 3, 8), [1, 2]);
        assert_eq!(even_points(i64::MIN, i64::MAX, 2), [-1]);
    }

    #[test]
    fn split_sql_reads_the_key_in_order() {
        assert_eq!(
            min_max_sql("[d].[s].[t]", "i]d"),
            "SELECT CAST(MIN([i]]d]) AS bigint), CAST(MAX([i]]d]) AS bigint) FROM [d].[s].[t]"
        );
        assert_eq!(
            walk_sql("[d].[s].[t]", "[a], [b]", Some("([a] > 1)"), "[a], [b]", 1000),
            "SELECT [a], [b] FROM [d].[s].[t] WHERE ([a] > 1) ORDER BY [a], [b] OFFSET 999 ROWS FETCH NEXT 1 ROWS ONLY"
        );
    }
}
