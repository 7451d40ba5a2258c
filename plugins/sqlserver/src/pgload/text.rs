//! Values in PostgreSQL's `COPY` text format, as Babelfish's types read
//! them: `\N` for NULL, backslash escapes for the four characters the
//! format reserves, and each type's input syntax.
//!
//! Where Babelfish's TDS receive code and its text input would store
//! different values for the same TDS value, the text here is what the TDS
//! path would have stored, so the two write paths agree to the bit:
//! `datetime` (see [`datetime`]) and times to the microsecond (seventh
//! digits refused, as [`crate::textform`] does).

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use tiberius::ColumnData;

use crate::error::{Error, Result};
use crate::textform;

/// Days from 0001-01-01 to 1900-01-01, the epoch of TDS `datetime`.
const DAYS_TO_1900: i64 = 693_595;
const DAY_MILLIS: i64 = 86_400_000;

/// What precedes the hex digits of a binary value: PostgreSQL's bytea hex
/// form, its backslash escaped for `COPY`.
pub const BYTES_PREFIX: &str = "\\\\x";

/// Appends `value` of `column` (for messages).
pub fn push_value(out: &mut BytesMut, value: &ColumnData<'_>, column: &str) -> Result<()> {
    if crate::encode::is_null(value) {
        out.put_slice(b"\\N");
        return Ok(());
    }
    match value {
        ColumnData::Bit(Some(b)) => out.put_u8(if *b { b'1' } else { b'0' }),
        ColumnData::U8(Some(n)) => push_display(out, n),
        ColumnData::I16(Some(n)) => push_display(out, n),
        ColumnData::I32(Some(n)) => push_display(out, n),
        ColumnData::I64(Some(n)) => push_display(out, n),
        // Display is the shortest text that reads back as the same float.
        ColumnData::F32(Some(f)) if f.is_finite() => push_display(out, f),
        ColumnData::F64(Some(f)) if f.is_finite() => push_display(out, f),
        ColumnData::Numeric(Some(n)) => out.put_slice(textform::numeric(n.value(), n.scale()).as_bytes()),
        ColumnData::Date(Some(d)) => out.put_slice(textform::date(d.days()).as_bytes()),
        ColumnData::Time(Some(t)) => out.put_slice(textform::time(*t, column)?.as_bytes()),
        ColumnData::DateTime2(Some(d)) => out.put_slice(textform::datetime2(*d, column)?.as_bytes()),
        ColumnData::DateTimeOffset(Some(_)) => {
            let text = textform::text_of(value, column)?.unwrap_or_default();
            out.put_slice(text.as_bytes());
        }
        ColumnData::DateTime(Some(d)) => out.put_slice(datetime(d.days(), d.seconds_fragments(), column)?.as_bytes()),
        ColumnData::SmallDateTime(Some(d)) => {
            let minutes = i64::from(d.seconds_fragments());
            let day = i64::from(d.days()) + DAYS_TO_1900;
            let text = format!(
                "{} {:02}:{:02}:00",
                textform::date(day_number(day, column)?),
                minutes / 60,
                minutes % 60
            );
            out.put_slice(text.as_bytes());
        }
        ColumnData::String(Some(s)) => push_escaped(out, s),
        ColumnData::Binary(Some(b)) => {
            out.put_slice(BYTES_PREFIX.as_bytes());
            push_hex(out, b);
        }
        ColumnData::Guid(Some(g)) => push_display(out, g),
        other => return Err(Error::Unsupported(format!("{column}: no COPY text form for {other:?}"))),
    }
    Ok(())
}

/// Appends text with `COPY`'s reserved characters escaped. Escapes are
/// ASCII, so a piece of a longer text can be escaped on its own.
pub fn push_escaped(out: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(escape);
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
}

/// Appends bytes as lowercase hex digits.
pub fn push_hex(out: &mut BytesMut, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.put_u8(DIGITS[usize::from(b >> 4)]);
        out.put_u8(DIGITS[usize::from(b & 0xf)]);
    }
}

/// Formats straight into the buffer: this runs for every number copied.
fn push_display(out: &mut BytesMut, value: impl std::fmt::Display) {
    // Writing into a BytesMut cannot fail: it grows.
    let _ = write!(out, "{value}");
}

fn day_number(days: i64, column: &str) -> Result<u32> {
    u32::try_from(days).map_err(|_| Error::Data(format!("a date of {column} is out of range")))
}

/// A TDS `datetime` (days since 1900-01-01, ticks of 1/300 s) as the text
/// of the value Babelfish's TDS receive stores: whole milliseconds,
/// `(int)(3.33333333 * ticks)`, a result ending in .999 carried to the next
/// second (babelfishpg_tds `GetDatetimeFromDaysTicks`).
pub fn datetime(days: i32, ticks: u32, column: &str) -> Result<String> {
    let mut millis = (3.333_333_33_f64 * f64::from(ticks)) as i64;
    if millis % 1000 == 999 {
        millis += 1;
    }
    let day = i64::from(days) + DAYS_TO_1900 + millis.div_euclid(DAY_MILLIS);
    let millis = millis.rem_euclid(DAY_MILLIS);
    let seconds = millis / 1000;
    Ok(format!(
        "{} {:02}:{:02}:{:02}.{:03}",
        textform::date(day_number(day, column)?),
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        millis % 1000
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: ColumnData<'_>) -> String {
        let mut out = BytesMut::new();
        push_value(&mut out, &value, "c").expect("a text form");
        String::from_utf8(out.to_vec()).expect("utf-8")
    }

    #[test]
    fn reserved_characters_are_escaped_and_nulls_are_backslash_n() {
        assert_eq!(
            text(ColumnData::String(Some("a\tb\nc\\d\re€".into()))),
            "a\\tb\\nc\\\\d\\re€"
        );
        assert_eq!(text(ColumnData::String(None)), "\\N");
        assert_eq!(text(ColumnData::I32(None)), "\\N");
        assert_eq!(
            text(ColumnData::Binary(Some(vec![0, 0xab, 0xff].into()))),
            "\\\\x00abff"
        );
    }

    #[test]
    fn numbers_read_back_exactly() {
        assert_eq!(text(ColumnData::F64(Some(0.1))), "0.1");
        assert_eq!(text(ColumnData::F32(Some(1.0e-7))), "0.0000001");
        assert_eq!(text(ColumnData::Bit(Some(true))), "1");
        assert_eq!(text(ColumnData::I64(Some(i64::MIN))), "-9223372036854775808");
        assert!(push_value(&mut BytesMut::new(), &ColumnData::F64(Some(f64::NAN)), "c").is_err());
    }

    #[test]
    fn datetimes_keep_what_the_tds_receive_would() {
        // 1 tick is 3.33 ms, stored as 3 ms; 2 ticks as 6 ms.
        assert_eq!(datetime(0, 1, "c").ok().as_deref(), Some("1900-01-01 00:00:00.003"));
        assert_eq!(datetime(0, 2, "c").ok().as_deref(), Some("1900-01-01 00:00:00.006"));
        // The last tick of a day (SQL Server's 23:59:59.997).
        let last = 86_400 * 300 - 1;
        assert_eq!(datetime(0, last, "c").ok().as_deref(), Some("1900-01-01 23:59:59.996"));
        // 300 ticks make 999.999999 ms, truncated to .999 and carried.
        assert_eq!(datetime(0, 300, "c").ok().as_deref(), Some("1900-01-01 00:00:01.000"));
        assert_eq!(
            datetime(-53_690, 0, "c").ok().as_deref(),
            Some("1753-01-01 00:00:00.000")
        );
    }
}
