//! Column types: the DDL text of a column's type, and how its values travel.
//!
//! Every copied column is read with an expression tiberius decodes exactly
//! (its *transport* form), bulk-loaded into a staging table column of the
//! transport type, and converted back into the real column by the server:
//!
//! | source type | transport | back |
//! | --- | --- | --- |
//! | bit, tinyint, smallint, int, bigint, real, float | itself | implicit |
//! | decimal/numeric(p,s) | itself | implicit |
//! | money, smallmoney | `decimal(19,4)`, `decimal(10,4)` (exact) | implicit |
//! | date, datetime | itself (raw TDS values) | implicit |
//! | time(n), datetime2(n), datetimeoffset(n) | the same type at scale 7 (exact) | implicit |
//! | smalldatetime | `datetime` (exact) | implicit |
//! | char, varchar(n/max), text | `nvarchar(max)` (the server converts; lossless for every character of the column's code page) | implicit / `varchar(max)` for text |
//! | nchar, nvarchar(n/max), ntext | `nvarchar(max)` | implicit |
//! | xml | `nvarchar(max)` (the document as text) | implicit |
//! | binary, varbinary(n/max), image | `varbinary` | implicit |
//! | uniqueidentifier | itself | implicit |
//! | hierarchyid, geometry, geography | `varbinary(max)`, their native serialisation | `CAST(... AS type)` |
//! | sql_variant | base type, scale and the value as exact text | see [`crate::variant`] |
//! | rowversion/timestamp | not copied: the target assigns new values | — |
//! | computed columns | not copied: the target recomputes them | — |

use serde::{Deserialize, Serialize};

use crate::quote::{ident, two_part};

/// How a column's values travel between reader and writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// bit.
    Bit,
    /// tinyint.
    TinyInt,
    /// smallint.
    SmallInt,
    /// int.
    Int,
    /// bigint.
    BigInt,
    /// real.
    Real,
    /// float.
    Float,
    /// decimal(p,s), also money as decimal(19,4) and smallmoney as decimal(10,4).
    Decimal {
        /// Precision.
        precision: u8,
        /// Scale.
        scale: u8,
    },
    /// date.
    Date,
    /// time(scale).
    Time {
        /// Fractional digits.
        scale: u8,
    },
    /// datetime.
    DateTime,
    /// smalldatetime.
    SmallDateTime,
    /// datetime2(scale).
    DateTime2 {
        /// Fractional digits.
        scale: u8,
    },
    /// datetimeoffset(scale).
    DateTimeOffset {
        /// Fractional digits.
        scale: u8,
    },
    /// Unicode text; `None` is nvarchar(max).
    Text {
        /// Characters, at most 4000.
        chars: Option<u16>,
    },
    /// Bytes; `None` is varbinary(max).
    Bytes {
        /// Bytes, at most 8000.
        len: Option<u16>,
    },
    /// uniqueidentifier.
    Guid,
    /// sql_variant, travelling as three values (see [`crate::variant`]).
    Variant,
    /// Not copied (rowversion, computed columns).
    Skip,
}

impl Transport {
    /// The staging column type(s).
    pub fn stage_types(self) -> Vec<String> {
        vec![match self {
            Transport::Bit => "bit".into(),
            Transport::TinyInt => "tinyint".into(),
            Transport::SmallInt => "smallint".into(),
            Transport::Int => "int".into(),
            Transport::BigInt => "bigint".into(),
            Transport::Real => "real".into(),
            Transport::Float => "float".into(),
            Transport::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Transport::Date => "date".into(),
            Transport::Time { scale } => format!("time({scale})"),
            Transport::DateTime => "datetime".into(),
            Transport::SmallDateTime => "smalldatetime".into(),
            Transport::DateTime2 { scale } => format!("datetime2({scale})"),
            Transport::DateTimeOffset { scale } => format!("datetimeoffset({scale})"),
            // Always (max): tiberius declares `INSERT BULK` column types
            // from the staging table's metadata and prints nvarchar lengths
            // in bytes, so only (max) declares exactly what the table holds.
            Transport::Text { .. } => "nvarchar(max)".into(),
            Transport::Bytes { len: Some(n) } => format!("varbinary({n})"),
            Transport::Bytes { len: None } => "varbinary(max)".into(),
            Transport::Guid => "uniqueidentifier".into(),
            Transport::Variant => return crate::variant::STAGE_TYPES.iter().map(|t| t.to_string()).collect(),
            Transport::Skip => return Vec::new(),
        }]
    }

    /// How many values a row carries for a column of this transport.
    pub fn width(self) -> usize {
        match self {
            Transport::Variant => crate::variant::STAGE_TYPES.len(),
            Transport::Skip => 0,
            _ => 1,
        }
    }
}

/// IDENTITY of a column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Seed, as exact decimal text.
    pub seed: String,
    /// Increment, as exact decimal text.
    pub increment: String,
    /// The source's current value (`last_value`), `None` when no row was ever inserted.
    pub last_value: Option<String>,
    /// NOT FOR REPLICATION.
    pub not_for_replication: bool,
}

/// A computed column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Computed {
    /// Its expression as the catalogue keeps it (with parentheses).
    pub definition: String,
    /// PERSISTED.
    pub persisted: bool,
}

/// A named default constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultConstraint {
    /// Constraint name.
    pub name: String,
    /// Expression as the catalogue keeps it (with parentheses).
    pub definition: String,
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDetail {
    /// Name.
    pub name: String,
    /// The system type (`nvarchar`, `decimal`, `geometry`, ...), lower case.
    pub base: String,
    /// An alias type's `schema.name`, when the column uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<(String, String)>,
    /// `sys.columns.max_length` (bytes; -1 for (max)).
    pub max_length: i16,
    /// Precision.
    pub precision: u8,
    /// Scale.
    pub scale: u8,
    /// Collation of character columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// NULL allowed.
    pub nullable: bool,
    /// IDENTITY, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Computed column, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<Computed>,
    /// Default constraint, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<DefaultConstraint>,
    /// ROWGUIDCOL.
    #[serde(default)]
    pub rowguidcol: bool,
    /// SPARSE.
    #[serde(default)]
    pub sparse: bool,
    /// Typed xml: the schema collection as (schema, name) and DOCUMENT vs CONTENT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml_schema: Option<(String, String, bool)>,
}

impl ColumnDetail {
    /// A plain column of system type `base` (tests and simple callers).
    pub fn plain(name: &str, base: &str, max_length: i16, precision: u8, scale: u8) -> Self {
        Self {
            name: name.into(),
            base: base.to_ascii_lowercase(),
            alias: None,
            max_length,
            precision,
            scale,
            collation: None,
            nullable: true,
            identity: None,
            computed: None,
            default: None,
            rowguidcol: false,
            sparse: false,
            xml_schema: None,
        }
    }

    /// The type as DDL writes it: `nvarchar(50)`, `decimal(18,2)`, `varbinary(max)`,
    /// `[dbo].[Phone]` for an alias type, `xml(CONTENT [s].[c])`.
    pub fn type_sql(&self) -> String {
        if let Some((schema, name)) = &self.alias {
            return two_part(schema, name);
        }
        let len = |unit: i16| {
            if self.max_length < 0 {
                "max".to_string()
            } else {
                (self.max_length / unit).to_string()
            }
        };
        match self.base.as_str() {
            "char" | "varchar" | "binary" | "varbinary" => format!("{}({})", self.base, len(1)),
            "nchar" | "nvarchar" => format!("{}({})", self.base, len(2)),
            "decimal" | "numeric" => format!("{}({},{})", self.base, self.precision, self.scale),
            "time" | "datetime2" | "datetimeoffset" => format!("{}({})", self.base, self.scale),
            "float" => format!("float({})", self.precision),
            "xml" => match &self.xml_schema {
                Some((schema, name, document)) => format!(
                    "xml({} {})",
                    if *document { "DOCUMENT" } else { "CONTENT" },
                    two_part(schema, name)
                ),
                None => "xml".into(),
            },
            "timestamp" | "rowversion" => "rowversion".into(),
            other => other.to_string(),
        }
    }

    /// How its values travel.
    pub fn transport(&self) -> Transport {
        if self.computed.is_some() {
            return Transport::Skip;
        }
        let chars = |unit: i16| {
            if self.max_length < 0 || self.max_length / unit > 4000 {
                None
            } else {
                Some((self.max_length / unit).max(1) as u16)
            }
        };
        match self.base.as_str() {
            "bit" => Transport::Bit,
            "tinyint" => Transport::TinyInt,
            "smallint" => Transport::SmallInt,
            "int" => Transport::Int,
            "bigint" => Transport::BigInt,
            "real" => Transport::Real,
            "float" => {
                if self.precision > 0 && self.precision <= 24 {
                    Transport::Real
                } else {
                    Transport::Float
                }
            }
            "decimal" | "numeric" => Transport::Decimal {
                precision: self.precision,
                scale: self.scale,
            },
            "money" => Transport::Decimal {
                precision: 19,
                scale: 4,
            },
            "smallmoney" => Transport::Decimal {
                precision: 10,
                scale: 4,
            },
            "date" => Transport::Date,
            // Read at scale 7 (exact: a value of scale s has trailing zeros
            // at 7): tiberius declares time and datetimeoffset staging
            // columns without a scale, which means 7.
            "time" => Transport::Time { scale: 7 },
            "datetime" => Transport::DateTime,
            // A smalldatetime is an exact datetime; tiberius declares
            // nullable smalldatetime staging columns as datetime.
            "smalldatetime" => Transport::DateTime,
            "datetime2" => Transport::DateTime2 { scale: 7 },
            "datetimeoffset" => Transport::DateTimeOffset { scale: 7 },
            "char" | "varchar" => Transport::Text { chars: chars(1) },
            "nchar" | "nvarchar" => Transport::Text { chars: chars(2) },
            "text" | "ntext" | "xml" => Transport::Text { chars: None },
            "binary" | "varbinary" => Transport::Bytes {
                len: if self.max_length < 0 {
                    None
                } else {
                    Some(self.max_length.max(1) as u16)
                },
            },
            "image" | "hierarchyid" | "geometry" | "geography" => Transport::Bytes { len: None },
            "uniqueidentifier" => Transport::Guid,
            "sql_variant" => Transport::Variant,
            "timestamp" | "rowversion" => Transport::Skip,
            // Unknown (CLR user types): their binary serialisation.
            _ => Transport::Bytes { len: None },
        }
    }

    /// Whether the copy carries this column's values.
    pub fn copied(&self) -> bool {
        self.transport() != Transport::Skip
    }

    /// The SELECT expression(s) that read the column in its transport form.
    pub fn read_exprs(&self) -> Vec<String> {
        let c = ident(&self.name);
        let transport = self.transport();
        match (self.base.as_str(), transport) {
            (_, Transport::Skip) => Vec::new(),
            (_, Transport::Variant) => crate::variant::read_exprs(&c),
            ("money", _) => vec![format!("CAST({c} AS decimal(19,4))")],
            ("time" | "datetime2" | "datetimeoffset", _) => vec![format!("CAST({c} AS {}(7))", self.base)],
            ("smalldatetime", _) => vec![format!("CAST({c} AS datetime)")],
            ("smallmoney", _) => vec![format!("CAST({c} AS decimal(10,4))")],
            ("text", _) => vec![format!("CAST(CAST({c} AS varchar(max)) AS nvarchar(max))")],
            ("char" | "varchar" | "nchar" | "nvarchar" | "ntext" | "xml", Transport::Text { chars }) => {
                vec![match chars {
                    Some(n) => format!("CAST({c} AS nvarchar({n}))"),
                    None => format!("CAST({c} AS nvarchar(max))"),
                }]
            }
            ("image" | "hierarchyid" | "geometry" | "geography", _) => vec![format!("CAST({c} AS varbinary(max))")],
            ("binary" | "varbinary", _) => vec![c],
            (_, Transport::Bytes { .. }) => vec![format!("CAST({c} AS varbinary(max))")],
            _ => vec![c],
        }
    }

    /// The expression that turns the staging column(s) `stage` (already
    /// quoted, one per transport value) into the column's value.
    pub fn rebuild_expr(&self, stage: &[String]) -> String {
        let first = stage.first().cloned().unwrap_or_else(|| "NULL".into());
        match self.base.as_str() {
            "hierarchyid" | "geometry" | "geography" => format!("CAST({first} AS {})", self.base),
            "text" => format!("CAST({first} AS varchar(max))"),
            "sql_variant" => crate::variant::rebuild_expr(stage),
            _ if self.alias.is_none() && !crate::types::is_system_type(&self.base) => {
                // A CLR user type: back from its serialisation.
                format!("CAST({first} AS {})", self.type_sql())
            }
            _ => first,
        }
    }
}

/// Whether `name` is a system type this module knows.
pub fn is_system_type(name: &str) -> bool {
    matches!(
        name,
        "bit"
            | "tinyint"
            | "smallint"
            | "int"
            | "bigint"
            | "real"
            | "float"
            | "decimal"
            | "numeric"
            | "money"
            | "smallmoney"
            | "date"
            | "time"
            | "datetime"
            | "smalldatetime"
            | "datetime2"
            | "datetimeoffset"
            | "char"
            | "varchar"
            | "text"
            | "nchar"
            | "nvarchar"
            | "ntext"
            | "xml"
            | "binary"
            | "varbinary"
            | "image"
            | "uniqueidentifier"
            | "sql_variant"
            | "timestamp"
            | "rowversion"
            | "hierarchyid"
            | "geometry"
            | "geography"
            | "sysname"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(base: &str, max_length: i16, precision: u8, scale: u8) -> ColumnDetail {
        ColumnDetail::plain("c", base, max_length, precision, scale)
    }

    #[test]
    fn every_type_has_its_ddl_text() {
        let cases = [
            (col("bit", 1, 1, 0), "bit"),
            (col("tinyint", 1, 3, 0), "tinyint"),
            (col("smallint", 2, 5, 0), "smallint"),
            (col("int", 4, 10, 0), "int"),
            (col("bigint", 8, 19, 0), "bigint"),
            (col("decimal", 17, 38, 10), "decimal(38,10)"),
            (col("numeric", 9, 18, 2), "numeric(18,2)"),
            (col("money", 8, 19, 4), "money"),
            (col("smallmoney", 4, 10, 4), "smallmoney"),
            (col("real", 4, 24, 0), "real"),
            (col("float", 8, 53, 0), "float(53)"),
            (col("date", 3, 10, 0), "date"),
            (col("time", 5, 16, 7), "time(7)"),
            (col("datetime", 8, 23, 3), "datetime"),
            (col("datetime2", 8, 27, 7), "datetime2(7)"),
            (col("datetimeoffset", 10, 34, 7), "datetimeoffset(7)"),
            (col("smalldatetime", 4, 16, 0), "smalldatetime"),
            (col("char", 10, 0, 0), "char(10)"),
            (col("varchar", -1, 0, 0), "varchar(max)"),
            (col("varchar", 8000, 0, 0), "varchar(8000)"),
            (col("nchar", 20, 0, 0), "nchar(10)"),
            (col("nvarchar", -1, 0, 0), "nvarchar(max)"),
            (col("nvarchar", 8000, 0, 0), "nvarchar(4000)"),
            (col("text", 16, 0, 0), "text"),
            (col("ntext", 16, 0, 0), "ntext"),
            (col("image", 16, 0, 0), "image"),
            (col("binary", 16, 0, 0), "binary(16)"),
            (col("varbinary", -1, 0, 0), "varbinary(max)"),
            (col("uniqueidentifier", 16, 0, 0), "uniqueidentifier"),
            (col("xml", -1, 0, 0), "xml"),
            (col("timestamp", 8, 0, 0), "rowversion"),
            (col("sql_variant", 8016, 0, 0), "sql_variant"),
            (col("hierarchyid", 892, 0, 0), "hierarchyid"),
            (col("geometry", -1, 0, 0), "geometry"),
            (col("geography", -1, 0, 0), "geography"),
        ];
        for (column, ddl) in cases {
            assert_eq!(column.type_sql(), ddl, "{}", column.base);
        }
        let mut typed = col("xml", -1, 0, 0);
        typed.xml_schema = Some(("s".into(), "c]".into(), true));
        assert_eq!(typed.type_sql(), "xml(DOCUMENT [s].[c]]])");
        let mut alias = col("varchar", 20, 0, 0);
        alias.alias = Some(("dbo".into(), "Phone".into()));
        assert_eq!(alias.type_sql(), "[dbo].[Phone]");
    }

    #[test]
    fn transports_and_read_expressions() {
        assert_eq!(col("money", 8, 19, 4).read_exprs(), ["CAST([c] AS decimal(19,4))"]);
        assert_eq!(
            col("money", 8, 19, 4).transport(),
            Transport::Decimal {
                precision: 19,
                scale: 4
            }
        );
        assert_eq!(col("varchar", 8000, 0, 0).transport(), Transport::Text { chars: None });
        assert_eq!(col("varchar", 100, 0, 0).read_exprs(), ["CAST([c] AS nvarchar(100))"]);
        assert_eq!(
            col("nvarchar", 200, 0, 0).transport(),
            Transport::Text { chars: Some(100) }
        );
        assert_eq!(
            col("text", 16, 0, 0).read_exprs(),
            ["CAST(CAST([c] AS varchar(max)) AS nvarchar(max))"]
        );
        assert_eq!(col("xml", -1, 0, 0).read_exprs(), ["CAST([c] AS nvarchar(max))"]);
        assert_eq!(col("geography", -1, 0, 0).read_exprs(), ["CAST([c] AS varbinary(max))"]);
        assert_eq!(col("binary", 16, 0, 0).read_exprs(), ["[c]"]);
        assert_eq!(col("int", 4, 10, 0).read_exprs(), ["[c]"]);
        assert!(col("timestamp", 8, 0, 0).read_exprs().is_empty());
        assert!(!col("timestamp", 8, 0, 0).copied());
        let mut computed = col("int", 4, 10, 0);
        computed.computed = Some(Computed {
            definition: "([a]+(1))".into(),
            persisted: true,
        });
        assert!(!computed.copied());
        assert_eq!(col("float", 4, 24, 0).transport(), Transport::Real);
        assert_eq!(
            col("sql_variant", 8016, 0, 0).read_exprs().len(),
            Transport::Variant.width()
        );
    }

    #[test]
    fn staging_types_and_rebuilds() {
        assert_eq!(Transport::Text { chars: None }.stage_types(), ["nvarchar(max)"]);
        assert_eq!(Transport::Text { chars: Some(10) }.stage_types(), ["nvarchar(max)"]);
        assert_eq!(col("time", 5, 12, 3).transport(), Transport::Time { scale: 7 });
        assert_eq!(col("time", 5, 12, 3).read_exprs(), ["CAST([c] AS time(7))"]);
        assert_eq!(
            col("datetimeoffset", 10, 30, 3).read_exprs(),
            ["CAST([c] AS datetimeoffset(7))"]
        );
        assert_eq!(col("smalldatetime", 4, 16, 0).transport(), Transport::DateTime);
        assert_eq!(col("smalldatetime", 4, 16, 0).read_exprs(), ["CAST([c] AS datetime)"]);
        assert_eq!(
            Transport::Decimal {
                precision: 38,
                scale: 0
            }
            .stage_types(),
            ["decimal(38,0)"]
        );
        assert!(Transport::Skip.stage_types().is_empty());
        let stage = vec!["[c0]".to_string()];
        assert_eq!(col("geometry", -1, 0, 0).rebuild_expr(&stage), "CAST([c0] AS geometry)");
        assert_eq!(col("text", 16, 0, 0).rebuild_expr(&stage), "CAST([c0] AS varchar(max))");
        assert_eq!(col("varchar", 10, 0, 0).rebuild_expr(&stage), "[c0]");
    }
}
