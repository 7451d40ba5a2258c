//! sql_variant values: read as three values (base type, scale, the value as
//! exact text), rebuilt on the target with the same base type.
//!
//! Exact text per base type: binary types in `0x` hex (style 1), float and
//! real with 17/9 significant digits (style 3), money with four decimals
//! (style 2), date and time types in ODBC canonical form with every
//! fractional digit (style 121), everything else by plain conversion
//! (integers, decimal, bit, uniqueidentifier, character data).
//!
//! Limits, documented: `char`/`nchar`/`binary` values come back with the base
//! types `varchar`/`nvarchar`/`varbinary` (the value, padding included, is
//! unchanged); character values take the database's default collation;
//! decimal values keep their scale with precision 38.

use crate::quote::string;

/// The staging column types of one sql_variant column.
pub const STAGE_TYPES: [&str; 3] = ["nvarchar(max)", "tinyint", "nvarchar(max)"];

/// (base type, conversion style) pairs read as `CONVERT(nvarchar(max), CAST(v AS type), style)`.
const STYLED: [(&str, &str, u8); 11] = [
    ("binary", "varbinary(8000)", 1),
    ("varbinary", "varbinary(8000)", 1),
    ("float", "float", 3),
    ("real", "real", 3),
    ("money", "money", 2),
    ("smallmoney", "smallmoney", 2),
    ("datetime", "datetime", 121),
    ("smalldatetime", "smalldatetime", 121),
    ("date", "date", 121),
    ("time", "time(7)", 121),
    ("datetime2", "datetime2(7)", 121),
];

/// The three SELECT expressions of sql_variant column `c` (quoted).
pub fn read_exprs(c: &str) -> Vec<String> {
    let mut value = format!("CASE CAST(SQL_VARIANT_PROPERTY({c}, 'BaseType') AS nvarchar(128))");
    for (base, cast, style) in STYLED.iter().chain(&[("datetimeoffset", "datetimeoffset(7)", 121)]) {
        value.push_str(&format!(
            " WHEN {} THEN CONVERT(nvarchar(max), CAST({c} AS {cast}), {style})",
            string(base)
        ));
    }
    value.push_str(&format!(" ELSE CAST({c} AS nvarchar(max)) END"));
    vec![
        format!("CAST(SQL_VARIANT_PROPERTY({c}, 'BaseType') AS nvarchar(128))"),
        format!("CAST(SQL_VARIANT_PROPERTY({c}, 'Scale') AS tinyint)"),
        value,
    ]
}

fn variant(expr: &str) -> String {
    format!("CAST({expr} AS sql_variant)")
}

/// `CASE scale WHEN 0 THEN ... END` over the scales `0..=max` of `ty`.
fn by_scale(scale: &str, max: u8, build: impl Fn(u8) -> String) -> String {
    let mut out = format!("CASE {scale}");
    for s in 0..=max {
        out.push_str(&format!(" WHEN {s} THEN {}", build(s)));
    }
    out.push_str(" END");
    out
}

/// The value of a sql_variant column from its three staging columns
/// (quoted names: base type, scale, value text).
pub fn rebuild_expr(stage: &[String]) -> String {
    let [t, s, v] = match stage {
        [t, s, v] => [t, s, v],
        _ => return "NULL".into(),
    };
    let mut branches: Vec<(String, String)> = Vec::new();
    for ty in [
        "bit",
        "tinyint",
        "smallint",
        "int",
        "bigint",
        "uniqueidentifier",
        "money",
        "smallmoney",
    ] {
        branches.push((ty.into(), variant(&format!("CAST({v} AS {ty})"))));
    }
    for ty in ["decimal", "numeric"] {
        branches.push((
            ty.into(),
            by_scale(s, 38, |n| variant(&format!("CAST({v} AS {ty}(38,{n}))"))),
        ));
    }
    for ty in ["float", "real", "datetime", "smalldatetime", "date"] {
        let style = if matches!(ty, "float" | "real") { 0 } else { 121 };
        branches.push((ty.into(), variant(&format!("CONVERT({ty}, {v}, {style})"))));
    }
    for ty in ["time", "datetime2", "datetimeoffset"] {
        branches.push((
            ty.into(),
            by_scale(s, 7, |n| variant(&format!("CONVERT({ty}({n}), {v}, 121)"))),
        ));
    }
    for ty in ["varchar", "char"] {
        branches.push((ty.into(), variant(&format!("CAST({v} AS varchar(8000))"))));
    }
    for ty in ["nvarchar", "nchar"] {
        branches.push((ty.into(), variant(&format!("CAST({v} AS nvarchar(4000))"))));
    }
    for ty in ["varbinary", "binary"] {
        branches.push((ty.into(), variant(&format!("CONVERT(varbinary(8000), {v}, 1)"))));
    }
    let mut out = format!("CASE WHEN {t} IS NULL THEN NULL ELSE CASE {t}");
    for (ty, expr) in branches {
        out.push_str(&format!(" WHEN {} THEN {expr}", string(&ty)));
    }
    // Anything else fails the load loudly rather than losing the value.
    out.push_str(&format!(
        " ELSE {} END END",
        variant(&format!("CAST(N'unsupported sql_variant base type ' + {t} AS int)"))
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_three_values_with_exact_styles() {
        let exprs = read_exprs("[v]");
        assert_eq!(exprs.len(), STAGE_TYPES.len());
        assert_eq!(exprs[0], "CAST(SQL_VARIANT_PROPERTY([v], 'BaseType') AS nvarchar(128))");
        assert!(exprs[2].contains("WHEN N'float' THEN CONVERT(nvarchar(max), CAST([v] AS float), 3)"));
        assert!(exprs[2].contains("WHEN N'money' THEN CONVERT(nvarchar(max), CAST([v] AS money), 2)"));
        assert!(exprs[2].contains("WHEN N'datetime2' THEN CONVERT(nvarchar(max), CAST([v] AS datetime2(7)), 121)"));
        assert!(exprs[2].ends_with("ELSE CAST([v] AS nvarchar(max)) END"));
    }

    #[test]
    fn rebuilds_keep_the_base_type_and_scale() {
        let sql = rebuild_expr(&["[t]".into(), "[s]".into(), "[v]".into()]);
        assert!(sql.starts_with("CASE WHEN [t] IS NULL THEN NULL ELSE CASE [t]"));
        assert!(sql.contains("WHEN N'int' THEN CAST(CAST([v] AS int) AS sql_variant)"));
        assert!(sql.contains("WHEN 4 THEN CAST(CAST([v] AS decimal(38,4)) AS sql_variant)"));
        assert!(sql.contains("WHEN 3 THEN CAST(CONVERT(datetime2(3), [v], 121) AS sql_variant)"));
        assert!(sql.contains("WHEN N'varbinary' THEN CAST(CONVERT(varbinary(8000), [v], 1) AS sql_variant)"));
        assert!(sql.ends_with("END END"));
        assert_eq!(rebuild_expr(&["[t]".into()]), "NULL");
    }
}
