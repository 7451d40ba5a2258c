//! Rows holding a value too long for a bulk load.
//!
//! tiberius's bulk encoder checks a value against the length the staging
//! column's metadata declares, and a `(max)` column declares 0xFFFF there,
//! so a value over 65,535 bytes is refused before it is sent (still so in
//! tiberius 0.13), although TDS streams it as PLP. Such rows go into the
//! staging table one at a time as a parameterised `INSERT`, whose long
//! parameters tiberius sends as `nvarchar(max)` / `varbinary(max)` PLP
//! values; the rows around them keep the bulk load (see
//! [`crate::writer`]). Memory stays bounded by one row: the row decoded
//! from its batch and its encoded request.

use tiberius::{ColumnData, Query};

use crate::conn::Conn;
use crate::encode::is_null;
use crate::error::{Context, Result};
use crate::quote::ident;
use crate::writer::STAGE;

/// The longest value, in bytes as sent, the bulk encoder takes.
pub const BULK_VALUE_MAX: usize = 0xffff;

/// Whether `value` is over [`BULK_VALUE_MAX`] bytes as the bulk load would
/// send it (UTF-16 for text: the staging columns are `nvarchar`).
pub fn is_long(value: &ColumnData<'_>) -> bool {
    let utf16_bytes = |s: &str| {
        // UTF-16 takes at most two bytes per UTF-8 byte: count only when
        // the bound could be over.
        s.len() * 2 > BULK_VALUE_MAX && s.encode_utf16().count() * 2 > BULK_VALUE_MAX
    };
    match value {
        ColumnData::String(Some(s)) => utf16_bytes(s),
        ColumnData::Xml(Some(x)) => utf16_bytes(AsRef::<str>::as_ref(&**x)),
        ColumnData::Binary(Some(b)) => b.len() > BULK_VALUE_MAX,
        _ => false,
    }
}

/// Whether any value of `row` is [`is_long`].
pub fn has_long(row: &[ColumnData<'_>]) -> bool {
    row.iter().any(is_long)
}

/// `INSERT INTO #dbferry_stage (c0, ...) VALUES (@P1, ...)` for `row`,
/// its NULLs written as literals: tiberius sends a NULL text or binary
/// parameter with the untyped NULL type (0x1F), which the server refuses
/// ("Data type 0x1F is unknown").
pub fn insert_sql(row: &[ColumnData<'_>]) -> String {
    let columns: Vec<String> = (0..row.len()).map(|i| ident(&format!("c{i}"))).collect();
    let mut param = 0;
    let values: Vec<String> = row
        .iter()
        .map(|value| {
            if is_null(value) {
                "NULL".to_string()
            } else {
                param += 1;
                format!("@P{param}")
            }
        })
        .collect();
    format!(
        "INSERT INTO {STAGE} ({}) VALUES ({})",
        columns.join(", "),
        values.join(", ")
    )
}

/// Inserts one staged row.
pub async fn insert_row(conn: &mut Conn, row: Vec<ColumnData<'static>>) -> Result<()> {
    let mut query = Query::new(insert_sql(&row));
    for value in row.into_iter().filter(|v| !is_null(v)) {
        query.bind(value);
    }
    query
        .execute(conn)
        .await
        .ctx(|| "inserting a row with a long value into the staging table".into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_means_over_the_bulk_limit_as_sent() {
        let ascii = |n: usize| ColumnData::String(Some("a".repeat(n).into()));
        assert!(!is_long(&ascii(BULK_VALUE_MAX / 2)));
        assert!(is_long(&ascii(BULK_VALUE_MAX / 2 + 1)));
        // Three UTF-8 bytes, one UTF-16 unit: 40,000 of them are 80,000 bytes sent.
        assert!(is_long(&ColumnData::String(Some("日".repeat(40_000).into()))));
        assert!(!is_long(&ColumnData::String(Some("日".repeat(30_000).into()))));
        assert!(!is_long(&ColumnData::Binary(Some(vec![0; BULK_VALUE_MAX].into()))));
        assert!(is_long(&ColumnData::Binary(Some(vec![0; BULK_VALUE_MAX + 1].into()))));
        assert!(!is_long(&ColumnData::String(None)));
    }

    #[test]
    fn the_insert_names_every_staging_column_and_writes_nulls_as_literals() {
        assert_eq!(
            insert_sql(&[
                ColumnData::I32(Some(1)),
                ColumnData::String(None),
                ColumnData::Binary(Some(vec![1].into()))
            ]),
            "INSERT INTO #dbferry_stage ([c0], [c1], [c2]) VALUES (@P1, NULL, @P2)"
        );
    }
}
