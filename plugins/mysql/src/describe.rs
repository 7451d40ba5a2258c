//! Schema introspection on the source: tables, columns, keys and the DDL of
//! every object, packed into `DatabaseSchema` and its `detail`.

use std::collections::{BTreeMap, HashMap};

use dbferry_plugin_abi::protocol::{DatabaseSchema, Detail, ObjectKind, ObjectRef, TableSchema};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::{cell, ServerFacts};
use crate::ddl::split_create;
use crate::detail::DetailCache;
use crate::detail::{
    read_expression, ColumnDetail, DatabaseDetail, DdlKind, ObjectDdl, SequenceDdl, TableDetail, ValueKind,
};
use crate::error::{Context, Error, Result};
use crate::quote::{hex_str, ident, parse_ident, qualified};

async fn rows(conn: &mut Conn, sql: String) -> Result<Vec<Row>> {
    conn.query::<Row, _>(sql.as_str())
        .await
        .ctx(|| format!("running {sql}"))
}

/// Checks that `database` exists; returns its charset and collation.
pub async fn database_exists(conn: &mut Conn, database: &str) -> Result<Option<(String, String)>> {
    let found = rows(
        conn,
        format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA \
             WHERE SCHEMA_NAME = {}",
            hex_str(database)
        ),
    )
    .await?;
    Ok(found.first().map(|r| (cell::string(r, 0), cell::string(r, 1))))
}

struct IndexInfo {
    unique: bool,
    columns: Vec<String>,
    prefix: bool,
}

/// Describes one database. `conn` is a control connection.
pub async fn describe(
    conn: &mut Conn,
    facts: &ServerFacts,
    details: &DetailCache,
    database: &str,
) -> Result<DatabaseSchema> {
    let Some((charset, collation)) = database_exists(conn, database).await? else {
        return Err(Error::NotFound(format!("database {} does not exist", ident(database))));
    };
    let db = hex_str(database);
    let sql_mode = rows(conn, "SELECT @@GLOBAL.sql_mode".into())
        .await?
        .first()
        .map(|r| cell::string(r, 0))
        .unwrap_or_default();

    facts.fresh_statistics(conn).await?;
    let mut tables = Vec::new();
    let mut views = Vec::new();
    let mut sequences = Vec::new();
    let files = crate::sizes::file_sizes(conn, facts).await?;
    for r in rows(
        conn,
        format!(
            "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db}"
        ),
    )
    .await?
    {
        let name = cell::string(&r, 0);
        match cell::string(&r, 1).as_str() {
            // A MariaDB system-versioned table is described like any
            // other so that the target's precheck refuses it by name
            // (`fit`): skipped here, it would be missing from a copy
            // reported as a success.
            "BASE TABLE" | "SYSTEM VERSIONED" => {
                let file = files.get(&(database.to_string(), name.clone())).copied();
                let bytes = crate::sizes::table_bytes(cell::u64(&r, 4), cell::u64(&r, 5), file);
                tables.push((name, cell::string(&r, 2), cell::u64(&r, 3), bytes))
            }
            "VIEW" => views.push(name),
            "SEQUENCE" => sequences.push(name),
            other => tracing::warn!(
                "{} is a {other}, which dbferry does not copy",
                qualified(database, &name)
            ),
        }
    }
    tables.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    views.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    sequences.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

    let mut columns: HashMap<String, Vec<ColumnDetail>> = HashMap::new();
    let mut auto_increment: HashMap<String, String> = HashMap::new();
    for r in rows(
        conn,
        format!(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, \
             COLLATION_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {db} \
             ORDER BY TABLE_NAME, ORDINAL_POSITION"
        ),
    )
    .await?
    {
        let table = cell::string(&r, 0);
        let name = cell::string(&r, 1);
        let data_type = cell::string(&r, 2);
        let column_type = cell::string(&r, 3);
        let extra = cell::string(&r, 7).to_ascii_uppercase();
        let kind = ValueKind::of(&data_type, &column_type);
        let generated = extra.contains("VIRTUAL GENERATED")
            || extra.contains("STORED GENERATED")
            || extra == "VIRTUAL"
            || extra == "PERSISTENT";
        if extra.contains("AUTO_INCREMENT") {
            auto_increment.insert(table.clone(), name.clone());
        }
        columns.entry(table).or_default().push(ColumnDetail {
            read: read_expression(&name, kind, facts),
            name,
            data_type,
            column_type,
            kind,
            nullable: cell::string(&r, 4) == "YES",
            charset: cell::text(&r, 5),
            collation: cell::text(&r, 6),
            generated,
            invisible: extra.contains("INVISIBLE"),
        });
    }

    let mut indexes: HashMap<String, BTreeMap<String, IndexInfo>> = HashMap::new();
    for r in rows(
        conn,
        format!(
            "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = {db} ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
        ),
    )
    .await?
    {
        let index = indexes
            .entry(cell::string(&r, 0))
            .or_default()
            .entry(cell::string(&r, 1))
            .or_insert(IndexInfo {
                unique: cell::u64(&r, 2) == 0,
                columns: Vec::new(),
                prefix: false,
            });
        match cell::text(&r, 3) {
            Some(column) => index.columns.push(column),
            // A functional index part: not usable for chunking.
            None => index.prefix = true,
        }
        index.prefix |= cell::text(&r, 4).is_some();
    }

    let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    let creates = create_statements(conn, database, &names).await?;
    let mut schema_tables = Vec::with_capacity(tables.len());
    let mut objects = Vec::new();
    for ((name, engine, estimated_rows, estimated_bytes), create) in tables.into_iter().zip(creates) {
        let cols = columns.remove(&name).unwrap_or_default();
        let table_indexes = indexes.remove(&name).unwrap_or_default();
        let (key_index, key) = choose_key(&create, &cols, &table_indexes);
        let split = split_create(
            &create,
            key_index.as_deref(),
            auto_increment.get(&name).map(String::as_str),
        );
        let detail = TableDetail {
            create,
            create_base: split.base,
            deferred_indexes: split.indexes,
            deferred_foreign_keys: split.foreign_keys,
            columns: cols,
            key_index,
            engine,
        };
        objects.push(ObjectRef {
            kind: ObjectKind::Table,
            name: name.clone(),
        });
        let encoded = Detail::encode(&detail).map_err(|e| Error::Internal(e.to_string()))?;
        details.remember(&encoded, detail);
        schema_tables.push(TableSchema {
            name,
            key,
            estimated_rows,
            estimated_bytes,
            detail: encoded,
        });
    }

    let mut detail = DatabaseDetail {
        server: format!("{} {}", facts.product(), facts.version),
        sql_mode: sql_mode.clone(),
        charset,
        collation,
        ..DatabaseDetail::default()
    };

    for name in sequences {
        objects.push(ObjectRef {
            kind: ObjectKind::Sequence,
            name: name.clone(),
        });
        detail.sequences.push(describe_sequence(conn, database, name).await?);
    }

    for name in views {
        let r = rows(conn, format!("SHOW CREATE VIEW {}", qualified(database, &name))).await?;
        let Some(r) = r.first() else { continue };
        objects.push(ObjectRef {
            kind: ObjectKind::View,
            name: name.clone(),
        });
        detail.views.push(ObjectDdl {
            kind: DdlKind::View,
            name,
            table: None,
            create: cell::string(r, 1),
            // Views keep no sql_mode of their own.
            sql_mode: sql_mode.clone(),
            character_set_client: cell::string(r, 2),
            collation_connection: cell::string(r, 3),
            time_zone: None,
        });
    }

    for r in rows(
        conn,
        format!(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} \
             AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE') ORDER BY ROUTINE_TYPE, ROUTINE_NAME"
        ),
    )
    .await?
    {
        let name = cell::string(&r, 0);
        let (kind, object) = if cell::string(&r, 1) == "FUNCTION" {
            (DdlKind::Function, ObjectKind::Function)
        } else {
            (DdlKind::Procedure, ObjectKind::Procedure)
        };
        let shown = rows(
            conn,
            format!("SHOW CREATE {} {}", kind.keyword(), qualified(database, &name)),
        )
        .await?;
        let Some(s) = shown.first() else { continue };
        let Some(create) = cell::text(s, 2) else {
            return Err(Error::Sql {
                context: format!("reading the body of {} {}", kind.keyword(), qualified(database, &name)),
                source: mysql_async::Error::Other("the account may not read routine bodies".into()),
            });
        };
        objects.push(ObjectRef {
            kind: object,
            name: name.clone(),
        });
        detail.routines.push(ObjectDdl {
            kind,
            name,
            table: None,
            create,
            sql_mode: cell::string(s, 1),
            character_set_client: cell::string(s, 3),
            collation_connection: cell::string(s, 4),
            time_zone: None,
        });
    }

    for r in rows(
        conn,
        format!(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db} \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
        ),
    )
    .await?
    {
        let name = cell::string(&r, 0);
        let shown = rows(conn, format!("SHOW CREATE TRIGGER {}", qualified(database, &name))).await?;
        let Some(s) = shown.first() else { continue };
        objects.push(ObjectRef {
            kind: ObjectKind::Trigger,
            name: name.clone(),
        });
        detail.triggers.push(ObjectDdl {
            kind: DdlKind::Trigger,
            name,
            table: Some(cell::string(&r, 1)),
            create: cell::string(s, 2),
            sql_mode: cell::string(s, 1),
            character_set_client: cell::string(s, 3),
            collation_connection: cell::string(s, 4),
            time_zone: None,
        });
    }

    for r in rows(
        conn,
        format!("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db} ORDER BY EVENT_NAME"),
    )
    .await?
    {
        let name = cell::string(&r, 0);
        let shown = rows(conn, format!("SHOW CREATE EVENT {}", qualified(database, &name))).await?;
        let Some(s) = shown.first() else { continue };
        objects.push(ObjectRef {
            kind: ObjectKind::Event,
            name: name.clone(),
        });
        detail.events.push(ObjectDdl {
            kind: DdlKind::Event,
            name,
            table: None,
            create: cell::string(s, 3),
            sql_mode: cell::string(s, 1),
            character_set_client: cell::string(s, 4),
            collation_connection: cell::string(s, 5),
            time_zone: Some(cell::string(s, 2)),
        });
    }

    Ok(DatabaseSchema {
        database: database.to_string(),
        tables: schema_tables,
        objects,
        detail: Detail::encode(&detail).map_err(|e| Error::Internal(e.to_string()))?,
    })
}

/// A MariaDB sequence's definition and state. Its one row says where it
/// stands: `next_not_cached_value` is past every value the source has
/// handed out, so a target that starts there never repeats one.
async fn describe_sequence(conn: &mut Conn, database: &str, name: String) -> Result<SequenceDdl> {
    let table = qualified(database, &name);
    let shown = rows(conn, format!("SHOW CREATE SEQUENCE {table}")).await?;
    let create = shown
        .first()
        .and_then(|r| cell::text(r, 1))
        .ok_or_else(|| Error::NotFound(format!("no DDL for sequence {table}")))?;
    let state = rows(
        conn,
        format!("SELECT CAST(next_not_cached_value AS CHAR), CAST(cycle_count AS CHAR) FROM {table}"),
    )
    .await?;
    let state = state
        .first()
        .ok_or_else(|| Error::NotFound(format!("sequence {table} has no state row")))?;
    Ok(SequenceDdl {
        name,
        create,
        next: cell::string(state, 0),
        round: cell::string(state, 1),
    })
}

/// Tables whose `SHOW CREATE TABLE` go to the server in one multi-statement
/// query: one round trip each cost a tenth of dbferry's CPU on 1,000 tables.
const SHOW_BATCH: usize = 100;

/// The `SHOW CREATE TABLE` text of each of `names`, in order.
pub async fn create_statements(conn: &mut Conn, database: &str, names: &[&str]) -> Result<Vec<String>> {
    let mut creates = Vec::with_capacity(names.len());
    for batch in names.chunks(SHOW_BATCH) {
        let shows: Vec<String> = batch
            .iter()
            .map(|name| format!("SHOW CREATE TABLE {}", qualified(database, name)))
            .collect();
        let mut result = conn
            .query_iter(shows.join("; "))
            .await
            .ctx(|| format!("running {}", shows[0]))?;
        for (show, name) in shows.iter().zip(batch) {
            // mysql_async keeps a later statement's error until its result
            // is the current one, so a failure comes out of its own collect.
            let found: Vec<Row> = result.collect().await.ctx(|| format!("running {show}"))?;
            let create = found
                .first()
                .map(|r| cell::string(r, 1))
                .ok_or_else(|| Error::NotFound(format!("no DDL for {}", qualified(database, name))))?;
            creates.push(create);
        }
        result.drop_result().await.ctx(|| "ending SHOW CREATE TABLE".into())?;
    }
    Ok(creates)
}

/// The chunking key: the primary key, else the first unique key (in the
/// order `SHOW CREATE TABLE` lists them) whose columns are all NOT NULL and
/// whole (no prefix or expression parts).
fn choose_key(
    create: &str,
    columns: &[ColumnDetail],
    indexes: &BTreeMap<String, IndexInfo>,
) -> (Option<String>, Option<Vec<String>>) {
    let usable = |index: &IndexInfo| {
        index.unique
            && !index.prefix
            && !index.columns.is_empty()
            && index.columns.iter().all(|c| {
                columns.iter().any(|col| {
                    &col.name == c && !col.nullable && !matches!(col.kind, ValueKind::Json | ValueKind::Spatial)
                })
            })
    };
    if let Some(pk) = indexes.get("PRIMARY").filter(|i| usable(i)) {
        return (Some("PRIMARY".into()), Some(pk.columns.clone()));
    }
    for line in create.lines() {
        let t = line.trim_start();
        let Some(rest) = t
            .strip_prefix("UNIQUE KEY ")
            .or_else(|| t.strip_prefix("UNIQUE INDEX "))
        else {
            continue;
        };
        let Some((name, _)) = parse_ident(rest) else { continue };
        if let Some(index) = indexes.get(&name).filter(|i| usable(i)) {
            return (Some(name), Some(index.columns.clone()));
        }
    }
    (None, None)
}
