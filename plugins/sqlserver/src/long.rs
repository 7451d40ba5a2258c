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

/// `INSERT INTO #dbferry_stage (c0, ...) VALUES (@P1, ...)` for `width`
/// staging columns.
pub fn insert_sql(width: usize) -> String {
    let columns: Vec<String> = (0..width).map(|i| ident(&format!("c{i}"))).collect();
    let params: Vec<String> = (1..=width).map(|i| format!("@P{i}")).collect();
    format!(
        "INSERT INTO {STAGE} ({}) VALUES ({})",
        columns.join(", "),
        params.join(", ")
    )
}

/// Inserts one staged row through `sql` ([`insert_sql`]).
pub async fn insert_row(conn: &mut Conn, sql: &str, row: Vec<ColumnData<'static>>) -> Result<()> {
    let mut query = Query::new(sql.to_string());
    for value in row {
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
    fn the_insert_names_every_staging_column() {
        assert_eq!(
            insert_sql(2),
            "INSERT INTO #dbferry_stage ([c0], [c1]) VALUES (@P1, @P2)"
        );
    }
}
