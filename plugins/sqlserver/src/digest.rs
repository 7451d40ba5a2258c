//! Table digests: `COUNT_BIG(*)`, and an order-independent content hash:
//! the SHA-256 of every row's copied values (each length-prefixed, NULL
//! marked), summed as two 64-bit halves. Identical rows give identical
//! sums whatever their order; unlike `CHECKSUM_AGG(BINARY_CHECKSUM(*))`
//! duplicates do not cancel out and collisions are negligible.

use dbferry_plugin_abi::protocol::{Digest, DigestRequest, VerifyMode};

use crate::cell::{string, u64};
use crate::conn::{rows, Conn};
use crate::detail::TableDetail;
use crate::error::Result;
use crate::flavour::Flavour;
use crate::quote::ident;
use crate::types::ColumnDetail;

/// The bytes one column contributes to its row's hash on SQL Server.
pub fn column_bytes(column: &ColumnDetail) -> String {
    let c = ident(&column.name);
    let value = match column.base.as_str() {
        "sql_variant" => format!("CONVERT(varbinary(max), {})", variant_text(&c)),
        "text" => format!("CONVERT(varbinary(max), CAST({c} AS varchar(max)))"),
        "ntext" => format!("CONVERT(varbinary(max), CAST({c} AS nvarchar(max)))"),
        // The document as text: the server re-serialises xml identically.
        "xml" => format!("CONVERT(varbinary(max), CAST({c} AS nvarchar(max)))"),
        // The same single byte SQL Server gives for a bit; Babelfish
        // cannot cast bit to varbinary.
        "bit" => format!("CONVERT(varbinary(max), CAST({c} AS tinyint))"),
        _ => format!("CONVERT(varbinary(max), {c})"),
    };
    format!("ISNULL(0x01 + CAST(CAST(DATALENGTH({c}) AS bigint) AS binary(8)) + {value}, 0x00)")
}

/// What the copy preserves of a variant: its base type and exact value
/// text. char, nchar and binary variants come back as varchar, nvarchar
/// and varbinary (see `variant`), so those compare as equal.
fn variant_text(c: &str) -> String {
    let exprs = crate::variant::read_exprs(c);
    format!(
        "CASE {0} WHEN N'char' THEN N'varchar' WHEN N'nchar' THEN N'nvarchar' \
         WHEN N'binary' THEN N'varbinary' ELSE {0} END + N'|' + {1}",
        exprs.first().cloned().unwrap_or_default(),
        exprs.last().cloned().unwrap_or_default()
    )
}

/// The text one column contributes to its row's hash on Babelfish, where
/// `+` between varbinary values adds them as numbers, decimal and date/time
/// values cannot be cast to varbinary and binaries cannot be printed as
/// hex: each value's text (floats in their exact style 3, binaries as the
/// four 64-bit words of their SHA-256), length-prefixed, NULL marked.
///
/// char and nchar values hash without their trailing spaces, as T-SQL
/// compares them: Babelfish pads a literal to n bytes of UTF-8 but a
/// converted value to n characters, so the same value, copied, can differ
/// only in padding.
pub fn column_text(column: &ColumnDetail) -> String {
    let c = ident(&column.name);
    if column.base == "sql_variant" {
        // Babelfish's DATALENGTH of a variant follows how it was made (an
        // nvarchar variant cast from a literal and from a typed value
        // differ), so the length is the text's.
        let t = variant_text(&c);
        return format!("ISNULL(N'<' + CAST(DATALENGTH({t}) AS nvarchar(20)) + N'>' + {t}, N'~')");
    }
    if matches!(column.base.as_str(), "char" | "nchar") {
        let t = format!("RTRIM(CAST({c} AS nvarchar(max)))");
        return format!("ISNULL(N'<' + CAST(DATALENGTH({t}) AS nvarchar(20)) + N'>' + {t}, N'~')");
    }
    let value = match column.base.as_str() {
        "binary" | "varbinary" | "image" => {
            let h = format!("HASHBYTES('SHA2_256', CAST({c} AS varbinary(max)))");
            (0..4)
                .map(|i| format!("CAST(CAST(SUBSTRING({h}, {}, 8) AS bigint) AS nvarchar(20))", i * 8 + 1))
                .collect::<Vec<_>>()
                .join(" + N'.' + ")
        }
        "float" | "real" => format!("CONVERT(nvarchar(max), {c}, 3)"),
        "text" => format!("CAST(CAST({c} AS varchar(max)) AS nvarchar(max))"),
        _ => format!("CAST({c} AS nvarchar(max))"),
    };
    format!("ISNULL(N'<' + CAST(DATALENGTH({c}) AS nvarchar(20)) + N'>' + {value}, N'~')")
}

/// The digest query of a table.
pub fn digest_sql(detail: &TableDetail, database: &str, mode: VerifyMode, flavour: Flavour) -> String {
    let table = detail.three_part(database);
    if mode != VerifyMode::Checksum {
        return format!("SELECT COUNT_BIG(*) FROM {table}");
    }
    let row = match flavour {
        Flavour::SqlServer => {
            let parts: Vec<String> = detail.copied().map(column_bytes).collect();
            if parts.is_empty() {
                "0x".to_string()
            } else {
                parts.join(" + ")
            }
        }
        Flavour::Babelfish => {
            let parts: Vec<String> = detail.copied().map(column_text).collect();
            if parts.is_empty() {
                "N''".to_string()
            } else {
                parts.join(" + ")
            }
        }
    };
    // Babelfish reads 8 bytes as unsigned and refuses the cast to bigint
    // past 2^63, so it sums 7-byte pieces.
    let (width, second) = match flavour {
        Flavour::SqlServer => (8, 9),
        Flavour::Babelfish => (7, 8),
    };
    format!(
        "SELECT COUNT_BIG(*), \
         CAST(ISNULL(SUM(CAST(CAST(SUBSTRING(h, 1, {width}) AS bigint) AS decimal(38,0))), 0) AS nvarchar(50)) + N':' + \
         CAST(ISNULL(SUM(CAST(CAST(SUBSTRING(h, {second}, {width}) AS bigint) AS decimal(38,0))), 0) AS nvarchar(50)) \
         FROM (SELECT HASHBYTES('SHA2_256', {row}) AS h FROM {table}) AS x"
    )
}

/// Computes a table's digest. A Babelfish checksum starts with
/// `babelfish:`, so it never equals a SQL Server one by accident: the two
/// hash different forms of the same values.
pub async fn digest(conn: &mut Conn, request: &DigestRequest, flavour: Flavour) -> Result<Digest> {
    let detail = TableDetail::from_json(&request.table.detail)?;
    let found = rows(conn, &digest_sql(&detail, &request.database, request.mode, flavour)).await?;
    let row = found.first();
    let prefix = match flavour {
        Flavour::SqlServer => "",
        Flavour::Babelfish => "babelfish:",
    };
    Ok(Digest {
        rows: row.map_or(0, |r| u64(r, 0)),
        checksum: (request.mode == VerifyMode::Checksum)
            .then(|| format!("{prefix}{}", row.map(|r| string(r, 1)).unwrap_or_default())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail() -> TableDetail {
        let mut computed = ColumnDetail::plain("c", "int", 4, 10, 0);
        computed.computed = Some(crate::types::Computed {
            definition: "(1)".into(),
            persisted: false,
        });
        TableDetail {
            schema: "dbo".into(),
            name: "t]".into(),
            columns: vec![
                ColumnDetail::plain("id", "int", 4, 10, 0),
                ColumnDetail::plain("x", "xml", -1, 0, 0),
                ColumnDetail::plain("rv", "timestamp", 8, 0, 0),
                computed,
            ],
            ..TableDetail::default()
        }
    }

    #[test]
    fn counts_only_when_no_checksum_is_asked() {
        assert_eq!(
            digest_sql(&detail(), "d", VerifyMode::Count, Flavour::SqlServer),
            "SELECT COUNT_BIG(*) FROM [d].[dbo].[t]]]"
        );
    }

    #[test]
    fn checksums_hash_the_copied_columns_order_independently() {
        let sql = digest_sql(&detail(), "d", VerifyMode::Checksum, Flavour::SqlServer);
        assert!(sql.contains("HASHBYTES('SHA2_256', ISNULL(0x01 + CAST(CAST(DATALENGTH([id]) AS bigint) AS binary(8)) + CONVERT(varbinary(max), [id]), 0x00) + "));
        assert!(sql.contains("CONVERT(varbinary(max), CAST([x] AS nvarchar(max)))"));
        // rowversion and computed columns are not copied, so not compared.
        assert!(!sql.contains("[rv]"));
        assert!(!sql.contains("[c]"));
        assert!(sql.contains("SUM(CAST(CAST(SUBSTRING(h, 1, 8) AS bigint) AS decimal(38,0)))"));
    }

    #[test]
    fn babelfish_hashes_char_values_without_their_padding() {
        let padded = column_text(&ColumnDetail::plain("n", "nchar", 10, 0, 0));
        assert_eq!(
            padded,
            "ISNULL(N'<' + CAST(DATALENGTH(RTRIM(CAST([n] AS nvarchar(max)))) AS nvarchar(20)) + N'>' + RTRIM(CAST([n] AS nvarchar(max))), N'~')"
        );
        // Other text keeps its trailing spaces.
        assert!(!column_text(&ColumnDetail::plain("v", "nvarchar", 10, 0, 0)).contains("RTRIM"));
    }
}
