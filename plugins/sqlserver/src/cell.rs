//! Reading catalogue cells whatever type the server sent them as.

use tiberius::{ColumnData, Row};

fn cell(row: &Row, i: usize) -> Option<&ColumnData<'static>> {
    row.cells().nth(i).map(|(_, data)| data)
}

/// A cell as text; `None` for NULL.
pub fn text(row: &Row, i: usize) -> Option<String> {
    Some(match cell(row, i)? {
        ColumnData::String(Some(s)) => s.to_string(),
        ColumnData::U8(Some(v)) => v.to_string(),
        ColumnData::I16(Some(v)) => v.to_string(),
        ColumnData::I32(Some(v)) => v.to_string(),
        ColumnData::I64(Some(v)) => v.to_string(),
        ColumnData::Bit(Some(v)) => u8::from(*v).to_string(),
        ColumnData::Numeric(Some(n)) => n.to_string(),
        ColumnData::Guid(Some(g)) => g.to_string(),
        ColumnData::F64(Some(v)) => v.to_string(),
        ColumnData::F32(Some(v)) => v.to_string(),
        _ => return None,
    })
}

/// A cell as text, NULL as empty.
pub fn string(row: &Row, i: usize) -> String {
    text(row, i).unwrap_or_default()
}

/// A cell as an integer; NULL or non-numbers as `None`.
pub fn int(row: &Row, i: usize) -> Option<i64> {
    match cell(row, i)? {
        ColumnData::U8(Some(v)) => Some(i64::from(*v)),
        ColumnData::I16(Some(v)) => Some(i64::from(*v)),
        ColumnData::I32(Some(v)) => Some(i64::from(*v)),
        ColumnData::I64(Some(v)) => Some(*v),
        ColumnData::Bit(Some(v)) => Some(i64::from(*v)),
        ColumnData::Numeric(Some(n)) if n.scale() == 0 => i64::try_from(n.value()).ok(),
        _ => text(row, i).and_then(|t| t.trim().parse().ok()),
    }
}

/// A cell as an unsigned number; NULL or garbage as 0.
pub fn u64(row: &Row, i: usize) -> u64 {
    int(row, i).and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

/// A cell as a flag; NULL as false.
pub fn flag(row: &Row, i: usize) -> bool {
    int(row, i).is_some_and(|v| v != 0)
}
