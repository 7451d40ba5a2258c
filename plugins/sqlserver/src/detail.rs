//! The engine-private `detail` JSON that travels from the source session to
//! the target session inside `DatabaseSchema` and `TableSchema`.

use dbferry_plugin_abi::protocol::Detail;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::quote::{ident, three_part, two_part};
use crate::types::ColumnDetail;

/// `DatabaseSchema::detail`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseDetail {
    /// The source server's version, e.g. `16.0.4135.4`.
    pub server: String,
    /// The database's default collation (the target database gets it too).
    pub collation: String,
    /// `ALLOW_SNAPSHOT_ISOLATION` is on.
    pub snapshot_isolation: bool,
    /// `READ_COMMITTED_SNAPSHOT` is on.
    pub read_committed_snapshot: bool,
    /// User schemas other than `dbo`.
    pub schemas: Vec<String>,
    /// Alias types (`CREATE TYPE ... FROM`).
    pub alias_types: Vec<AliasType>,
    /// XML schema collections.
    pub xml_collections: Vec<XmlCollection>,
    /// Sequences.
    pub sequences: Vec<SequenceDetail>,
    /// Views, functions, procedures and triggers, in dependency order.
    pub modules: Vec<ModuleDetail>,
    /// Objects the copy does not carry, for the warnings.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// `CREATE TYPE [s].[n] FROM base`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasType {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// The base type as DDL (`varchar(20)`).
    pub base: String,
    /// NULL allowed.
    pub nullable: bool,
}

/// An XML schema collection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XmlCollection {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// The schemas it holds, as one document.
    pub definition: String,
}

/// A sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceDetail {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Its type as DDL.
    pub type_sql: String,
    /// START WITH (exact text).
    pub start: String,
    /// INCREMENT BY.
    pub increment: String,
    /// MINVALUE.
    pub min: String,
    /// MAXVALUE.
    pub max: String,
    /// CYCLE.
    pub cycle: bool,
    /// CACHE size; `None` with `cached` false is NO CACHE.
    pub cache: Option<String>,
    /// Whether it caches.
    pub cached: bool,
    /// The last value handed out on the source, `None` if never used.
    pub last_used: Option<String>,
}

/// Kinds of modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    /// A view.
    View,
    /// A scalar or table-valued function.
    Function,
    /// A stored procedure.
    Procedure,
    /// A DML trigger on a table or view, or a database DDL trigger.
    Trigger,
}

/// A view, function, procedure or trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleDetail {
    /// What it is.
    pub kind: ModuleKind,
    /// Schema (empty for a database trigger).
    pub schema: String,
    /// Name.
    pub name: String,
    /// `sys.sql_modules.definition`: the CREATE statement as written.
    pub definition: String,
    /// Created under ANSI_NULLS ON.
    pub ansi_nulls: bool,
    /// Created under QUOTED_IDENTIFIER ON.
    pub quoted_identifier: bool,
    /// A disabled trigger.
    #[serde(default)]
    pub disabled: bool,
    /// The table or view of a DML trigger (schema, name); `None` for a
    /// database trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<(String, String)>,
}

impl ModuleDetail {
    /// `schema.name` (just the name for a database trigger).
    pub fn object_name(&self) -> String {
        if self.schema.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }
}

/// What kind of index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// A clustered rowstore index.
    Clustered,
    /// A nonclustered rowstore index.
    Nonclustered,
    /// A clustered columnstore index.
    ClusteredColumnstore,
    /// A nonclustered columnstore index.
    NonclusteredColumnstore,
}

impl IndexKind {
    /// Clustered indexes are built first.
    pub fn is_clustered(self) -> bool {
        matches!(self, IndexKind::Clustered | IndexKind::ClusteredColumnstore)
    }
}

/// Which constraint an index enforces, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexConstraint {
    /// A plain index.
    None,
    /// PRIMARY KEY.
    PrimaryKey,
    /// UNIQUE constraint.
    Unique,
}

/// An index, primary key or unique constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDetail {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: IndexKind,
    /// The constraint it enforces.
    pub constraint: IndexConstraint,
    /// UNIQUE.
    pub unique: bool,
    /// Key columns with DESC flags, in key order.
    pub columns: Vec<(String, bool)>,
    /// INCLUDE columns.
    pub included: Vec<String>,
    /// Filter of a filtered index (`WHERE ...`, without the keyword).
    pub filter: Option<String>,
    /// IGNORE_DUP_KEY.
    pub ignore_dup_key: bool,
    /// FILLFACTOR (0 = default).
    pub fill_factor: u8,
    /// PAD_INDEX.
    pub padded: bool,
    /// ALLOW_ROW_LOCKS.
    pub allow_row_locks: bool,
    /// ALLOW_PAGE_LOCKS.
    pub allow_page_locks: bool,
    /// A disabled index (created, then disabled).
    pub disabled: bool,
}

/// A CHECK constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDetail {
    /// Name.
    pub name: String,
    /// Expression (with parentheses).
    pub definition: String,
    /// Disabled (NOCHECK).
    pub disabled: bool,
    /// Not trusted (added WITH NOCHECK).
    pub not_trusted: bool,
    /// NOT FOR REPLICATION.
    pub not_for_replication: bool,
}

/// A FOREIGN KEY constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyDetail {
    /// Name.
    pub name: String,
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced table (schema, name).
    pub referenced: (String, String),
    /// Referenced columns.
    pub referenced_columns: Vec<String>,
    /// ON DELETE action (`NO ACTION`, `CASCADE`, `SET NULL`, `SET DEFAULT`).
    pub on_delete: String,
    /// ON UPDATE action.
    pub on_update: String,
    /// Disabled (NOCHECK).
    pub disabled: bool,
    /// Not trusted.
    pub not_trusted: bool,
    /// NOT FOR REPLICATION.
    pub not_for_replication: bool,
}

/// `TableSchema::detail`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableDetail {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Columns in column order.
    pub columns: Vec<ColumnDetail>,
    /// Indexes, primary key and unique constraints (built after the data).
    pub indexes: Vec<IndexDetail>,
    /// CHECK constraints (added after the data).
    pub checks: Vec<CheckDetail>,
    /// FOREIGN KEYs (added after the data).
    pub foreign_keys: Vec<ForeignKeyDetail>,
}

impl TableDetail {
    /// Parses a table's `detail`.
    pub fn from_json(detail: &Detail) -> Result<Self> {
        detail
            .decode()
            .map_err(|e| Error::Invalid(format!("malformed table detail: {e}")))
    }

    /// `[schema].[name]`.
    pub fn two_part(&self) -> String {
        two_part(&self.schema, &self.name)
    }

    /// `[database].[schema].[name]`.
    pub fn three_part(&self, database: &str) -> String {
        three_part(database, &self.schema, &self.name)
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Result<&ColumnDetail> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::Invalid(format!("{} has no column {}", self.two_part(), ident(name))))
    }

    /// The columns the copy carries, in column order.
    pub fn copied(&self) -> impl Iterator<Item = &ColumnDetail> {
        self.columns.iter().filter(|c| c.copied())
    }

    /// Values per row in a batch of this table.
    pub fn width(&self) -> usize {
        self.copied().map(|c| c.transport().width()).sum()
    }

    /// The reader's SELECT list.
    pub fn select_list(&self) -> String {
        self.copied()
            .flat_map(|c| c.read_exprs())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The identity column, if any.
    pub fn identity(&self) -> Option<&ColumnDetail> {
        self.columns.iter().find(|c| c.identity.is_some())
    }
}

impl DatabaseDetail {
    /// Parses a database's `detail`.
    pub fn from_json(detail: &Detail) -> Result<Self> {
        detail
            .decode()
            .map_err(|e| Error::Invalid(format!("malformed database detail: {e}")))
    }
}
