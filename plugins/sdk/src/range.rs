//! The SQL predicate of a chunk's key range, for any SQL dialect.

use dbferry_copy_core::key::{KeyRange, KeyValue};

/// A key column as an engine writes it in SQL.
pub trait KeyColumnSql {
    /// The engine's error.
    type Error: From<KeyArityError>;
    /// The quoted identifier.
    fn ident(&self) -> String;
    /// `value` as a literal of this column's type and collation.
    fn literal(&self, value: &KeyValue) -> Result<String, Self::Error>;
}

/// A key bound with a different number of values than the key has columns.
#[derive(Debug, thiserror::Error)]
#[error("a key bound has {values} values for {columns} key columns")]
pub struct KeyArityError {
    /// Values in the bound.
    pub values: usize,
    /// Columns in the key.
    pub columns: usize,
}

/// `lower < key <= upper` over `columns` (the key, in order); `None` for the
/// whole table. Composite keys compare lexicographically, written as
/// `(a > x) OR (a = x AND b > y)`, which range optimisers use.
pub fn predicate<C: KeyColumnSql>(columns: &[C], range: &KeyRange) -> Result<Option<String>, C::Error> {
    let mut parts = Vec::new();
    if let Some(lower) = &range.lower {
        parts.push(compare(columns, lower, ">", ">")?);
    }
    if let Some(upper) = &range.upper {
        parts.push(compare(columns, upper, "<", "<=")?);
    }
    Ok(match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(parts.join(" AND ")),
    })
}

/// The key compared with `tuple`; `last` is the operator of the last column.
fn compare<C: KeyColumnSql>(columns: &[C], tuple: &[KeyValue], op: &str, last: &str) -> Result<String, C::Error> {
    if columns.len() != tuple.len() || columns.is_empty() {
        return Err(KeyArityError {
            values: tuple.len(),
            columns: columns.len(),
        }
        .into());
    }
    let literals = columns
        .iter()
        .zip(tuple)
        .map(|(c, v)| c.literal(v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut alternatives = Vec::with_capacity(columns.len());
    for i in 0..columns.len() {
        let mut terms: Vec<String> = (0..i)
            .map(|j| format!("{} = {}", columns[j].ident(), literals[j]))
            .collect();
        let op = if i + 1 == columns.len() { last } else { op };
        terms.push(format!("{} {op} {}", columns[i].ident(), literals[i]));
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    Ok(if alternatives.len() == 1 {
        alternatives.remove(0)
    } else {
        format!("({})", alternatives.join(" OR "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Col(&'static str);

    #[derive(Debug)]
    struct Err(String);
    impl From<KeyArityError> for Err {
        fn from(e: KeyArityError) -> Self {
            Err(e.to_string())
        }
    }

    impl KeyColumnSql for Col {
        type Error = Err;
        fn ident(&self) -> String {
            format!("`{}`", self.0)
        }
        fn literal(&self, value: &KeyValue) -> Result<String, Err> {
            Ok(match value {
                KeyValue::Int(i) => i.to_string(),
                KeyValue::UInt(u) => u.to_string(),
                KeyValue::Bytes(b) => format!("X'{}'", hex_of(b)),
            })
        }
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    #[test]
    fn composite_bounds_expand_lexicographically() {
        let range = KeyRange {
            columns: vec!["a".into(), "b".into()],
            lower: Some(vec![KeyValue::Int(1), KeyValue::Bytes(b"x".to_vec())]),
            upper: Some(vec![KeyValue::Int(5), KeyValue::UInt(2)]),
        };
        let sql = predicate(&[Col("a"), Col("b")], &range)
            .expect("valid")
            .expect("bounded");
        assert_eq!(
            sql,
            "((`a` > 1) OR (`a` = 1 AND `b` > X'78')) AND ((`a` < 5) OR (`a` = 5 AND `b` <= 2))"
        );
    }

    #[test]
    fn whole_tables_have_no_predicate_and_wrong_arity_is_an_error() {
        assert!(predicate(&[Col("a")], &KeyRange::default()).expect("valid").is_none());
        let bad = KeyRange {
            columns: vec!["a".into()],
            lower: Some(vec![KeyValue::Int(1), KeyValue::Int(2)]),
            upper: None,
        };
        let error = predicate(&[Col("a")], &bad).expect_err("two values for one column");
        assert_eq!(error.0, "a key bound has 2 values for 1 key columns");
    }
}
