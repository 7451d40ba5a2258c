//! Row encoding: query result rows into `LOAD DATA` input.
//!
//! Format: `FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY
//! '\n'`, `CHARACTER SET binary`, fields not enclosed. NULL is `\N`; inside a
//! value only the three bytes the format gives a meaning (`\`, tab and
//! newline) are escaped, so `''`, `'NULL'` and the two characters `\N` all
//! stay distinct from NULL. This is the target's ingest format, so the writer
//! passes batches through as is.
//!
//! The hot path appends into one `BytesMut` and never allocates per row.
//! Escaping only three bytes lets a SIMD scan (`memchr3`) skip the clean
//! stretches, which is most of every value: byte-at-a-time table lookups
//! were a fifth of the plugin's CPU on sysbench rows.

use bytes::{BufMut, BytesMut};
use mysql_async::Value;

/// The clause every `LOAD DATA` statement of the writer uses; it must match
/// what [`push_value`] writes.
pub const LOAD_FORMAT: &str =
    "CHARACTER SET binary FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' LINES STARTING BY '' TERMINATED BY '\\n'";

/// Whether `LOAD_FORMAT` escapes a byte.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    table[b'\t' as usize] = true;
    table[b'\n' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Values shorter than this are scanned byte by byte: most columns (numbers,
/// dates, short strings) are, and memchr's vector search costs more to set
/// up than it saves on them.
const SHORT_VALUE: usize = 32;

/// Appends `bytes` escaped.
#[inline]
pub fn push_escaped(out: &mut BytesMut, bytes: &[u8]) {
    if bytes.len() < SHORT_VALUE && !bytes.iter().any(|&b| ESCAPED[usize::from(b)]) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for i in memchr::memchr3_iter(b'\t', b'\n', b'\\', bytes) {
        out.extend_from_slice(&bytes[start..i]);
        let letter = match bytes[i] {
            b'\t' => b't',
            b'\n' => b'n',
            _ => b'\\',
        };
        out.put_slice(&[b'\\', letter]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends NULL.
#[inline]
pub fn push_null(out: &mut BytesMut) {
    out.extend_from_slice(b"\\N");
}

/// Appends one value as the text protocol delivers it.
#[inline]
pub fn push_value(out: &mut BytesMut, value: Option<&Value>) {
    match value {
        None | Some(Value::NULL) => push_null(out),
        Some(Value::Bytes(bytes)) => push_escaped(out, bytes),
        // The text protocol only yields bytes and NULL; other variants come
        // from the binary protocol, which the reader does not use. Render
        // them anyway rather than lose data.
        Some(Value::Int(v)) => push_display(out, v),
        Some(Value::UInt(v)) => push_display(out, v),
        Some(Value::Float(v)) => push_display(out, v),
        Some(Value::Double(v)) => push_display(out, v),
        Some(other) => {
            let text = other.as_sql(true);
            push_escaped(out, text.trim_matches('\'').as_bytes());
        }
    }
}

fn push_display(out: &mut BytesMut, value: &dyn std::fmt::Display) {
    use std::io::Write as _;
    let mut writer = out.writer();
    let _ = write!(writer, "{value}");
}

/// Appends a whole row: fields separated by tabs, ended by a newline.
#[inline]
pub fn push_row(out: &mut BytesMut, row: &mysql_async::Row) {
    let columns = row.len();
    for i in 0..columns {
        if i > 0 {
            out.put_u8(b'\t');
        }
        push_value(out, row.as_ref(i));
    }
    out.put_u8(b'\n');
}

/// Decodes one field of the format back into its value (`None` for NULL);
/// the inverse of [`push_value`], used by tests and by diagnostics.
pub fn unescape(field: &[u8]) -> Option<Vec<u8>> {
    if field == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(field.len());
    let mut iter = field.iter();
    while let Some(&b) = iter.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match iter.next() {
            Some(b'0') => out.push(0),
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'b') => out.push(8),
            Some(b'Z') => out.push(26),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    Some(out)
}

/// Splits one encoded line (without its newline) into fields.
pub fn split_fields(line: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b'\t' => {
                fields.push(&line[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    fields.push(&line[start.min(line.len())..]);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(values: &[Option<&[u8]>]) -> BytesMut {
        let mut out = BytesMut::new();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.put_u8(b'\t');
            }
            match v {
                None => push_null(&mut out),
                Some(b) => push_escaped(&mut out, b),
            }
        }
        out.put_u8(b'\n');
        out
    }

    #[test]
    fn null_empty_and_lookalikes_stay_distinct() {
        let line = encode(&[None, Some(b""), Some(b"NULL"), Some(b"\\N"), Some(b"N")]);
        assert_eq!(&line[..], b"\\N\t\tNULL\t\\\\N\tN\n");
    }

    #[test]
    fn only_the_bytes_the_format_gives_a_meaning_are_escaped() {
        let line = encode(&[Some(b"a\tb\nc\rd\\e\0f")]);
        assert_eq!(&line[..], b"a\\tb\\nc\rd\\\\e\0f\n");
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let samples: Vec<&[u8]> = vec![
            &all,
            b"",
            b"\\",
            b"\\\\N",
            b"\\N",
            b"NULL",
            b"\t\t",
            b"\n",
            "emoji 😀 ü".as_bytes(),
        ];
        for sample in samples {
            let line = encode(&[Some(sample), None, Some(sample)]);
            assert_eq!(line.last(), Some(&b'\n'));
            let body = &line[..line.len() - 1];
            assert!(!body.contains(&b'\n'), "a raw newline would end the row");
            let fields = split_fields(body);
            assert_eq!(fields.len(), 3);
            assert_eq!(unescape(fields[0]).as_deref(), Some(sample));
            assert_eq!(unescape(fields[1]), None);
            assert_eq!(unescape(fields[2]).as_deref(), Some(sample));
        }
    }

    #[test]
    fn driver_values_encode_like_text() {
        let mut out = BytesMut::new();
        push_value(&mut out, Some(&Value::Bytes(b"x\ty".to_vec())));
        out.put_u8(b'|');
        push_value(&mut out, Some(&Value::NULL));
        out.put_u8(b'|');
        push_value(&mut out, None);
        out.put_u8(b'|');
        push_value(&mut out, Some(&Value::Int(-5)));
        out.put_u8(b'|');
        push_value(&mut out, Some(&Value::UInt(u64::MAX)));
        assert_eq!(&out[..], b"x\\ty|\\N|\\N|-5|18446744073709551615");
    }
}
