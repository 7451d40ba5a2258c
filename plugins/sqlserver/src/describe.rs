//! Introspection: one database's schema from the catalogue views.

use std::collections::HashMap;

use dbferry_plugin_abi::protocol::{DatabaseSchema, Detail, ObjectKind, ObjectRef, TableSchema};

use crate::catalog_source::CatalogSource;
use crate::cell::{flag, int, string, text, u64, Cells};
use crate::ddl::dependency_order;
use crate::detail::{
    AliasType, CheckDetail, DatabaseDetail, ForeignKeyDetail, IndexConstraint, IndexDetail, IndexKind, ModuleDetail,
    ModuleKind, SequenceDetail, TableDetail, XmlCollection,
};
use crate::error::{Error, Result};
use crate::flavour::Flavour;
use crate::quote::{ident, string as literal};
use crate::types::{ColumnDetail, Computed, DefaultConstraint, Identity};

/// Indexes, primary keys and unique constraints (rowstore and columnstore).
pub const INDEXES_SQL: &str = "SELECT i.object_id, i.index_id, i.name, i.type, i.is_unique, i.is_primary_key, \
     i.is_unique_constraint, i.filter_definition, i.ignore_dup_key, i.fill_factor, i.is_padded, \
     i.allow_row_locks, i.allow_page_locks, i.is_disabled \
     FROM sys.indexes i JOIN sys.tables t ON t.object_id = i.object_id AND t.is_ms_shipped = 0 \
     WHERE i.type IN (1, 2, 5, 6) AND i.is_hypothetical = 0 ORDER BY i.object_id, i.index_id";

/// Index columns.
pub const INDEX_COLUMNS_SQL: &str = "SELECT ic.object_id, ic.index_id, c.name, ic.is_descending_key, \
     ic.is_included_column, ic.key_ordinal \
     FROM sys.index_columns ic JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
     JOIN sys.tables t ON t.object_id = ic.object_id AND t.is_ms_shipped = 0 \
     ORDER BY ic.object_id, ic.index_id, ic.key_ordinal, ic.index_column_id";

/// CHECK constraints.
pub const CHECKS_SQL: &str = "SELECT cc.parent_object_id, cc.name, cc.definition, cc.is_disabled, cc.is_not_trusted, \
     cc.is_not_for_replication FROM sys.check_constraints cc ORDER BY cc.parent_object_id, cc.name";

/// FOREIGN KEYs with their columns.
pub const FOREIGN_KEYS_SQL: &str = "SELECT fk.parent_object_id, fk.object_id, fk.name, \
     SCHEMA_NAME(rt.schema_id), rt.name, fk.delete_referential_action_desc, fk.update_referential_action_desc, \
     fk.is_disabled, fk.is_not_trusted, fk.is_not_for_replication, pc.name, rc.name \
     FROM sys.foreign_keys fk JOIN sys.tables rt ON rt.object_id = fk.referenced_object_id \
     JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id \
     JOIN sys.columns pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id \
     JOIN sys.columns rc ON rc.object_id = fkc.referenced_object_id AND rc.column_id = fkc.referenced_column_id \
     ORDER BY fk.parent_object_id, fk.name, fkc.constraint_column_id";

/// Sequences (sql_variant values as exact text).
pub const SEQUENCES_SQL: &str =
    "SELECT SCHEMA_NAME(s.schema_id), s.name, TYPE_NAME(s.user_type_id), s.precision, s.scale, \
     CAST(s.start_value AS nvarchar(40)), CAST(s.increment AS nvarchar(40)), CAST(s.minimum_value AS nvarchar(40)), \
     CAST(s.maximum_value AS nvarchar(40)), s.is_cycling, s.is_cached, s.cache_size, \
     CAST(s.last_used_value AS nvarchar(40)) FROM sys.sequences s ORDER BY 1, 2";

/// User schemas other than dbo and the built-in role schemas.
pub fn schemas_sql(flavour: Flavour) -> String {
    format!(
        "SELECT s.name FROM sys.schemas s WHERE {} ORDER BY s.name",
        flavour.catalog().user_schemas
    )
}

/// Alias types.
pub const ALIAS_TYPES_SQL: &str =
    "SELECT SCHEMA_NAME(t.schema_id), t.name, TYPE_NAME(t.system_type_id), t.max_length, \
     t.precision, t.scale, t.is_nullable FROM sys.types t \
     WHERE t.is_user_defined = 1 AND t.is_assembly_type = 0 AND t.is_table_type = 0 ORDER BY 1, 2";

/// Facts about the database itself.
pub fn database_sql(database: &str) -> String {
    format!(
        "SELECT d.collation_name, d.snapshot_isolation_state, d.is_read_committed_snapshot_on, \
         CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), d.state_desc \
         FROM sys.databases d WHERE d.name = {}",
        literal(database)
    )
}

/// A column from a row of a [`crate::flavour::Catalog`]'s columns query.
pub fn column_from_row(r: &impl Cells) -> ColumnDetail {
    let identity = flag(r, 23).then(|| Identity {
        seed: text(r, 10).unwrap_or_else(|| "1".into()),
        increment: text(r, 11).unwrap_or_else(|| "1".into()),
        last_value: text(r, 12),
        not_for_replication: flag(r, 13),
    });
    let computed = text(r, 14).map(|definition| Computed {
        definition,
        persisted: flag(r, 15),
    });
    let default = match (text(r, 16), text(r, 17)) {
        (Some(name), Some(definition)) => Some(DefaultConstraint { name, definition }),
        _ => None,
    };
    let xml_schema = match (text(r, 20), text(r, 21)) {
        (Some(schema), Some(name)) => Some((schema, name, flag(r, 22))),
        _ => None,
    };
    ColumnDetail {
        name: string(r, 1),
        base: string(r, 2),
        alias: match (text(r, 3), text(r, 4)) {
            (Some(s), Some(n)) => Some((s, n)),
            _ => None,
        },
        max_length: int(r, 5).and_then(|v| i16::try_from(v).ok()).unwrap_or(-1),
        precision: int(r, 6).and_then(|v| u8::try_from(v).ok()).unwrap_or(0),
        scale: int(r, 7).and_then(|v| u8::try_from(v).ok()).unwrap_or(0),
        collation: text(r, 8),
        nullable: flag(r, 9),
        identity,
        computed,
        default,
        rowguidcol: flag(r, 18),
        sparse: flag(r, 19),
        xml_schema,
    }
}

fn index_kind(kind: i64) -> IndexKind {
    match kind {
        1 => IndexKind::Clustered,
        5 => IndexKind::ClusteredColumnstore,
        6 => IndexKind::NonclusteredColumnstore,
        _ => IndexKind::Nonclustered,
    }
}

/// The chunking key: the primary key, else a unique index without filter
/// on NOT NULL columns (clustered preferred).
pub fn chunk_key(detail: &TableDetail) -> Option<Vec<String>> {
    let usable = |i: &&IndexDetail| {
        i.unique
            && i.filter.is_none()
            && !i.disabled
            && !i.columns.is_empty()
            && matches!(i.kind, IndexKind::Clustered | IndexKind::Nonclustered)
            && i.columns
                .iter()
                .all(|(c, _)| detail.column(c).is_ok_and(|c| !c.nullable && c.copied()))
    };
    let pick = detail
        .indexes
        .iter()
        .filter(usable)
        .find(|i| i.constraint == IndexConstraint::PrimaryKey)
        .or_else(|| detail.indexes.iter().filter(usable).find(|i| i.kind.is_clustered()))
        .or_else(|| detail.indexes.iter().find(usable))?;
    Some(pick.columns.iter().map(|(c, _)| c.clone()).collect())
}

/// Describes `database` (the connection switches to it, and back) from
/// `flavour`'s catalogues.
pub async fn describe(conn: &mut impl CatalogSource, database: &str, flavour: Flavour) -> Result<DatabaseSchema> {
    let catalog = flavour.catalog();
    let facts = conn.rows(&database_sql(database)).await?;
    let Some(fact) = facts.first() else {
        return Err(Error::NotFound(format!("database {} does not exist", ident(database))));
    };
    if string(fact, 4) != "ONLINE" {
        return Err(Error::NotFound(format!(
            "database {} is {}, not ONLINE",
            ident(database),
            string(fact, 4)
        )));
    }
    let mut detail = DatabaseDetail {
        collation: string(fact, 0),
        snapshot_isolation: int(fact, 1) == Some(1),
        read_committed_snapshot: flag(fact, 2),
        server: string(fact, 3),
        ..DatabaseDetail::default()
    };
    conn.enter(database).await?;

    let mut tables: Vec<(i64, TableDetail, u64, u64)> = conn
        .rows(catalog.tables)
        .await?
        .iter()
        .map(|r| {
            let t = TableDetail {
                schema: string(r, 1),
                name: string(r, 2),
                ..TableDetail::default()
            };
            (int(r, 0).unwrap_or(0), t, u64(r, 3), u64(r, 4))
        })
        .collect();
    let index_of: HashMap<i64, usize> = tables.iter().enumerate().map(|(i, t)| (t.0, i)).collect();
    for r in conn.rows(catalog.columns).await? {
        if let Some(&i) = index_of.get(&int(&r, 0).unwrap_or(0)) {
            tables[i].1.columns.push(column_from_row(&r));
        }
    }
    let mut indexes: HashMap<(i64, i64), (usize, usize)> = HashMap::new();
    for r in conn.rows(INDEXES_SQL).await? {
        let (object, index) = (int(&r, 0).unwrap_or(0), int(&r, 1).unwrap_or(0));
        let Some(&t) = index_of.get(&object) else { continue };
        let constraint = if flag(&r, 5) {
            IndexConstraint::PrimaryKey
        } else if flag(&r, 6) {
            IndexConstraint::Unique
        } else {
            IndexConstraint::None
        };
        let list = &mut tables[t].1.indexes;
        indexes.insert((object, index), (t, list.len()));
        list.push(IndexDetail {
            name: string(&r, 2),
            kind: index_kind(int(&r, 3).unwrap_or(2)),
            constraint,
            unique: flag(&r, 4),
            columns: Vec::new(),
            included: Vec::new(),
            filter: text(&r, 7),
            ignore_dup_key: flag(&r, 8),
            fill_factor: int(&r, 9).and_then(|v| u8::try_from(v).ok()).unwrap_or(0),
            padded: flag(&r, 10),
            allow_row_locks: flag(&r, 11),
            allow_page_locks: flag(&r, 12),
            disabled: flag(&r, 13),
        });
    }
    for r in conn.rows(INDEX_COLUMNS_SQL).await? {
        let key = (int(&r, 0).unwrap_or(0), int(&r, 1).unwrap_or(0));
        let Some(&(t, i)) = indexes.get(&key) else { continue };
        let index = &mut tables[t].1.indexes[i];
        let name = string(&r, 2);
        let columnstore = matches!(index.kind, IndexKind::NonclusteredColumnstore);
        if flag(&r, 4) || columnstore {
            index.included.push(name);
        } else if int(&r, 5).unwrap_or(0) > 0 {
            index.columns.push((name, flag(&r, 3)));
        }
    }
    for r in conn.rows(CHECKS_SQL).await? {
        let Some(&t) = index_of.get(&int(&r, 0).unwrap_or(0)) else {
            continue;
        };
        tables[t].1.checks.push(CheckDetail {
            name: string(&r, 1),
            definition: string(&r, 2),
            disabled: flag(&r, 3),
            not_trusted: flag(&r, 4),
            not_for_replication: flag(&r, 5),
        });
    }
    let mut last_fk: Option<(usize, i64)> = None;
    for r in conn.rows(FOREIGN_KEYS_SQL).await? {
        let Some(&t) = index_of.get(&int(&r, 0).unwrap_or(0)) else {
            continue;
        };
        let fk_id = int(&r, 1).unwrap_or(0);
        let list = &mut tables[t].1.foreign_keys;
        if last_fk != Some((t, fk_id)) {
            list.push(ForeignKeyDetail {
                name: string(&r, 2),
                columns: Vec::new(),
                referenced: (string(&r, 3), string(&r, 4)),
                referenced_columns: Vec::new(),
                on_delete: string(&r, 5),
                on_update: string(&r, 6),
                disabled: flag(&r, 7),
                not_trusted: flag(&r, 8),
                not_for_replication: flag(&r, 9),
            });
            last_fk = Some((t, fk_id));
        }
        if let Some(fk) = list.last_mut() {
            fk.columns.push(string(&r, 10));
            fk.referenced_columns.push(string(&r, 11));
        }
    }

    detail.schemas = conn
        .rows(&schemas_sql(flavour))
        .await?
        .iter()
        .map(|r| string(r, 0))
        .collect();
    detail.alias_types = conn
        .rows(ALIAS_TYPES_SQL)
        .await?
        .iter()
        .map(|r| {
            let mut base = ColumnDetail::plain(
                "",
                &string(r, 2),
                int(r, 3).and_then(|v| i16::try_from(v).ok()).unwrap_or(-1),
                int(r, 4).and_then(|v| u8::try_from(v).ok()).unwrap_or(0),
                int(r, 5).and_then(|v| u8::try_from(v).ok()).unwrap_or(0),
            );
            base.alias = None;
            AliasType {
                schema: string(r, 0),
                name: string(r, 1),
                base: base.type_sql(),
                nullable: flag(r, 6),
            }
        })
        .collect();
    let xml_collections = match catalog.xml_collections {
        Some(sql) => conn.rows(sql).await?,
        None => Vec::new(),
    };
    detail.xml_collections = xml_collections
        .iter()
        .map(|r| XmlCollection {
            schema: string(r, 0),
            name: string(r, 1),
            definition: string(r, 2),
        })
        .collect();
    detail.sequences = conn
        .rows(SEQUENCES_SQL)
        .await?
        .iter()
        .map(|r| {
            let ty = string(r, 2);
            let type_sql = if ty == "decimal" || ty == "numeric" {
                format!("{ty}({},{})", string(r, 3), string(r, 4))
            } else {
                ty
            };
            SequenceDetail {
                schema: string(r, 0),
                name: string(r, 1),
                type_sql,
                start: string(r, 5),
                increment: string(r, 6),
                min: string(r, 7),
                max: string(r, 8),
                cycle: flag(r, 9),
                cached: flag(r, 10),
                cache: text(r, 11),
                last_used: text(r, 12),
            }
        })
        .collect();

    // Modules in dependency order.
    let none = match catalog.modules_at_most {
        Some(sql) => conn.rows(sql).await?.first().is_some_and(|r| u64(r, 0) == 0),
        None => false,
    };
    let module_rows = if none {
        Vec::new()
    } else {
        conn.rows(catalog.modules).await?
    };
    let mut ids = Vec::new();
    let mut modules = Vec::new();
    for r in &module_rows {
        let Some(definition) = text(r, 4) else { continue };
        let kind = match string(r, 1).trim() {
            "V" => ModuleKind::View,
            "P" => ModuleKind::Procedure,
            "TR" => ModuleKind::Trigger,
            _ => ModuleKind::Function,
        };
        ids.push(int(r, 0).unwrap_or(0));
        modules.push(ModuleDetail {
            kind,
            schema: string(r, 2),
            name: string(r, 3),
            definition,
            ansi_nulls: flag(r, 5),
            quoted_identifier: flag(r, 6),
            disabled: flag(r, 7),
            parent: match (text(r, 8), text(r, 9)) {
                (Some(s), Some(n)) => Some((s, n)),
                _ => None,
            },
        });
    }
    let position: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let dependencies = if none {
        Vec::new()
    } else {
        conn.rows(catalog.dependencies).await?
    };
    let edges: Vec<(usize, usize)> = dependencies
        .iter()
        .filter_map(|r| {
            let from = position.get(&int(r, 0)?)?;
            let to = position.get(&int(r, 1)?)?;
            Some((*from, *to))
        })
        .collect();
    let order = dependency_order(modules.len(), &edges);
    detail.modules = order.into_iter().filter_map(|i| modules.get(i).cloned()).collect();
    detail.skipped = conn.rows(catalog.skipped).await?.iter().map(|r| string(r, 0)).collect();
    conn.leave().await?;

    let mut objects = Vec::new();
    for schema in &detail.schemas {
        objects.push(ObjectRef {
            kind: ObjectKind::Schema,
            name: schema.clone(),
        });
    }
    for s in &detail.sequences {
        objects.push(ObjectRef {
            kind: ObjectKind::Sequence,
            name: format!("{}.{}", s.schema, s.name),
        });
    }
    let mut out_tables = Vec::with_capacity(tables.len());
    for (_, t, rows, bytes) in tables {
        objects.push(ObjectRef {
            kind: ObjectKind::Table,
            name: format!("{}.{}", t.schema, t.name),
        });
        let detail_json = Detail::encode(&t).map_err(|e| Error::Internal(format!("encoding a table's detail: {e}")))?;
        out_tables.push(TableSchema {
            name: format!("{}.{}", t.schema, t.name),
            key: chunk_key(&t),
            estimated_rows: rows,
            estimated_bytes: bytes,
            detail: detail_json,
        });
    }
    for m in &detail.modules {
        objects.push(ObjectRef {
            kind: module_object_kind(m.kind),
            name: m.object_name(),
        });
    }
    Ok(DatabaseSchema {
        database: database.to_string(),
        tables: out_tables,
        objects,
        detail: Detail::encode(&detail).map_err(|e| Error::Internal(format!("encoding a database's detail: {e}")))?,
    })
}

/// The protocol's kind of a module.
pub fn module_object_kind(kind: ModuleKind) -> ObjectKind {
    match kind {
        ModuleKind::View => ObjectKind::View,
        ModuleKind::Function => ObjectKind::Function,
        ModuleKind::Procedure => ObjectKind::Procedure,
        ModuleKind::Trigger => ObjectKind::Trigger,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail() -> TableDetail {
        let mut a = ColumnDetail::plain("a", "int", 4, 10, 0);
        a.nullable = false;
        let b = ColumnDetail::plain("b", "int", 4, 10, 0);
        let index = |name: &str, cols: &[&str], constraint, kind| IndexDetail {
            name: name.into(),
            kind,
            constraint,
            unique: true,
            columns: cols.iter().map(|c| (c.to_string(), false)).collect(),
            included: Vec::new(),
            filter: None,
            ignore_dup_key: false,
            fill_factor: 0,
            padded: false,
            allow_row_locks: true,
            allow_page_locks: true,
            disabled: false,
        };
        TableDetail {
            schema: "dbo".into(),
            name: "t".into(),
            columns: vec![a, b],
            indexes: vec![
                index("UX_b", &["b"], IndexConstraint::None, IndexKind::Clustered),
                index("UX_a", &["a"], IndexConstraint::Unique, IndexKind::Nonclustered),
            ],
            ..TableDetail::default()
        }
    }

    #[test]
    fn the_key_is_a_unique_not_null_index() {
        // UX_b is on a nullable column: skipped.
        assert_eq!(chunk_key(&detail()), Some(vec!["a".to_string()]));
        let mut none = detail();
        none.indexes.pop();
        assert_eq!(chunk_key(&none), None);
    }

    #[test]
    fn catalogue_queries_cast_sql_variant_columns() {
        // tiberius cannot decode sql_variant: every such catalogue column is cast.
        for sql in [Flavour::SqlServer.catalog().columns, SEQUENCES_SQL] {
            for column in [
                "seed_value",
                "increment_value",
                "last_value",
                "start_value",
                "minimum_value",
            ] {
                if sql.contains(&format!(".{column}")) {
                    assert!(
                        sql.contains(&format!("CAST(ic.{column} AS")) || sql.contains(&format!("CAST(s.{column} AS"))
                    );
                }
            }
        }
        assert!(database_sql("a'b").contains("d.name = N'a''b'"));
    }
}
