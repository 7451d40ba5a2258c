//! Reference row encoder (a baseline for the MySQL plugin's).
//!
//! The real encoder is `dbferry_mysql::encode` in `plugins/mysql` (it turns
//! source rows into the `LOAD DATA LOCAL INFILE` stream). `benches/encoder.rs`
//! measures both on the same inputs, so the plugin's encoder always has a
//! plain, obviously correct implementation to be compared against.
//!
//! Format: `LOAD DATA`'s defaults — fields separated by TAB, rows ended by
//! LF, `\` escapes itself, TAB, LF, CR and NUL (as `\0`), and NULL is `\N`.

/// Appends `value` escaped for `LOAD DATA`'s default format.
pub fn escape_into(out: &mut Vec<u8>, value: &[u8]) {
    let mut start = 0;
    for (i, &byte) in value.iter().enumerate() {
        let escaped = match byte {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            0 => b'0',
            _ => continue,
        };
        out.extend_from_slice(&value[start..i]);
        out.push(b'\\');
        out.push(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&value[start..]);
}

/// Appends one row; `None` is SQL NULL.
pub fn encode_row(out: &mut Vec<u8>, fields: &[Option<&[u8]>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match field {
            Some(value) => escape_into(out, value),
            None => out.extend_from_slice(b"\\N"),
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bytes_and_null_are_escaped() {
        let mut out = Vec::new();
        encode_row(&mut out, &[Some(b"a\tb\nc\\d\0e\r"), None, Some(b"\\N"), Some(b"")]);
        assert_eq!(out, b"a\\tb\\nc\\\\d\\0e\\r\t\\N\t\\\\N\t\n");
    }
}
