//! T-SQL quoting: `[identifiers]` (a `]` inside doubles), `N'strings'`,
//! binary literals, and `schema.name` object names.

/// `name` as a bracketed identifier: `a]b` becomes `[a]]b]`.
pub fn ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// A Unicode string literal: `N'it''s'`.
pub fn string(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// A binary literal: `0x00FF` (`0x` alone for empty bytes).
pub fn binary(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode_upper(bytes))
}

/// Splits an object name as dbferry writes it (`schema.name`) into its
/// schema and name. Names are split at the first `.`; schema names holding a
/// dot are not supported in object names (tables carry their parts separately).
pub fn split(object: &str) -> (&str, &str) {
    match object.split_once('.') {
        Some((schema, name)) => (schema, name),
        None => ("dbo", object),
    }
}

/// `[schema].[name]`.
pub fn two_part(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// `[database].[schema].[name]`.
pub fn three_part(database: &str, schema: &str, name: &str) -> String {
    format!("{}.{}.{}", ident(database), ident(schema), ident(name))
}

/// A `[schema].[name]` as a string literal for functions taking object names
/// (`OBJECT_ID`, `DBCC CHECKIDENT`).
pub fn object_literal(schema: &str, name: &str) -> String {
    string(&two_part(schema, name))
}

/// A Unicode string literal typed `nvarchar`, as both T-SQL and a
/// Babelfish server's PostgreSQL port read it: PostgreSQL reads a bare
/// `N'...'` as `character`, which no T-SQL function (`OBJECT_ID`) takes and
/// which compares names case-sensitively, as T-SQL does not.
pub fn nvarchar(text: &str) -> String {
    format!("CAST({} AS nvarchar(4000))", string(text))
}

/// [`object_literal`] typed as [`nvarchar`] says.
pub fn object_argument(schema: &str, name: &str) -> String {
    nvarchar(&two_part(schema, name))
}

/// Whether `text` is a plain decimal number (`-12.50`, `3`, `1E+10`), safe to
/// put into SQL unquoted.
pub fn is_number(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match body.find(['E', 'e']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = !(int.is_empty() && frac.is_none_or(str::is_empty)) && digits(int) && frac.is_none_or(digits);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_double_inside_identifiers() {
        assert_eq!(ident("plain"), "[plain]");
        assert_eq!(ident("a]b"), "[a]]b]");
        assert_eq!(ident("]]"), "[]]]]]");
        assert_eq!(ident("[x"), "[[x]");
        assert_eq!(ident("with space.dot'q"), "[with space.dot'q]");
        assert_eq!(two_part("s]", "t"), "[s]]].[t]");
        assert_eq!(three_part("d", "s", "t]"), "[d].[s].[t]]]");
    }

    #[test]
    fn strings_and_binaries() {
        assert_eq!(string("it's"), "N'it''s'");
        assert_eq!(string(""), "N''");
        assert_eq!(binary(&[0, 0xff]), "0x00FF");
        assert_eq!(binary(&[]), "0x");
        assert_eq!(object_literal("s'", "t]"), "N'[s''].[t]]]'");
        assert_eq!(object_argument("s'", "t]"), "CAST(N'[s''].[t]]]' AS nvarchar(4000))");
    }

    #[test]
    fn object_names_split_at_the_first_dot() {
        assert_eq!(split("sales.orders"), ("sales", "orders"));
        assert_eq!(split("orders"), ("dbo", "orders"));
        assert_eq!(split("s.a.b"), ("s", "a.b"));
    }

    #[test]
    fn numbers_are_recognised() {
        for ok in ["0", "-12.50", "3.", ".5", "1E+10", "-2.5e-3"] {
            assert!(is_number(ok), "{ok}");
        }
        for bad in ["", "-", ".", "1;DROP", "0x10", "1e", "1 2", "N'1'"] {
            assert!(!is_number(bad), "{bad}");
        }
    }
}
