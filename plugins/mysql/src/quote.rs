//! Quoting: identifiers in backticks, literals escaped or in hex.
//!
//! Every name and every value that reaches SQL text goes through here.

use std::fmt::Write as _;

/// `name` as a backtick-quoted identifier, embedded backticks doubled.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// `db`.`table`, both quoted.
pub fn qualified(database: &str, table: &str) -> String {
    format!("{}.{}", ident(database), ident(table))
}

/// A string literal in single quotes with every special character escaped.
/// Safe under any `sql_mode` (including `NO_BACKSLASH_ESCAPES`) only for
/// ASCII without backslashes; callers with arbitrary text use [`hex_str`].
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Arbitrary bytes as a hex literal `X'..'` (a binary string). Empty bytes
/// become `''` with a binary introducer, since `X''` is fine too but clearer.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out.push('\'');
    out
}

/// A UTF-8 string as a `_utf8mb4 X'..'` literal: immune to `sql_mode` and
/// to the connection's character set.
pub fn hex_str(text: &str) -> String {
    format!("_utf8mb4 {}", hex(text.as_bytes()))
}

/// A text literal of a given character set and collation:
/// `_charset X'..' COLLATE collation`; binary strings are plain `X'..'`.
pub fn typed_text(bytes: &[u8], charset: Option<&str>, collation: Option<&str>) -> String {
    match (charset, collation) {
        (Some(cs), Some(coll)) if cs != "binary" && is_word(cs) && is_word(coll) => {
            format!("_{cs} {} COLLATE {coll}", hex(bytes))
        }
        (Some(cs), None) if cs != "binary" && is_word(cs) => format!("_{cs} {}", hex(bytes)),
        _ => hex(bytes),
    }
}

/// Whether `s` is a plain word (charset and collation names are).
pub fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `s` is a plain numeric literal (`-12.5e3`), safe to inline.
pub fn is_number(s: &[u8]) -> bool {
    let mut digits = 0;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'-' | b'+' if i == 0 => {}
            b'.' | b'e' | b'E' | b'-' | b'+' => {}
            _ => return false,
        }
    }
    digits > 0
}

/// Parses a backtick-quoted identifier at the start of `s`; returns the
/// unquoted name and the rest of `s` after the closing backtick.
pub fn parse_ident(s: &str) -> Option<(String, &str)> {
    let rest = s.strip_prefix('`')?;
    let mut name = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if let Some((_, '`')) = chars.peek() {
                chars.next();
                name.push('`');
                continue;
            }
            return Some((name, &rest[i + 1..]));
        }
        name.push(c);
    }
    None
}

/// Parses a single-quoted string literal as `SHOW CREATE` prints it (quotes
/// doubled or backslash-escaped) at the start of `s`; returns the raw literal
/// text (quotes included) and the rest.
pub fn skip_string(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'\'') {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some((&s[..=i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_backticked_and_backticks_doubled() {
        assert_eq!(ident("t"), "`t`");
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(ident("a.b c"), "`a.b c`");
        assert_eq!(ident("select"), "`select`");
        assert_eq!(ident("tä😀"), "`tä😀`");
        assert_eq!(qualified("d`b", "t.x"), "`d``b`.`t.x`");
    }

    #[test]
    fn identifiers_parse_back() {
        for name in ["t", "a`b", "``", "a.b c", "tä😀", "select"] {
            let quoted = format!("{} rest", ident(name));
            let (back, rest) = parse_ident(&quoted).expect("parses");
            assert_eq!(back, name);
            assert_eq!(rest, " rest");
        }
        assert!(parse_ident("`open").is_none());
        assert!(parse_ident("bare").is_none());
    }

    #[test]
    fn strings_escape_everything_dangerous() {
        assert_eq!(string("it's"), "'it''s'");
        assert_eq!(string("a\\b\0\n"), "'a\\\\b\\0\\n'");
        assert_eq!(hex(b"\x00\xff"), "X'00FF'");
        assert_eq!(hex_str("é"), "_utf8mb4 X'C3A9'");
    }

    #[test]
    fn typed_literals_carry_charset_and_collation() {
        assert_eq!(
            typed_text(b"ab", Some("utf8mb4"), Some("utf8mb4_bin")),
            "_utf8mb4 X'6162' COLLATE utf8mb4_bin"
        );
        assert_eq!(typed_text(b"ab", Some("binary"), Some("binary")), "X'6162'");
        assert_eq!(typed_text(b"ab", None, None), "X'6162'");
        assert_eq!(typed_text(b"ab", Some("x;drop"), None), "X'6162'");
    }

    #[test]
    fn numbers_are_recognised_strictly() {
        assert!(is_number(b"-12.50"));
        assert!(is_number(b"1e-5"));
        assert!(!is_number(b"1; drop"));
        assert!(!is_number(b""));
        assert!(!is_number(b"-"));
        assert!(!is_number(b"'1'"));
    }

    #[test]
    fn string_literals_are_skipped_whole() {
        assert_eq!(skip_string("'a''b' x"), Some(("'a''b'", " x")));
        assert_eq!(skip_string("'a\\'b' x"), Some(("'a\\'b'", " x")));
        assert_eq!(skip_string("'open"), None);
    }
}
