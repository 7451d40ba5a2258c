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
use crate::quote::ident;
use crate::types::ColumnDetail;

/// The bytes one column contributes to its row's hash.
pub fn column_bytes(column: &ColumnDetail) -> String {
    let c = ident(&column.name);
    let value = match column.base.as_str() {
        // What the copy preserves of a variant: its base type and exact value text.
        // char, nchar and binary variants come back as varchar, nvarchar
        // and varbinary (see `variant`), so those compare as equal.
        "sql_variant" => {
            let exprs = crate::variant::read_exprs(&c);
            format!(
                "CONVERT(varbinary(max), CASE {0} WHEN N'char' THEN N'varchar' WHEN N'nchar' THEN N'nvarchar' \
                 WHEN N'binary' THEN N'varbinary' ELSE {0} END + N'|' + {1})",
                exprs.first().cloned().unwrap_or_default(),
                exprs.last().cloned().unwrap_or_default()
            )
        }
        "text" => format!("CONVERT(varbinary(max), CAST({c} AS varchar(max)))"),
        "ntext" => format!("CONVERT(varbinary(max), CAST({c} AS nvarchar(max)))"),
        // The document as text: the server re-serialises xml identically.
        "xml" => format!("CONVERT(varbinary(max), CAST({c} AS nvarchar(max)))"),
        _ => format!("CONVERT(varbinary(max), {c})"),
    };
    format!("ISNULL(0x01 + CAST(CAST(DATALENGTH({c}) AS bigint) AS binary(8)) + {value}, 0x00)")
}

/// The digest query of a table.
pub fn digest_sql(detail: &TableDetail, database: &str, mode: VerifyMode) -> String {
    let table = detail.three_part(database);
    if mode != VerifyMode::Checksum {
        return format!("SELECT COUNT_BIG(*) FROM {table}");
    }
    let parts: Vec<String> = detail.copied().map(column_bytes).collect();
    let row = if parts.is_empty() {
        "0x".to_string()
    } else {
        parts.join(" + ")
    };
    format!(
        "SELECT COUNT_BIG(*), \
         CAST(ISNULL(SUM(CAST(CAST(SUBSTRING(h, 1, 8) AS bigint) AS decimal(38,0))), 0) AS nvarchar(50)) + N':' + \
         CAST(ISNULL(SUM(CAST(CAST(SUBSTRING(h, 9, 8) AS bigint) AS decimal(38,0))), 0) AS nvarchar(50)) \
         FROM (SELECT HASHBYTES('SHA2_256', {row}) AS h FROM {table}) AS x"
    )
}

/// Computes a table's digest.
pub async fn digest(conn: &mut Conn, request: &DigestRequest) -> Result<Digest> {
    let detail = TableDetail::from_json(&request.table.detail)?;
    let found = rows(conn, &digest_sql(&detail, &request.database, request.mode)).await?;
    let row = found.first();
    Ok(Digest {
        rows: row.map_or(0, |r| u64(r, 0)),
        checksum: (request.mode == VerifyMode::Checksum).then(|| row.map(|r| string(r, 1)).unwrap_or_default()),
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
            digest_sql(&detail(), "d", VerifyMode::Count),
            "SELECT COUNT_BIG(*) FROM [d].[dbo].[t]]]"
        );
    }

    #[test]
    fn checksums_hash_the_copied_columns_order_independently() {
        let sql = digest_sql(&detail(), "d", VerifyMode::Checksum);
        assert!(sql.contains("HASHBYTES('SHA2_256', ISNULL(0x01 + CAST(CAST(DATALENGTH([id]) AS bigint) AS binary(8)) + CONVERT(varbinary(max), [id]), 0x00) + "));
        assert!(sql.contains("CONVERT(varbinary(max), CAST([x] AS nvarchar(max)))"));
        // rowversion and computed columns are not copied, so not compared.
        assert!(!sql.contains("[rv]"));
        assert!(!sql.contains("[c]"));
        assert!(sql.contains("SUM(CAST(CAST(SUBSTRING(h, 1, 8) AS bigint) AS decimal(38,0)))"));
    }
}
