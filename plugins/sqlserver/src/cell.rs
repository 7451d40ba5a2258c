//! Reading catalogue cells whatever type the server sent them as, from a
//! TDS row or from a PostgreSQL text row ([`crate::catalog_source`]).

use tiberius::{ColumnData, Row};
use tokio_postgres::SimpleQueryRow;

/// A catalogue row: each cell as text or as an integer.
pub trait Cells {
    /// Cell `i` as text; `None` for NULL.
    fn cell_text(&self, i: usize) -> Option<String>;
    /// Cell `i` as an integer; NULL or non-numbers as `None`.
    fn cell_int(&self, i: usize) -> Option<i64>;
}

fn cell(row: &Row, i: usize) -> Option<&ColumnData<'static>> {
    row.cells().nth(i).map(|(_, data)| data)
}

impl Cells for Row {
    fn cell_text(&self, i: usize) -> Option<String> {
        Some(match cell(self, i)? {
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

    fn cell_int(&self, i: usize) -> Option<i64> {
        match cell(self, i)? {
            ColumnData::U8(Some(v)) => Some(i64::from(*v)),
            ColumnData::I16(Some(v)) => Some(i64::from(*v)),
            ColumnData::I32(Some(v)) => Some(i64::from(*v)),
            ColumnData::I64(Some(v)) => Some(*v),
            ColumnData::Bit(Some(v)) => Some(i64::from(*v)),
            ColumnData::Numeric(Some(n)) if n.scale() == 0 => i64::try_from(n.value()).ok(),
            _ => self.cell_text(i).and_then(|t| t.trim().parse().ok()),
        }
    }
}

impl Cells for SimpleQueryRow {
    fn cell_text(&self, i: usize) -> Option<String> {
        self.try_get(i).ok().flatten().map(str::to_string)
    }

    fn cell_int(&self, i: usize) -> Option<i64> {
        // Babelfish's `bit` prints 0 or 1; PostgreSQL's own booleans print t or f.
        match self.try_get(i).ok().flatten()?.trim() {
            "t" | "true" => Some(1),
            "f" | "false" => Some(0),
            other => other.parse().ok(),
        }
    }
}

/// A cell as text; `None` for NULL.
pub fn text(row: &(impl Cells + ?Sized), i: usize) -> Option<String> {
    row.cell_text(i)
}

/// A cell as text, NULL as empty.
pub fn string(row: &(impl Cells + ?Sized), i: usize) -> String {
    text(row, i).unwrap_or_default()
}

/// A cell as an integer; NULL or non-numbers as `None`.
pub fn int(row: &(impl Cells + ?Sized), i: usize) -> Option<i64> {
    row.cell_int(i)
}

/// A cell as an unsigned number; NULL or garbage as 0.
pub fn u64(row: &(impl Cells + ?Sized), i: usize) -> u64 {
    int(row, i).and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

/// A cell as a flag; NULL as false.
pub fn flag(row: &(impl Cells + ?Sized), i: usize) -> bool {
    int(row, i).is_some_and(|v| v != 0)
}
