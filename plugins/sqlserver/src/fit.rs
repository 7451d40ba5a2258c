//! What of a source database a target server cannot hold, found at
//! precheck (`CheckTarget`) so that an import is refused with the whole
//! list before anything is written, instead of failing halfway through.
//!
//! Babelfish 4.3 has no `hierarchyid`, `geometry` or `geography`, no XML
//! schema collections (so no typed `xml`), no CLR types, and `rowversion`
//! only behind an escape hatch ([`Flavour::unsupported`] decides column by
//! column). A SQL Server target holds everything a SQL Server or Babelfish
//! source can describe.

use dbferry_plugin_abi::protocol::DatabaseSchema;

use crate::detail::{DatabaseDetail, TableDetail};
use crate::error::Result;
use crate::flavour::Flavour;

/// Every object of `schema` that a `target` server cannot hold, each named
/// with what it lacks ([`Flavour::refusals`] over the decoded details).
pub fn unheld(target: Flavour, schema: &DatabaseSchema) -> Result<Vec<String>> {
    let database = DatabaseDetail::from_json(&schema.detail)?;
    let tables = schema
        .tables
        .iter()
        .map(|t| TableDetail::from_json(&t.detail))
        .collect::<Result<Vec<_>>>()?;
    Ok(target.refusals(&database, &tables))
}

#[cfg(test)]
mod tests {
    use dbferry_plugin_abi::protocol::{Detail, TableSchema};

    use super::*;
    use crate::detail::{AliasType, XmlCollection};
    use crate::types::ColumnDetail;

    fn table(schema: &str, name: &str, columns: Vec<ColumnDetail>) -> TableSchema {
        let detail = TableDetail {
            schema: schema.into(),
            name: name.into(),
            columns,
            ..TableDetail::default()
        };
        TableSchema {
            name: format!("{schema}.{name}"),
            detail: Detail::encode(&detail).expect("a table detail encodes"),
            ..TableSchema::default()
        }
    }

    /// A source as SQL Server would describe it: one of each thing
    /// Babelfish lacks, beside columns it holds.
    fn sql_server_source() -> DatabaseSchema {
        let mut typed_xml = ColumnDetail::plain("doc", "xml", -1, 0, 0);
        typed_xml.xml_schema = Some(("dbo".into(), "orders_xsd".into(), true));
        let mut clr = ColumnDetail::plain("money_clr", "money_type", 8000, 0, 0);
        clr.base = "money_type".into();
        let database = DatabaseDetail {
            xml_collections: vec![XmlCollection {
                schema: "dbo".into(),
                name: "orders_xsd".into(),
                definition: "<xsd:schema/>".into(),
            }],
            alias_types: vec![AliasType {
                schema: "dbo".into(),
                name: "place".into(),
                base: "geography".into(),
                nullable: true,
            }],
            ..DatabaseDetail::default()
        };
        DatabaseSchema {
            database: "src".into(),
            tables: vec![
                table(
                    "dbo",
                    "org",
                    vec![
                        ColumnDetail::plain("id", "int", 4, 10, 0),
                        ColumnDetail::plain("node", "hierarchyid", 892, 0, 0),
                        ColumnDetail::plain("name", "nvarchar", -1, 0, 0),
                    ],
                ),
                table(
                    "sales",
                    "shops",
                    vec![
                        ColumnDetail::plain("area", "geometry", -1, 0, 0),
                        ColumnDetail::plain("spot", "geography", -1, 0, 0),
                        ColumnDetail::plain("version", "timestamp", 8, 0, 0),
                        typed_xml,
                        ColumnDetail::plain("plain_doc", "xml", -1, 0, 0),
                        clr,
                    ],
                ),
            ],
            objects: Vec::new(),
            detail: Detail::encode(&database).expect("a database detail encodes"),
        }
    }

    #[test]
    fn babelfish_is_refused_everything_it_lacks_at_once() {
        let found = unheld(Flavour::Babelfish, &sql_server_source()).expect("the details decode");
        assert_eq!(
            found,
            [
                "[dbo].[org].[node]: type hierarchyid",
                "[sales].[shops].[area]: type geometry",
                "[sales].[shops].[spot]: type geography",
                "[sales].[shops].[version]: type rowversion (needs babelfishpg_tsql.escape_hatch_rowversion)",
                "[sales].[shops].[doc]: a typed xml column (XML schema collections)",
                "[sales].[shops].[money_clr]: CLR type money_type",
                "XML schema collection [dbo].[orders_xsd]",
                "alias type [dbo].[place] (of geography)",
            ]
        );
    }

    #[test]
    fn sql_server_holds_all_of_it() {
        let found = unheld(Flavour::SqlServer, &sql_server_source()).expect("the details decode");
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_malformed_detail_is_an_error_not_a_pass() {
        let mut schema = sql_server_source();
        schema.tables[0].detail =
            Detail::encode(&serde_json::json!({"columns": "not a list"})).expect("an object encodes");
        assert!(unheld(Flavour::Babelfish, &schema).is_err());
    }
}
