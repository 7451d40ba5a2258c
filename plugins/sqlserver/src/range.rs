//! Key ranges as T-SQL: key values read as exact text, turned back into
//! literals of the column's own type, and `lower < key <= upper` predicates
//! expanded per column.

use dbferry_plugin_abi::protocol::{KeyRange, KeyValue};

use crate::detail::TableDetail;
use crate::error::{Error, Result};
use crate::quote::{binary, ident, is_number, string};
use crate::types::ColumnDetail;

/// How a key column's values are carried in a `KeyValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyForm {
    /// Integers and bit: `KeyValue::Int`.
    Int,
    /// Exact decimal text (decimal, numeric, money, float, real).
    Number,
    /// Text in style 121 (date and time types), literal via CONVERT.
    Temporal,
    /// Character data (UTF-8 of the value).
    Text,
    /// Bytes as stored.
    Binary,
    /// A uniqueidentifier in its text form.
    Guid,
}

/// The form of `column`'s key values.
pub fn key_form(column: &ColumnDetail) -> Result<KeyForm> {
    Ok(match column.base.as_str() {
        "bit" | "tinyint" | "smallint" | "int" | "bigint" => KeyForm::Int,
        "decimal" | "numeric" | "money" | "smallmoney" | "float" | "real" => KeyForm::Number,
        "date" | "time" | "datetime" | "datetime2" | "datetimeoffset" | "smalldatetime" => KeyForm::Temporal,
        "char" | "varchar" | "nchar" | "nvarchar" => KeyForm::Text,
        "binary" | "varbinary" => KeyForm::Binary,
        "uniqueidentifier" => KeyForm::Guid,
        other => {
            return Err(Error::Unsupported(format!(
                "key column {} of type {other} cannot bound a chunk",
                ident(&column.name)
            )))
        }
    })
}

/// The SELECT expression that reads a key value in its key form.
pub fn key_read_expr(column: &ColumnDetail) -> Result<String> {
    let c = ident(&column.name);
    Ok(match (key_form(column)?, column.base.as_str()) {
        (KeyForm::Int, _) => format!("CAST({c} AS bigint)"),
        (KeyForm::Number, "money" | "smallmoney") => format!("CONVERT(nvarchar(60), {c}, 2)"),
        (KeyForm::Number, "float" | "real") => format!("CONVERT(nvarchar(60), {c}, 3)"),
        (KeyForm::Number, _) => format!("CONVERT(nvarchar(60), {c})"),
        (KeyForm::Temporal, _) => format!("CONVERT(nvarchar(60), {c}, 121)"),
        (KeyForm::Text, _) => format!("CAST({c} AS nvarchar(4000))"),
        (KeyForm::Binary, _) => c,
        (KeyForm::Guid, _) => format!("CAST({c} AS nvarchar(36))"),
    })
}

/// A key value as a literal of `column`'s type.
pub fn literal(column: &ColumnDetail, value: &KeyValue) -> Result<String> {
    let form = key_form(column)?;
    let bytes = match value {
        KeyValue::Int(v) => return Ok(v.to_string()),
        KeyValue::UInt(v) => return Ok(v.to_string()),
        KeyValue::Bytes(bytes) => bytes,
    };
    let text = || {
        std::str::from_utf8(bytes).map_err(|_| {
            Error::Invalid(format!(
                "key value {} of {} is not text",
                binary(bytes),
                ident(&column.name)
            ))
        })
    };
    Ok(match form {
        KeyForm::Binary => binary(bytes),
        KeyForm::Int | KeyForm::Number => {
            let t = text()?;
            if !is_number(t) {
                return Err(Error::Invalid(format!(
                    "key value {t:?} of {} is not a number",
                    ident(&column.name)
                )));
            }
            format!("CAST({t} AS {})", column.type_sql())
        }
        KeyForm::Temporal => format!("CONVERT({}, {}, 121)", column.type_sql(), string(text()?)),
        KeyForm::Guid => format!("CONVERT(uniqueidentifier, {})", string(text()?)),
        KeyForm::Text => {
            let s = string(text()?);
            match (column.base.as_str(), &column.collation) {
                // A varchar key compares as varchar in its own collation, the
                // way ORDER BY sorted it.
                ("char" | "varchar", Some(collation)) => {
                    format!(
                        "CAST({s} AS varchar(8000)) COLLATE {}",
                        crate::ddl::collation_name(collation)
                    )
                }
                ("char" | "varchar", None) => format!("CAST({s} AS varchar(8000))"),
                _ => s,
            }
        }
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

    fn detail() -> TableDetail {
        let mut name = ColumnDetail::plain("na]me", "varchar", 50, 0, 0);
        name.collation = Some("Latin1_General_CI_AS".into());
        TableDetail {
            schema: "dbo".into(),
            name: "t".into(),
            columns: vec![
                ColumnDetail::plain("id", "bigint", 8, 19, 0),
                name,
                ColumnDetail::plain("u", "nvarchar", 100, 0, 0),
                ColumnDetail::plain("bin", "varbinary", 16, 0, 0),
                ColumnDetail::plain("d", "decimal", 9, 10, 2),
                ColumnDetail::plain("t", "datetime2", 8, 27, 7),
                ColumnDetail::plain("g", "uniqueidentifier", 16, 0, 0),
                ColumnDetail::plain("x", "xml", -1, 0, 0),
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
            Some("([id] > -5) AND ([id] <= 10)")
        );
    }

    #[test]
    fn composite_keys_expand_with_typed_literals() {
        let range = KeyRange {
            columns: vec!["na]me".into(), "bin".into()],
            lower: Some(vec![KeyValue::Bytes(b"a'b".to_vec()), KeyValue::Bytes(vec![0, 0xff])]),
            upper: None,
        };
        assert_eq!(
            predicate(&detail(), &range).expect("sql").as_deref(),
            Some(
                "(([na]]me] > CAST(N'a''b' AS varchar(8000)) COLLATE Latin1_General_CI_AS) OR \
                 ([na]]me] = CAST(N'a''b' AS varchar(8000)) COLLATE Latin1_General_CI_AS AND [bin] > 0x00FF))"
            )
        );
        let upper = KeyRange {
            columns: vec!["d".into(), "t".into(), "g".into(), "u".into()],
            lower: None,
            upper: Some(vec![
                KeyValue::Bytes(b"-1.50".to_vec()),
                KeyValue::Bytes(b"2024-01-02 03:04:05.0000001".to_vec()),
                KeyValue::Bytes(b"6F9619FF-8B86-D011-B42D-00C04FC964FF".to_vec()),
                KeyValue::Bytes("ü".as_bytes().to_vec()),
            ]),
        };
        let sql = predicate(&detail(), &upper).expect("sql").unwrap_or_default();
        assert!(sql.starts_with("(([d] < CAST(-1.50 AS decimal(10,2))) OR "));
        assert!(sql.contains("[t] < CONVERT(datetime2(7), N'2024-01-02 03:04:05.0000001', 121)"));
        assert!(sql.contains("[g] < CONVERT(uniqueidentifier, N'6F9619FF-8B86-D011-B42D-00C04FC964FF')"));
        assert!(sql.ends_with("[u] <= N'ü'))"));
    }

    #[test]
    fn key_reads_are_exact() {
        let d = detail();
        assert_eq!(
            key_read_expr(d.column("id").expect("id")).expect("expr"),
            "CAST([id] AS bigint)"
        );
        assert_eq!(
            key_read_expr(d.column("t").expect("t")).expect("expr"),
            "CONVERT(nvarchar(60), [t], 121)"
        );
        assert!(key_read_expr(d.column("x").expect("x")).is_err());
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
