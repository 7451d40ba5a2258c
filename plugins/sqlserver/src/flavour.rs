//! Which server the engine talks to: Microsoft SQL Server, or Babelfish for
//! PostgreSQL (a TDS / T-SQL server on PostgreSQL). One engine serves both;
//! what differs lives here, one concern per method, instead of branches
//! spread over the modules:
//!
//! - catalogues ([`Flavour::catalog`]): Babelfish has no
//!   `sys.allocation_units`, an empty `sys.master_files` and
//!   `sys.sql_expression_dependencies`, and a `sys.identity_columns` that
//!   repeats rows with wrong values, so sizes, identity and view dependencies
//!   come from PostgreSQL's own catalogues (which its T-SQL can read) instead;
//! - the write path ([`Flavour::stages_as_text`]): Babelfish's bulk load
//!   stores decimal/numeric and time/datetimeoffset values wrongly, so those
//!   columns are staged as text and converted by the server;
//! - what a target can hold ([`Flavour::unsupported`]).

use crate::detail::{DatabaseDetail, TableDetail};
use crate::quote::{ident, object_argument, object_literal};
use crate::types::{ColumnDetail, Transport};

/// The server behind a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Flavour {
    /// Microsoft SQL Server (2019/2022 are the versions tested for).
    #[default]
    SqlServer,
    /// Babelfish for PostgreSQL (4.3 is the version tested here).
    Babelfish,
}

/// Answers 1 on Babelfish, NULL on SQL Server.
pub const DETECT_SQL: &str = "SELECT CAST(SERVERPROPERTY('babelfish') AS int)";

/// The catalogue queries whose source differs between flavours. Each has
/// the same result shape on both.
#[derive(Debug)]
pub struct Catalog {
    /// Tables: (object_id, schema, name, rows, bytes).
    pub tables: &'static str,
    /// Columns: see [`crate::describe::column_from_row`].
    pub columns: &'static str,
    /// Views, functions, procedures, triggers.
    pub modules: &'static str,
    /// How many objects [`Self::modules`] may find at most, where its
    /// query is dear and this one cheap: none means the modules and their
    /// dependencies need not be asked for.
    pub modules_at_most: Option<&'static str>,
    /// (referencing_id, referenced_id) among the database's objects.
    pub dependencies: &'static str,
    /// XML schema collections, where the server has them.
    pub xml_collections: Option<&'static str>,
    /// Objects the copy does not carry.
    pub skipped: &'static str,
    /// Server facts for the probe.
    pub server: &'static str,
    /// Databases and their sizes for the probe.
    pub databases: &'static str,
    /// The condition on `sys.schemas s` that keeps user schemas other than
    /// dbo (SQL Server numbers its built-in schemas below 5 and its role
    /// schemas from 16384; Babelfish's ids are oids).
    pub user_schemas: &'static str,
}

impl Flavour {
    /// What a server is that answered `value` to [`DETECT_SQL`] (every
    /// new connection asks: see [`crate::conn::Pool::flavour`]).
    pub fn from_babelfish_property(value: Option<i64>) -> Self {
        match value {
            Some(1) => Flavour::Babelfish,
            _ => Flavour::SqlServer,
        }
    }

    /// The product name reported to the host.
    pub fn product(self) -> &'static str {
        match self {
            Flavour::SqlServer => "SQL Server",
            Flavour::Babelfish => "Babelfish for PostgreSQL",
        }
    }

    /// This server's catalogue queries.
    pub fn catalog(self) -> &'static Catalog {
        match self {
            Flavour::SqlServer => &SQL_SERVER,
            Flavour::Babelfish => &BABELFISH,
        }
    }

    /// Whether a staging column of `transport` is loaded as text and
    /// converted by the server. Babelfish 4.3's bulk load reads every
    /// decimal as 16 bytes whatever its length byte says, and stores a
    /// time/datetimeoffset sent at scale 7 with its time of day divided by
    /// 10, so those would land wrong.
    pub fn stages_as_text(self, transport: Transport) -> bool {
        self == Flavour::Babelfish
            && matches!(
                transport,
                Transport::Decimal { .. }
                    | Transport::Time { .. }
                    | Transport::DateTimeOffset { .. }
                    | Transport::DateTime2 { .. }
            )
    }

    /// `column` (a varbinary(max)) with `value` appended. Babelfish 4.3 has
    /// no binary concatenation: its `+` on two varbinary values adds them
    /// as integers (0x0102 + 0x0304 is 0x0406), and `CONCAT` returns their
    /// hex text, so the append goes through PostgreSQL's bytea.
    pub fn append_bytes(self, column: &str, value: &str) -> String {
        match self {
            Flavour::SqlServer => format!("{column} + {value}"),
            Flavour::Babelfish => {
                format!("CAST(pg_catalog.byteacat(CAST({column} AS bytea), CAST({value} AS bytea)) AS varbinary(max))")
            }
        }
    }

    /// The piece of text `expr` from unit `@P1`, `@P2` units long, never
    /// ending inside a character. SQL Server counts nvarchar in UTF-16
    /// units, so a piece that would end on a high surrogate ends one unit
    /// sooner; Babelfish counts characters, and the check would cost it a
    /// second pass over the value.
    pub fn text_piece(self, expr: &str) -> String {
        match self {
            Flavour::SqlServer => format!(
                "SUBSTRING({expr}, @P1, @P2 - CASE WHEN UNICODE(SUBSTRING({expr}, @P1 + @P2 - 1, 1)) \
                 BETWEEN 55296 AND 56319 THEN 1 ELSE 0 END)"
            ),
            Flavour::Babelfish => format!("SUBSTRING({expr}, @P1, @P2)"),
        }
    }

    /// What of `column` this server cannot hold, if anything (checked for
    /// every column and object of the source before anything is written).
    pub fn unsupported(self, column: &ColumnDetail) -> Option<String> {
        if self != Flavour::Babelfish {
            return None;
        }
        match column.base.as_str() {
            "hierarchyid" | "geometry" | "geography" => Some(format!("type {}", column.base)),
            "timestamp" | "rowversion" => {
                Some("type rowversion (needs babelfishpg_tsql.escape_hatch_rowversion)".into())
            }
            "xml" if column.xml_schema.is_some() => Some("a typed xml column (XML schema collections)".into()),
            "sql_variant" => None,
            base if column.alias.is_none() && !crate::types::is_system_type(base) => Some(format!("CLR type {base}")),
            _ => None,
        }
    }
}

impl Flavour {
    /// Everything of a source database this server cannot hold, each named
    /// (empty when it can hold all): checked before the target is touched,
    /// so an import into Babelfish is refused whole, never halfway.
    pub fn refusals(self, database: &DatabaseDetail, tables: &[TableDetail]) -> Vec<String> {
        if self != Flavour::Babelfish {
            return Vec::new();
        }
        let mut out = Vec::new();
        for table in tables {
            for column in &table.columns {
                if let Some(what) = self.unsupported(column) {
                    out.push(format!("{}.{}: {what}", table.two_part(), ident(&column.name)));
                }
            }
        }
        for collection in &database.xml_collections {
            out.push(format!(
                "XML schema collection {}",
                crate::quote::two_part(&collection.schema, &collection.name)
            ));
        }
        // An alias type is created before any table uses it, so one of a
        // type Babelfish lacks fails even when no column uses it.
        for alias in &database.alias_types {
            if matches!(alias.base.as_str(), "hierarchyid" | "geometry" | "geography") {
                out.push(format!(
                    "alias type {} (of {})",
                    crate::quote::two_part(&alias.schema, &alias.name),
                    alias.base
                ));
            }
        }
        out
    }
}

/// How a destination database is created on this server.
#[derive(Debug, PartialEq, Eq)]
pub struct CreateDatabase {
    /// The batches, in order.
    pub statements: Vec<String>,
    /// Said to the user when the copy cannot keep what the source had.
    pub warning: Option<String>,
}

/// Babelfish's default server collation, and the one name its
/// `CREATE DATABASE ... COLLATE` accepts (the same collation under
/// SQL Server's name).
const BABELFISH_COLLATIONS: [&str; 2] = ["bbf_unicode_cp1_ci_as", "sql_latin1_general_cp1_ci_as"];

impl Flavour {
    /// Creates database `database` for a source whose default collation is
    /// `collation`, with SNAPSHOT / READ_COMMITTED_SNAPSHOT as the source
    /// had them. Babelfish accepts no `ALTER DATABASE` (it always reads
    /// under snapshots) and only one collation name, so a source in another
    /// collation gets the server's, and a warning that says so.
    pub fn create_database(
        self,
        database: &str,
        collation: &str,
        snapshot_isolation: bool,
        read_committed_snapshot: bool,
    ) -> CreateDatabase {
        match self {
            Flavour::SqlServer => {
                let mut statements = vec![crate::ddl::create_database(database, collation)];
                if snapshot_isolation {
                    statements.push(format!(
                        "ALTER DATABASE {} SET ALLOW_SNAPSHOT_ISOLATION ON",
                        ident(database)
                    ));
                }
                if read_committed_snapshot {
                    statements.push(format!(
                        "ALTER DATABASE {} SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE",
                        ident(database)
                    ));
                }
                CreateDatabase {
                    statements,
                    warning: None,
                }
            }
            Flavour::Babelfish => {
                let same =
                    collation.is_empty() || BABELFISH_COLLATIONS.contains(&collation.to_ascii_lowercase().as_str());
                CreateDatabase {
                    statements: vec![format!("CREATE DATABASE {}", ident(database))],
                    warning: (!same).then(|| {
                        format!(
                            "database {} was created in Babelfish's collation bbf_unicode_cp1_ci_as \
                             (SQL_Latin1_General_CP1_CI_AS), not the source's {collation}: Babelfish accepts no other",
                            ident(database)
                        )
                    }),
                }
            }
        }
    }

    /// How a request running on a session is stopped from outside it.
    pub fn stops_requests_by(self) -> RequestStop {
        match self {
            Flavour::SqlServer => RequestStop::Attention,
            Flavour::Babelfish => RequestStop::CancelBackend,
        }
    }

    /// The query of the TLS version of the asking session, where the
    /// server tells it: Babelfish through PostgreSQL's `pg_stat_ssl` (its
    /// TDS sessions are PostgreSQL backends, `@@SPID` their pid); SQL
    /// Server's views say only whether a connection is encrypted.
    pub fn tls_version_sql(self) -> Option<&'static str> {
        match self {
            Flavour::SqlServer => None,
            Flavour::Babelfish => {
                Some("SELECT CAST(version AS nvarchar(20)) FROM pg_catalog.pg_stat_ssl WHERE pid = @@SPID")
            }
        }
    }

    /// Whether `error` failed a catalog change (`CREATE DATABASE`) only
    /// because another session changed the catalog at the same moment, so
    /// that the same statement may simply be run again. Babelfish 4.3 fails
    /// a `CREATE DATABASE` issued while another runs with PostgreSQL's
    /// "tuple concurrently updated", and rolls it back whole.
    pub fn is_concurrent_catalog_change(self, error: &crate::error::Error) -> bool {
        self == Flavour::Babelfish && error.to_string().contains("tuple concurrently updated")
    }

    /// The identity's `last_value` on this server (NULL when no value was
    /// ever drawn), in the current database.
    pub fn identity_last_value_sql(self, schema: &str, name: &str) -> String {
        let object = object_argument(schema, name);
        match self {
            Flavour::SqlServer => format!(
                "SELECT CAST(last_value AS nvarchar(40)) FROM sys.identity_columns WHERE object_id = OBJECT_ID({object})"
            ),
            Flavour::Babelfish => format!(
                "SELECT CAST(pg_catalog.pg_sequence_last_value(d.objid) AS nvarchar(40)) FROM sys.columns c \
                 JOIN pg_catalog.pg_depend d ON d.refobjid = c.object_id AND d.refobjsubid = c.column_id \
                 AND d.classid = CAST(1259 AS oid) AND d.deptype IN ('a', 'i') \
                 WHERE c.object_id = OBJECT_ID({object}) AND c.is_identity = 1"
            ),
        }
    }

    /// The table argument of `DBCC CHECKIDENT`: Babelfish refuses an
    /// N'...' literal there.
    pub fn checkident_table(self, schema: &str, name: &str) -> String {
        let object = object_literal(schema, name);
        match self {
            Flavour::SqlServer => object,
            Flavour::Babelfish => object.trim_start_matches('N').to_string(),
        }
    }
}

macro_rules! columns_sql {
    ($identity:literal) => {
        concat!(
            "SELECT c.object_id, c.name, LOWER(CASE WHEN ty.is_user_defined = 1 AND ty.is_assembly_type = 0 \
               THEN TYPE_NAME(ty.system_type_id) ELSE ty.name END), \
             CASE WHEN ty.is_user_defined = 1 AND ty.is_assembly_type = 0 THEN SCHEMA_NAME(ty.schema_id) END, \
             CASE WHEN ty.is_user_defined = 1 AND ty.is_assembly_type = 0 THEN ty.name END, \
             c.max_length, c.precision, c.scale, c.collation_name, c.is_nullable, \
             CAST(ic.seed_value AS nvarchar(40)), CAST(ic.increment_value AS nvarchar(40)), \
             CAST(ic.last_value AS nvarchar(40)), ic.is_not_for_replication, \
             cc.definition, cc.is_persisted, dc.name, dc.definition, c.is_rowguidcol, c.is_sparse, \
             SCHEMA_NAME(xc.schema_id), xc.name, c.is_xml_document, c.is_identity \
             FROM sys.columns c \
             JOIN sys.tables t ON t.object_id = c.object_id AND t.is_ms_shipped = 0 \
             JOIN sys.types ty ON ty.user_type_id = c.user_type_id \
             LEFT JOIN ",
            $identity,
            " ic ON ic.object_id = c.object_id AND ic.column_id = c.column_id \
             LEFT JOIN sys.computed_columns cc ON cc.object_id = c.object_id AND cc.column_id = c.column_id \
             LEFT JOIN sys.default_constraints dc ON dc.object_id = c.default_object_id \
             LEFT JOIN sys.xml_schema_collections xc ON xc.xml_collection_id = c.xml_collection_id AND c.xml_collection_id <> 0 \
             ORDER BY c.object_id, c.column_id"
        )
    };
}

const SQL_SERVER: Catalog = Catalog {
    tables: "SELECT t.object_id, SCHEMA_NAME(t.schema_id), t.name, \
     (SELECT SUM(p.rows) FROM sys.partitions p WHERE p.object_id = t.object_id AND p.index_id IN (0, 1)), \
     (SELECT SUM(CAST(a.used_pages AS bigint)) * 8192 FROM sys.partitions p \
        JOIN sys.allocation_units a ON a.container_id = p.partition_id WHERE p.object_id = t.object_id) \
     FROM sys.tables t WHERE t.is_ms_shipped = 0 AND t.is_external = 0 AND t.temporal_type <> 1 \
     ORDER BY SCHEMA_NAME(t.schema_id), t.name",
    columns: columns_sql!("sys.identity_columns"),
    modules: "SELECT o.object_id, o.type, ISNULL(SCHEMA_NAME(o.schema_id), N''), o.name, m.definition, \
     m.uses_ansi_nulls, m.uses_quoted_identifier, ISNULL(tr.is_disabled, 0), \
     SCHEMA_NAME(p.schema_id), p.name \
     FROM (SELECT object_id, type, schema_id, name, is_ms_shipped, parent_object_id FROM sys.objects \
           UNION ALL SELECT object_id, type, NULL, name, is_ms_shipped, NULL FROM sys.triggers WHERE parent_class = 0) o \
     JOIN sys.sql_modules m ON m.object_id = o.object_id \
     LEFT JOIN sys.triggers tr ON tr.object_id = o.object_id \
     LEFT JOIN sys.objects p ON p.object_id = o.parent_object_id AND o.type = 'TR' \
     WHERE o.is_ms_shipped = 0 AND o.type IN ('V', 'FN', 'IF', 'TF', 'P', 'TR') \
     ORDER BY o.object_id",
    modules_at_most: None,
    dependencies: "SELECT DISTINCT d.referencing_id, d.referenced_id \
     FROM sys.sql_expression_dependencies d WHERE d.referenced_id IS NOT NULL AND d.referencing_class = 1",
    xml_collections: Some(
        "SELECT SCHEMA_NAME(x.schema_id), x.name, \
     CAST(XML_SCHEMA_NAMESPACE(SCHEMA_NAME(x.schema_id), x.name) AS nvarchar(max)) \
     FROM sys.xml_schema_collections x WHERE x.xml_collection_id > 1 ORDER BY 1, 2",
    ),
    skipped: "SELECT o.type_desc + N' ' + SCHEMA_NAME(o.schema_id) + N'.' + o.name FROM sys.objects o \
     WHERE o.is_ms_shipped = 0 AND o.type IN ('SN', 'PC', 'FS', 'FT', 'TA') \
     UNION ALL SELECT N'table type ' + SCHEMA_NAME(t.schema_id) + N'.' + t.name FROM sys.table_types t \
     UNION ALL SELECT N'encrypted module ' + SCHEMA_NAME(o.schema_id) + N'.' + o.name FROM sys.objects o \
     JOIN sys.sql_modules m ON m.object_id = o.object_id WHERE m.definition IS NULL AND o.is_ms_shipped = 0 \
     UNION ALL SELECT N'system versioning of ' + SCHEMA_NAME(t.schema_id) + N'.' + t.name \
       + N' (copied as a plain table; its history table is not copied)' FROM sys.tables t WHERE t.temporal_type = 2 \
     UNION ALL SELECT N'memory optimisation of ' + SCHEMA_NAME(t.schema_id) + N'.' + t.name \
       + N' (copied as a disk-based table)' FROM sys.tables t WHERE t.is_memory_optimized = 1 \
     UNION ALL SELECT N'XML or spatial index ' + i.name + N' on ' + SCHEMA_NAME(t.schema_id) + N'.' + t.name \
     FROM sys.indexes i JOIN sys.tables t ON t.object_id = i.object_id WHERE i.type IN (3, 4) AND t.is_ms_shipped = 0 \
     UNION ALL SELECT N'index ' + i.name + N' on view ' + SCHEMA_NAME(v.schema_id) + N'.' + v.name \
     FROM sys.indexes i JOIN sys.views v ON v.object_id = i.object_id WHERE i.type > 0",
    server: "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), \
     CAST(SERVERPROPERTY('Edition') AS nvarchar(128)), \
     CAST(ISNULL(SERVERPROPERTY('IsHadrEnabled'), 0) AS int), \
     HAS_PERMS_BY_NAME(NULL, NULL, 'CREATE ANY DATABASE'), \
     (SELECT SUM(CAST(size AS bigint)) * 8192 FROM sys.master_files)",
    databases: "SELECT d.name, d.state_desc, d.is_read_only, \
     (SELECT SUM(CAST(mf.size AS bigint)) * 8192 FROM sys.master_files mf WHERE mf.database_id = d.database_id), \
     d.snapshot_isolation_state \
     FROM sys.databases d WHERE d.database_id > 4 AND d.is_distributor = 0 ORDER BY d.name",
    user_schemas: "s.schema_id > 4 AND s.schema_id < 16384",
};

/// Babelfish's object ids are PostgreSQL oids, so its T-SQL can join
/// `pg_catalog`: sizes from `pg_total_relation_size`, row estimates from
/// `reltuples`, identity seed/increment/last value from the column's
/// sequence (`pg_sequence`, `pg_sequence_last_value`, NULL until the first
/// value is drawn, as SQL Server's `last_value`), and a view's references
/// from its rewrite rule's dependencies (functions and procedures are not
/// checked at creation, so views are the only modules whose order
/// matters).
const BABELFISH: Catalog = Catalog {
    tables: "SELECT t.object_id, SCHEMA_NAME(t.schema_id), t.name, \
     (SELECT CAST(CASE WHEN c.reltuples < 0 THEN 0 ELSE c.reltuples END AS bigint) FROM pg_catalog.pg_class c \
        WHERE c.oid = t.object_id), \
     (SELECT pg_catalog.pg_total_relation_size(c.oid) FROM pg_catalog.pg_class c WHERE c.oid = t.object_id) \
     FROM sys.tables t WHERE t.is_ms_shipped = 0 \
     ORDER BY SCHEMA_NAME(t.schema_id), t.name",
    columns: columns_sql!(
        "(SELECT c.object_id, c.column_id, s.seqstart AS seed_value, s.seqincrement AS increment_value, \
           pg_catalog.pg_sequence_last_value(d.objid) AS last_value, CAST(0 AS bit) AS is_not_for_replication \
         FROM sys.columns c JOIN pg_catalog.pg_depend d ON d.refobjid = c.object_id AND d.refobjsubid = c.column_id \
           AND d.classid = CAST(1259 AS oid) AND d.deptype IN ('a', 'i') \
         JOIN pg_catalog.pg_sequence s ON s.seqrelid = d.objid WHERE c.is_identity = 1)"
    ),
    modules: "SELECT o.object_id, o.type, ISNULL(SCHEMA_NAME(o.schema_id), N''), o.name, m.definition, \
     m.uses_ansi_nulls, m.uses_quoted_identifier, ISNULL(tr.is_disabled, 0), \
     SCHEMA_NAME(p.schema_id), p.name \
     FROM sys.objects o \
     JOIN sys.sql_modules m ON m.object_id = o.object_id \
     LEFT JOIN sys.triggers tr ON tr.object_id = o.object_id \
     LEFT JOIN sys.objects p ON p.object_id = o.parent_object_id AND o.type = 'TR' \
     WHERE o.is_ms_shipped = 0 AND o.type IN ('V', 'FN', 'IF', 'TF', 'P', 'TR') \
     ORDER BY o.object_id",
    // The modules query takes 70 ms to plan on Babelfish (its catalogue
    // views are unions of dozens of relations), on the precheck's critical
    // path; a database holding none is told by this count in 15 ms.
    modules_at_most: Some(
        "SELECT COUNT(*) FROM sys.objects o \
         WHERE o.is_ms_shipped = 0 AND o.type IN ('V', 'FN', 'IF', 'TF', 'P', 'TR')",
    ),
    dependencies: "SELECT DISTINCT CAST(r.ev_class AS int), CAST(d.refobjid AS int) \
     FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d ON d.objid = r.oid AND d.classid = CAST(2618 AS oid) \
     JOIN sys.views v ON v.object_id = CAST(r.ev_class AS int) WHERE d.refobjid <> r.ev_class",
    // Babelfish cannot create XML schema collections, so it has none.
    xml_collections: None,
    // CONCAT, not `+`: the query also runs through the PostgreSQL port
    // ([`crate::catalog_source`]), where `+` on strings is ambiguous.
    skipped: "SELECT CONCAT(o.type_desc, N' ', SCHEMA_NAME(o.schema_id), N'.', o.name) FROM sys.objects o \
     WHERE o.is_ms_shipped = 0 AND o.type IN ('SN', 'PC', 'FS', 'FT', 'TA') \
     UNION ALL SELECT CONCAT(N'table type ', SCHEMA_NAME(t.schema_id), N'.', t.name) FROM sys.table_types t",
    server: "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), \
     CAST(SERVERPROPERTY('Edition') AS nvarchar(128)), 0, \
     HAS_PERMS_BY_NAME(NULL, NULL, 'CREATE ANY DATABASE'), \
     (SELECT SUM(pg_catalog.pg_database_size(oid)) FROM pg_catalog.pg_database)",
    databases: "SELECT d.name, d.state_desc, d.is_read_only, \
     (SELECT SUM(pg_catalog.pg_total_relation_size(c.oid)) FROM pg_catalog.pg_class c \
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
        JOIN sys.babelfish_namespace_ext e ON e.nspname = n.nspname \
        WHERE e.dbid = d.database_id AND c.relkind IN ('r', 'm')), \
     d.snapshot_isolation_state \
     FROM sys.databases d WHERE d.name NOT IN (N'master', N'tempdb', N'msdb') ORDER BY d.name",
    user_schemas: "s.name NOT IN (N'dbo', N'guest', N'sys', N'INFORMATION_SCHEMA')",
};

/// How a server stops a request while it runs (`Request::Interrupt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStop {
    /// A TDS Attention on the request's own connection: SQL Server reads
    /// one while the request runs.
    Attention,
    /// Stopped from another session ([`cancel_backend_sql`]): Babelfish 4.3
    /// reads an Attention only once the request has ended, which a request
    /// waiting on a lock never does.
    CancelBackend,
}

/// What stops the request of Babelfish session `session_id`, from another
/// session, in the order to try: PostgreSQL's cancel of that backend
/// (allowed when the current user may act as the session's login, which
/// Babelfish's database users do not), then T-SQL `KILL`, which ends the
/// whole session (for sysadmin; the connection is discarded anyway).
pub fn cancel_backend_sql(session_id: i64) -> [String; 2] {
    [
        format!("SELECT pg_catalog.pg_cancel_backend({session_id})"),
        format!("KILL {session_id}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn babelfish_refuses_every_object_it_cannot_hold_at_once() {
        let table = TableDetail {
            schema: "s".into(),
            name: "t".into(),
            columns: vec![
                ColumnDetail::plain("id", "int", 4, 10, 0),
                ColumnDetail::plain("node", "hierarchyid", 892, 0, 0),
                ColumnDetail::plain("shape", "geography", -1, 0, 0),
            ],
            ..TableDetail::default()
        };
        let database = DatabaseDetail {
            xml_collections: vec![crate::detail::XmlCollection {
                schema: "dbo".into(),
                name: "orders".into(),
                definition: String::new(),
            }],
            ..DatabaseDetail::default()
        };
        assert_eq!(
            Flavour::Babelfish.refusals(&database, std::slice::from_ref(&table)),
            vec![
                "[s].[t].[node]: type hierarchyid".to_string(),
                "[s].[t].[shape]: type geography".to_string(),
                "XML schema collection [dbo].[orders]".to_string(),
            ]
        );
        assert!(Flavour::SqlServer.refusals(&database, &[table]).is_empty());
    }

    #[test]
    fn babelfish_catalogues_avoid_what_it_lacks() {
        let all = |c: &Catalog| {
            [
                c.tables,
                c.columns,
                c.modules,
                c.dependencies,
                c.skipped,
                c.server,
                c.databases,
            ]
            .join(" ")
        };
        let babelfish = all(Flavour::Babelfish.catalog());
        for missing in [
            "sys.allocation_units",
            "sys.master_files",
            "sys.sql_expression_dependencies",
            "sys.identity_columns",
            "XML_SCHEMA_NAMESPACE",
        ] {
            assert!(!babelfish.contains(missing), "{missing}");
        }
        assert!(all(Flavour::SqlServer.catalog()).contains("sys.identity_columns"));
    }

    #[test]
    fn only_babelfish_stages_decimals_and_times_as_text() {
        let decimal = Transport::Decimal {
            precision: 38,
            scale: 10,
        };
        assert!(Flavour::Babelfish.stages_as_text(decimal));
        assert!(Flavour::Babelfish.stages_as_text(Transport::Time { scale: 7 }));
        assert!(!Flavour::Babelfish.stages_as_text(Transport::Int));
        assert!(!Flavour::SqlServer.stages_as_text(decimal));
    }
}
