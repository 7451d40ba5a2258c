//! The engine-private `detail` JSON that travels from the source session to
//! the target session inside `DatabaseSchema` and `TableSchema`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use dbferry_plugin_abi::protocol::Detail;
use serde::{Deserialize, Serialize};

use crate::conn::ServerFacts;
use crate::error::{Error, Result};
use crate::quote::ident;

/// `DatabaseSchema::detail`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DatabaseDetail {
    /// The source server, e.g. `MariaDB 10.11.6`.
    pub server: String,
    /// The source's global `sql_mode`, used for table DDL.
    pub sql_mode: String,
    /// The database's default character set and collation.
    pub charset: String,
    /// Default collation.
    pub collation: String,
    /// Stored functions and procedures.
    pub routines: Vec<ObjectDdl>,
    /// Views, in the source's name order (created in dependency order).
    pub views: Vec<ObjectDdl>,
    /// Triggers, per table in firing order.
    pub triggers: Vec<ObjectDdl>,
    /// Events.
    pub events: Vec<ObjectDdl>,
    /// MariaDB sequences, created before the tables (a column default may
    /// call `NEXTVAL` on one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequences: Vec<SequenceDdl>,
}

/// A MariaDB `SEQUENCE`: its definition and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceDdl {
    /// Its name.
    pub name: String,
    /// `SHOW CREATE SEQUENCE` text.
    pub create: String,
    /// `next_not_cached_value`: the first value the source has neither
    /// handed out nor cached, where the source itself goes on after a
    /// restart. The target's next value.
    pub next: String,
    /// `cycle_count`: how often a cycling sequence has wrapped.
    pub round: String,
}

/// Kinds of non-table objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DdlKind {
    /// A view.
    View,
    /// A stored function.
    Function,
    /// A stored procedure.
    Procedure,
    /// A trigger.
    Trigger,
    /// An event.
    Event,
}

impl DdlKind {
    /// The SQL keyword (`VIEW`, `FUNCTION`, ...).
    pub fn keyword(self) -> &'static str {
        match self {
            DdlKind::View => "VIEW",
            DdlKind::Function => "FUNCTION",
            DdlKind::Procedure => "PROCEDURE",
            DdlKind::Trigger => "TRIGGER",
            DdlKind::Event => "EVENT",
        }
    }
}

/// The DDL of a view, routine, trigger or event, with the session settings
/// it was created under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectDdl {
    /// What it is.
    pub kind: DdlKind,
    /// Its name.
    pub name: String,
    /// The table of a trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// `SHOW CREATE ...` text.
    pub create: String,
    /// Its `sql_mode`.
    pub sql_mode: String,
    /// Its `character_set_client`.
    pub character_set_client: String,
    /// Its `collation_connection`.
    pub collation_connection: String,
    /// The time zone of an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// How a column's values are read and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// Signed integer.
    Int,
    /// Unsigned integer.
    UInt,
    /// BIT(n): read as `col+0`, loaded through `CAST(@v AS UNSIGNED)`.
    Bit,
    /// FLOAT: read as a DOUBLE so all digits survive.
    Float,
    /// DOUBLE, DECIMAL, YEAR: exact numeric text.
    Number,
    /// Character data with a charset and collation (also ENUM and SET).
    Text,
    /// Binary strings and BLOBs.
    Binary,
    /// DATE, TIME, DATETIME, TIMESTAMP.
    Temporal,
    /// JSON (MySQL's binary JSON; MariaDB's is text).
    Json,
    /// Spatial types, read and loaded as the server's internal bytes.
    Spatial,
}

impl ValueKind {
    /// Classifies `information_schema.COLUMNS.DATA_TYPE` / `COLUMN_TYPE`.
    pub fn of(data_type: &str, column_type: &str) -> Self {
        let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => {
                if unsigned {
                    ValueKind::UInt
                } else {
                    ValueKind::Int
                }
            }
            "bit" => ValueKind::Bit,
            "float" => ValueKind::Float,
            "double" | "real" | "decimal" | "numeric" | "year" | "double precision" => ValueKind::Number,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => ValueKind::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ValueKind::Binary,
            "date" | "time" | "datetime" | "timestamp" => ValueKind::Temporal,
            "json" => ValueKind::Json,
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
            | "geometrycollection" | "geomcollection" => ValueKind::Spatial,
            // Anything else (MariaDB's inet6, uuid...) reads and loads as text.
            _ => ValueKind::Text,
        }
    }
}

// A table's detail crosses the plugin boundary and the state store several
// times; leaving out what is false or empty (most of it) makes it a fifth
// smaller.
fn is_false(value: &bool) -> bool {
    !value
}

/// One column.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnDetail {
    /// Name.
    pub name: String,
    /// `DATA_TYPE`.
    pub data_type: String,
    /// `COLUMN_TYPE`.
    pub column_type: String,
    /// How values are read and compared.
    pub kind: ValueKind,
    /// NULL allowed.
    pub nullable: bool,
    /// Character set of character columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    /// Collation of character columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// A generated column: not copied, the target recomputes it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub generated: bool,
    /// An invisible column: copied, always named explicitly.
    #[serde(default, skip_serializing_if = "is_false")]
    pub invisible: bool,
    /// The SELECT expression on the source.
    pub read: String,
}

/// A part of a table created after its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    /// The index or constraint name.
    pub name: String,
    /// The definition as `SHOW CREATE TABLE` prints it (no trailing comma).
    pub definition: String,
    /// A FULLTEXT index (InnoDB adds those one per statement).
    #[serde(default, skip_serializing_if = "is_false")]
    pub fulltext: bool,
}

/// `TableSchema::detail`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TableDetail {
    /// `SHOW CREATE TABLE` as the source prints it.
    pub create: String,
    /// The same without the deferred indexes and foreign keys.
    pub create_base: String,
    /// Secondary indexes added after the data.
    pub deferred_indexes: Vec<Deferred>,
    /// Foreign keys added after the data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_foreign_keys: Vec<Deferred>,
    /// Every column in table order, generated ones included.
    pub columns: Vec<ColumnDetail>,
    /// The chunking key's index (`PRIMARY` or a NOT NULL unique key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_index: Option<String>,
    /// The engine (`InnoDB`, ...).
    pub engine: String,
}

/// Decoded details by [`Detail::identity`], each with its detail held so
/// that the identity stays its own.
type DetailMap = HashMap<usize, (Detail, Arc<TableDetail>), foldhash::fast::RandomState>;

/// Decoded table details, so that a session decodes a table's detail once,
/// not on each of the requests that name it (create, read, write, digest,
/// finish): on 1,000 small tables decoding was a seventh of the host's
/// instructions. Keyed by identity, not text: the session keeps each detail
/// the host sends it (see `dbferry_plugin_abi::detail`), so every request
/// hands back the same one, and hashing and comparing kilobytes of text per
/// request cost more than the lookup should.
#[derive(Debug, Default)]
pub struct DetailCache {
    decoded: Mutex<DetailMap>,
}

impl DetailCache {
    /// Most details kept; past it the cache starts over, so that its memory
    /// stays bounded whatever the number of tables.
    const CAPACITY: usize = 4096;

    fn lock(&self) -> std::sync::MutexGuard<'_, DetailMap> {
        // Every insert leaves the map consistent.
        self.decoded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The decoded `detail` of a table.
    pub fn table(&self, detail: &Detail) -> Result<Arc<TableDetail>> {
        if let Some((_, found)) = self.lock().get(&detail.identity()) {
            return Ok(Arc::clone(found));
        }
        let decoded = Arc::new(TableDetail::from_json(detail)?);
        self.insert(detail, Arc::clone(&decoded));
        Ok(decoded)
    }

    /// Keeps a detail this session made (describing the source), which its
    /// readers will be handed back.
    pub fn remember(&self, detail: &Detail, decoded: TableDetail) {
        self.insert(detail, Arc::new(decoded));
    }

    fn insert(&self, detail: &Detail, decoded: Arc<TableDetail>) {
        let mut cache = self.lock();
        if cache.len() >= Self::CAPACITY {
            cache.clear();
        }
        cache.insert(detail.identity(), (detail.clone(), decoded));
    }
}

impl TableDetail {
    /// Decodes a table's detail.
    pub fn from_json(detail: &Detail) -> Result<Self> {
        detail
            .decode()
            .map_err(|e| Error::Invalid(format!("malformed table detail: {e}")))
    }

    /// The columns copied (all but generated ones), in table order.
    pub fn copied(&self) -> impl Iterator<Item = &ColumnDetail> {
        self.columns.iter().filter(|c| !c.generated)
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Result<&ColumnDetail> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::Invalid(format!("no column {} in the table detail", ident(name))))
    }

    /// The SELECT list of the copied columns.
    pub fn select_list(&self) -> String {
        self.copied().map(|c| c.read.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Warnings (code, column) that loading an exact copy of this table may
    /// raise although the stored value is unchanged:
    /// - 1265 on an ENUM without an `''` member: `''` is the error value
    ///   (index 0) a lax source may hold; the target stores the same index 0.
    /// - 1264 on FLOAT(M,D)/DOUBLE(M,D): float rounding can leave a stored
    ///   value a hair above the declared maximum; the target clips it to that
    ///   maximum, which rounds to the very same float.
    pub fn benign_warnings(&self) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        for c in self.copied() {
            let ty = c.column_type.to_ascii_lowercase();
            if c.data_type.eq_ignore_ascii_case("enum") && !enum_has_empty(&c.column_type) {
                out.push((1265, c.name.clone()));
            }
            if matches!(c.kind, ValueKind::Float | ValueKind::Number)
                && (ty.starts_with("float(") || ty.starts_with("double(") || ty.starts_with("real("))
                && ty.contains(',')
            {
                out.push((1264, c.name.clone()));
            }
        }
        out
    }

    /// The column list and SET clause of `LOAD DATA` on `target`.
    pub fn load_columns(&self, target: &ServerFacts) -> (String, String) {
        let mut columns = Vec::new();
        let mut sets = Vec::new();
        for (i, c) in self.copied().enumerate() {
            let var = format!("@v{i}");
            let set = match c.kind {
                ValueKind::Bit => Some(format!("{} = CAST({var} AS UNSIGNED)", ident(&c.name))),
                // MySQL refuses binary strings as JSON; the text is utf8mb4.
                ValueKind::Json if !target.mariadb => {
                    Some(format!("{} = CONVERT({var} USING utf8mb4)", ident(&c.name)))
                }
                _ => None,
            };
            match set {
                Some(set) => {
                    columns.push(var);
                    sets.push(set);
                }
                None => columns.push(ident(&c.name)),
            }
        }
        let set = if sets.is_empty() {
            String::new()
        } else {
            format!(" SET {}", sets.join(", "))
        };
        (columns.join(", "), set)
    }
}

/// Whether `enum('a','','b')` lists the empty string.
fn enum_has_empty(column_type: &str) -> bool {
    let body = column_type
        .find('(')
        .map(|i| &column_type[i + 1..])
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or("");
    let mut rest = body;
    while let Some((literal, after)) = crate::quote::skip_string(rest) {
        if literal == "''" {
            return true;
        }
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    false
}

/// The SELECT expression of a column on `source`.
pub fn read_expression(name: &str, kind: ValueKind, source: &ServerFacts) -> String {
    let col = ident(name);
    match kind {
        ValueKind::Bit => format!("{col}+0"),
        // FLOAT prints 6 significant digits; as a DOUBLE every bit survives
        // and the target rounds it back to the very same float (CAST keeps -0).
        ValueKind::Float if source.has_cast_double() => format!("CAST({col} AS DOUBLE)"),
        ValueKind::Float => format!("({col} * 1e0)"),
        _ => col,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, data_type: &str, column_type: &str, generated: bool) -> ColumnDetail {
        let facts = ServerFacts {
            mariadb: true,
            numbers: (10, 11, 6),
            ..ServerFacts::default()
        };
        let kind = ValueKind::of(data_type, column_type);
        ColumnDetail {
            name: name.into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            kind,
            nullable: true,
            charset: None,
            collation: None,
            generated,
            invisible: false,
            read: read_expression(name, kind, &facts),
        }
    }

    #[test]
    fn enum_members_are_parsed() {
        assert!(!enum_has_empty("enum('a','b')"));
        assert!(enum_has_empty("enum('a','','b')"));
        assert!(enum_has_empty("enum('')"));
        assert!(!enum_has_empty("enum('''','a,''')"));
        assert!(enum_has_empty("enum('x''y','')"));
    }

    #[test]
    fn kinds_follow_the_declared_type() {
        assert_eq!(ValueKind::of("int", "int(10) unsigned"), ValueKind::UInt);
        assert_eq!(ValueKind::of("bigint", "bigint(20)"), ValueKind::Int);
        assert_eq!(ValueKind::of("bit", "bit(64)"), ValueKind::Bit);
        assert_eq!(ValueKind::of("varchar", "varchar(10)"), ValueKind::Text);
        assert_eq!(ValueKind::of("longblob", "longblob"), ValueKind::Binary);
        assert_eq!(ValueKind::of("point", "point"), ValueKind::Spatial);
        assert_eq!(ValueKind::of("datetime", "datetime(6)"), ValueKind::Temporal);
    }

    #[test]
    fn generated_columns_are_neither_read_nor_loaded_and_bits_go_through_variables() {
        let detail = TableDetail {
            columns: vec![
                col("id", "int", "int(11)", false),
                col("b`it", "bit", "bit(64)", false),
                col("f", "float", "float", false),
                col("g", "int", "int(11)", true),
                col("j", "json", "json", false),
            ],
            ..TableDetail::default()
        };
        assert_eq!(detail.select_list(), "`id`, `b``it`+0, CAST(`f` AS DOUBLE), `j`");
        let maria = ServerFacts {
            mariadb: true,
            ..ServerFacts::default()
        };
        let (cols, set) = detail.load_columns(&maria);
        assert_eq!(cols, "`id`, @v1, `f`, `j`");
        assert_eq!(set, " SET `b``it` = CAST(@v1 AS UNSIGNED)");
        let (cols, set) = detail.load_columns(&ServerFacts::default());
        assert_eq!(cols, "`id`, @v1, `f`, @v3");
        assert_eq!(
            set,
            " SET `b``it` = CAST(@v1 AS UNSIGNED), `j` = CONVERT(@v3 USING utf8mb4)"
        );
    }

    #[test]
    fn the_cache_decodes_each_detail_once_and_rejects_malformed_ones(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let details = DetailCache::default();
        let table = TableDetail {
            create_base: "CREATE TABLE `t` (`a` int)".into(),
            ..TableDetail::default()
        };
        let encoded = Detail::encode(&table)?;
        let first = details.table(&encoded)?;
        let again = details.table(&encoded.clone())?;
        assert!(
            Arc::ptr_eq(&first, &again),
            "a later request with the kept detail must reuse the first decode"
        );
        let same_text: Detail = serde_json::from_str(encoded.as_json())?;
        assert_eq!(details.table(&same_text)?.create_base, table.create_base);
        assert_eq!(first.create_base, table.create_base);
        let malformed = Detail::encode(&serde_json::json!({"columns": 3}))?;
        assert!(details.table(&malformed).is_err());
        Ok(())
    }

    #[test]
    fn the_cache_starts_over_when_full() -> std::result::Result<(), serde_json::Error> {
        let details = DetailCache::default();
        for i in 0..=DetailCache::CAPACITY {
            let table = TableDetail {
                create_base: format!("CREATE TABLE `t{i}` (`a` int)"),
                ..TableDetail::default()
            };
            details.remember(&Detail::encode(&table)?, table);
        }
        assert_eq!(details.lock().len(), 1);
        Ok(())
    }
}
