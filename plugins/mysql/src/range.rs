//! Key ranges as SQL: literals of key values and `lower < key <= upper`
//! predicates, expanded per column so MariaDB range-optimises them.

use dbferry_plugin_abi::protocol::{KeyRange, KeyValue};

use crate::detail::{ColumnDetail, TableDetail, ValueKind};
use crate::error::{Error, Result};
use crate::quote::{hex, ident, is_number, string, typed_text};

/// A key value as a literal comparable with `column`.
pub fn literal(column: &ColumnDetail, value: &KeyValue) -> Result<String> {
    Ok(match value {
        KeyValue::Int(v) => v.to_string(),
        KeyValue::UInt(v) => v.to_string(),
        KeyValue::Bytes(bytes) => match column.kind {
            ValueKind::Text => typed_text(bytes, column.charset.as_deref(), column.collation.as_deref()),
            ValueKind::Int | ValueKind::UInt | ValueKind::Bit | ValueKind::Float | ValueKind::Number => {
                if is_number(bytes) {
                    // An exact numeric literal: DECIMAL compares exactly.
                    String::from_utf8_lossy(bytes).into_owned()
                } else {
                    return Err(Error::Invalid(format!(
                        "key value {} of {} is not a number",
                        hex(bytes),
                        ident(&column.name)
                    )));
                }
            }
            ValueKind::Temporal => match std::str::from_utf8(bytes) {
                Ok(text) => string(text),
                Err(_) => hex(bytes),
            },
            _ => hex(bytes),
        },
    })
}

/// The predicate `lower < key <= upper` of `range`, `None` for the whole table.
pub fn predicate(detail: &TableDetail, range: &KeyRange) -> Result<Option<String>> {
    let columns = range
        .columns
        .iter()
        .map(|name| detail.column(name).map(KeyColumn))
        .collect::<Result<Vec<_>>>()?;
    dbferry_plugin_sdk::range::predicate(&columns, range)
}

/// A key column as this engine writes it in SQL.
struct KeyColumn<'a>(&'a ColumnDetail);

impl dbferry_plugin_sdk::range::KeyColumnSql for KeyColumn<'_> {
    type Error = Error;

    fn ident(&self) -> String {
        ident(&self.0.name)
    }

    fn literal(&self, value: &KeyValue) -> Result<String> {
        literal(self.0, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: ValueKind, charset: Option<&str>, collation: Option<&str>) -> ColumnDetail {
        ColumnDetail {
            name: name.into(),
            data_type: String::new(),
            column_type: String::new(),
            kind,
            nullable: false,
            charset: charset.map(str::to_string),
            collation: collation.map(str::to_string),
            generated: false,
            invisible: false,
            read: ident(name),
        }
    }

    fn detail() -> TableDetail {
        TableDetail {
            columns: vec![
                column("id", ValueKind::Int, None, None),
                column("na`me", ValueKind::Text, Some("utf8mb4"), Some("utf8mb4_general_ci")),
                column("bin", ValueKind::Binary, None, None),
                column("d", ValueKind::Number, None, None),
                column("t", ValueKind::Temporal, None, None),
            ],
            ..TableDetail::default()
        }
    }

    #[test]
    fn whole_table_has_no_predicate() {
        assert_eq!(
            predicate(&detail(), &KeyRange::whole(vec!["id".into()])).expect("sql"),
            None
        );
    }

    #[test]
    fn single_integer_key() {
        let range = KeyRange {
            columns: vec!["id".into()],
            lower: Some(vec![KeyValue::Int(-5)]),
            upper: Some(vec![KeyValue::Int(10)]),
        };
        assert_eq!(
            predicate(&detail(), &range).expect("sql").as_deref(),
            Some("(`id` > -5) AND (`id` <= 10)")
        );
    }

    #[test]
    fn composite_text_key_expands_with_typed_literals() {
        let range = KeyRange {
            columns: vec!["na`me".into(), "bin".into()],
            lower: Some(vec![KeyValue::Bytes(b"a'b".to_vec()), KeyValue::Bytes(vec![0, 0xff])]),
            upper: None,
        };
        assert_eq!(
            predicate(&detail(), &range).expect("sql").as_deref(),
            Some(
                "((`na``me` > _utf8mb4 X'612762' COLLATE utf8mb4_general_ci) OR \
                 (`na``me` = _utf8mb4 X'612762' COLLATE utf8mb4_general_ci AND `bin` > X'00FF'))"
            )
        );
        let upper = KeyRange {
            columns: vec!["id".into(), "d".into(), "t".into()],
            lower: None,
            upper: Some(vec![
                KeyValue::UInt(7),
                KeyValue::Bytes(b"-1.50".to_vec()),
                KeyValue::Bytes(b"2024-01-02 03:04:05.000001".to_vec()),
            ]),
        };
        assert_eq!(
            predicate(&detail(), &upper).expect("sql").as_deref(),
            Some(
                "((`id` < 7) OR (`id` = 7 AND `d` < -1.50) OR \
                 (`id` = 7 AND `d` = -1.50 AND `t` <= '2024-01-02 03:04:05.000001'))"
            )
        );
    }

    #[test]
    fn malformed_bounds_are_refused() {
        let bad_number = KeyRange {
            columns: vec!["d".into()],
            lower: Some(vec![KeyValue::Bytes(b"1; DROP TABLE x".to_vec())]),
            upper: None,
        };
        assert!(predicate(&detail(), &bad_number).is_err());
        let arity = KeyRange {
            columns: vec!["id".into()],
            lower: Some(vec![KeyValue::Int(1), KeyValue::Int(2)]),
            upper: None,
        };
        assert!(predicate(&detail(), &arity).is_err());
        let unknown = KeyRange {
            columns: vec!["nope".into()],
            lower: Some(vec![KeyValue::Int(1)]),
            upper: None,
        };
        assert!(predicate(&detail(), &unknown).is_err());
    }
}
