//! Target schema steps: `PrepareTarget` creates the destination database
//! (named by the job's DBInfo, whatever the source's name) and its tables
//! without keys or indexes; `FinishTarget` adds, after the data, clustered
//! then nonclustered indexes and keys, checks, foreign keys, identity
//! values, and views/functions/procedures/triggers in dependency order.
//! `AddTableIndexes` adds one copied table's indexes before that, while the
//! others are still being copied; the finish then skips them.

use dbferry_plugin_abi::protocol::{
    ExistingTables, FinishRequest, ObjectKind, ObjectRef, PrepareRequest, SchemaOutcome, TableIndexesRequest,
};

use crate::cell::{flag, string, text, u64};
use crate::conn::{exec, rows, Conn};
use crate::ddl;
use crate::describe::module_object_kind;
use crate::detail::{DatabaseDetail, ModuleDetail, TableDetail};
use crate::error::{Error, Result};
use crate::flavour::Flavour;
use crate::quote::{ident, object_literal, string as literal};

/// State of a database on the target: (state_desc, read only).
pub fn database_state_sql(database: &str) -> String {
    format!(
        "SELECT state_desc, is_read_only FROM sys.databases WHERE name = {}",
        literal(database)
    )
}

/// Whether an object exists in the current database.
pub fn exists_sql(schema: &str, name: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM sys.objects WHERE object_id = OBJECT_ID({})",
        object_literal(schema, name)
    )
}

/// Whether an index (or key) named `index` exists on a table.
pub fn index_exists_sql(t: &TableDetail, index: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM sys.indexes WHERE object_id = OBJECT_ID({}) AND name = {}",
        object_literal(&t.schema, &t.name),
        literal(index)
    )
}

/// Whether a constraint named `name` exists in the current database schema.
pub fn constraint_exists_sql(schema: &str, name: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM sys.objects WHERE name = {} AND schema_id = SCHEMA_ID({})",
        literal(name),
        literal(schema)
    )
}

/// Foreign keys that reference a table, as DROP statements.
pub fn referencing_foreign_keys_sql(t: &TableDetail) -> String {
    format!(
        "SELECT N'ALTER TABLE ' + QUOTENAME(SCHEMA_NAME(p.schema_id)) + N'.' + QUOTENAME(p.name) + \
         N' DROP CONSTRAINT ' + QUOTENAME(fk.name) FROM sys.foreign_keys fk \
         JOIN sys.tables p ON p.object_id = fk.parent_object_id \
         WHERE fk.referenced_object_id = OBJECT_ID({})",
        object_literal(&t.schema, &t.name)
    )
}

async fn count(conn: &mut Conn, sql: &str) -> Result<u64> {
    Ok(rows(conn, sql).await?.first().map_or(0, |r| u64(r, 0)))
}

/// Definitions naming the source database (three-part names), which would
/// point at the source's name on the target after a rename.
pub fn mentions_database(m: &ModuleDetail, database: &str) -> bool {
    let lower = m.definition.to_lowercase();
    let db = database.to_lowercase();
    lower.contains(&format!("[{}].", db.replace(']', "]]"))) || lower.contains(&format!("{db}."))
}

/// Creates the destination database if needed, then its schemas, types,
/// sequences and tables (`USE`s the database; switches back to master).
pub async fn prepare(conn: &mut Conn, request: &PrepareRequest, flavour: Flavour) -> Result<SchemaOutcome> {
    let detail = DatabaseDetail::from_json(&request.schema.detail)?;
    let db = &request.database;
    // The daemon asked this at precheck (`CheckTarget`); asked again so
    // that no host skipping it gets a database half-created.
    let refused = crate::fit::unheld(flavour, &request.schema)?;
    if !refused.is_empty() {
        return Err(Error::Unsupported(format!(
            "the target is Babelfish, which cannot hold {} object(s) of this database: {}",
            refused.len(),
            refused.join("; ")
        )));
    }
    let mut outcome = SchemaOutcome::default();
    let state = rows(conn, &database_state_sql(db)).await?;
    match state.first() {
        None => {
            let create = flavour.create_database(
                db,
                &detail.collation,
                detail.snapshot_isolation,
                detail.read_committed_snapshot,
            );
            for statement in &create.statements {
                exec_catalog_change(conn, flavour, statement).await?;
            }
            outcome.warnings.extend(create.warning);
            outcome.created.push(ObjectRef {
                kind: ObjectKind::Database,
                name: db.clone(),
            });
        }
        Some(r) if string(r, 0) != "ONLINE" => {
            return Err(Error::NotFound(format!(
                "destination database {} is {}, not ONLINE",
                ident(db),
                string(r, 0)
            )))
        }
        Some(r) if flag(r, 1) => {
            return Err(Error::Unsupported(format!(
                "destination database {} is READ_ONLY",
                ident(db)
            )))
        }
        Some(_) => {}
    }
    exec(conn, &format!("USE {}", ident(db))).await?;
    let result = prepare_inside(conn, request, &detail, &mut outcome).await;
    let _ = exec(conn, "USE master").await;
    result?;
    Ok(outcome)
}

async fn prepare_inside(
    conn: &mut Conn,
    request: &PrepareRequest,
    detail: &DatabaseDetail,
    outcome: &mut SchemaOutcome,
) -> Result<()> {
    for schema in &detail.schemas {
        let found = count(
            conn,
            &format!("SELECT COUNT(*) FROM sys.schemas WHERE name = {}", literal(schema)),
        )
        .await?;
        if found == 0 {
            exec(conn, &ddl::create_schema(schema)).await?;
            outcome.created.push(ObjectRef {
                kind: ObjectKind::Schema,
                name: schema.clone(),
            });
        }
    }
    for t in &detail.alias_types {
        let sql = format!(
            "SELECT COUNT(*) FROM sys.types WHERE name = {} AND schema_id = SCHEMA_ID({})",
            literal(&t.name),
            literal(&t.schema)
        );
        if count(conn, &sql).await? == 0 {
            exec(conn, &ddl::create_alias_type(t)).await?;
        }
    }
    for c in &detail.xml_collections {
        let sql = format!(
            "SELECT COUNT(*) FROM sys.xml_schema_collections WHERE name = {} AND schema_id = SCHEMA_ID({})",
            literal(&c.name),
            literal(&c.schema)
        );
        if count(conn, &sql).await? == 0 {
            exec(conn, &ddl::create_xml_collection(c)).await?;
        }
    }
    for s in &detail.sequences {
        if count(conn, &exists_sql(&s.schema, &s.name)).await? > 0 {
            if request.resume {
                continue;
            }
            return Err(Error::Conflict(format!(
                "sequence {}.{} already exists in the destination database {}",
                ident(&s.schema),
                ident(&s.name),
                ident(&request.database)
            )));
        }
        exec(conn, &ddl::create_sequence(s)).await?;
        outcome.created.push(ObjectRef {
            kind: ObjectKind::Sequence,
            name: format!("{}.{}", s.schema, s.name),
        });
    }
    for table in &request.schema.tables {
        let t = TableDetail::from_json(&table.detail)?;
        let name = format!("{}.{}", t.schema, t.name);
        if count(conn, &exists_sql(&t.schema, &t.name)).await? > 0 {
            match (request.resume, request.existing_tables) {
                (true, _) => continue,
                (false, ExistingTables::Drop) => {
                    for drop_fk in rows(conn, &referencing_foreign_keys_sql(&t)).await? {
                        exec(conn, &string(&drop_fk, 0)).await?;
                    }
                    exec(conn, &ddl::drop_table(&t)).await?;
                    outcome.dropped.push(ObjectRef {
                        kind: ObjectKind::Table,
                        name: name.clone(),
                    });
                }
                (false, ExistingTables::Fail) => {
                    return Err(Error::Conflict(format!(
                        "table {} already exists in the destination database {}",
                        t.two_part(),
                        ident(&request.database)
                    )))
                }
            }
        }
        exec(conn, &ddl::create_table(&t)).await?;
        outcome.created.push(ObjectRef {
            kind: ObjectKind::Table,
            name,
        });
    }
    Ok(())
}

/// Everything after the data (`USE`s the database; switches back to master).
pub async fn finish(conn: &mut Conn, request: &FinishRequest, flavour: Flavour) -> Result<SchemaOutcome> {
    let detail = DatabaseDetail::from_json(&request.schema.detail)?;
    let mut outcome = SchemaOutcome::default();
    exec(conn, &format!("USE {}", ident(&request.database))).await?;
    let result = finish_inside(conn, request, &detail, &mut outcome, flavour).await;
    let _ = exec(conn, "USE master").await;
    result?;
    Ok(outcome)
}

async fn finish_inside(
    conn: &mut Conn,
    request: &FinishRequest,
    detail: &DatabaseDetail,
    outcome: &mut SchemaOutcome,
    flavour: Flavour,
) -> Result<()> {
    let tables = request
        .schema
        .tables
        .iter()
        .map(|t| TableDetail::from_json(&t.detail))
        .collect::<Result<Vec<_>>>()?;
    // Clustered indexes of every table first, then the rest.
    for clustered in [true, false] {
        for t in &tables {
            add_indexes(conn, t, clustered).await?;
        }
    }
    for t in &tables {
        for check in &t.checks {
            if count(conn, &constraint_exists_sql(&t.schema, &check.name)).await? == 0 {
                for sql in ddl::add_check(t, check) {
                    exec(conn, &sql).await?;
                }
            }
        }
    }
    for t in &tables {
        for fk in &t.foreign_keys {
            if count(conn, &constraint_exists_sql(&t.schema, &fk.name)).await? == 0 {
                for sql in ddl::add_foreign_key(t, fk) {
                    exec(conn, &sql).await?;
                }
            }
        }
    }
    for t in &tables {
        let Some(column) = t.identity() else { continue };
        let found = rows(conn, &flavour.identity_last_value_sql(&t.schema, &t.name)).await?;
        let target_last = found.first().and_then(|r| text(r, 0));
        let table = flavour.checkident_table(&t.schema, &t.name);
        if let Some(reseed) = ddl::reseed_identity(&table, column, target_last.as_deref()) {
            exec(conn, &reseed).await?;
        }
    }
    for m in &detail.modules {
        let exists = if m.schema.is_empty() {
            let sql = format!(
                "SELECT COUNT(*) FROM sys.triggers WHERE parent_class = 0 AND name = {}",
                literal(&m.name)
            );
            count(conn, &sql).await? > 0
        } else {
            count(conn, &exists_sql(&m.schema, &m.name)).await? > 0
        };
        if exists {
            if !request.resume {
                outcome.warnings.push(format!(
                    "{} {} already exists in {}; it was kept as it is",
                    format!("{:?}", m.kind).to_lowercase(),
                    m.object_name(),
                    request.database
                ));
            }
            continue;
        }
        if request.schema.database != request.database && mentions_database(m, &request.schema.database) {
            outcome.warnings.push(format!(
                "{} {} names the source database {} in its definition; after the rename to {} it still points there",
                format!("{:?}", m.kind).to_lowercase(),
                m.object_name(),
                request.schema.database,
                request.database
            ));
        }
        let mut failed = None;
        for sql in ddl::create_module(m) {
            if let Err(e) = exec(conn, &sql).await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => outcome.created.push(ObjectRef {
                kind: module_object_kind(m.kind),
                name: m.object_name(),
            }),
            // A module the target refuses (it references something missing,
            // as a stale source procedure may) is reported, not fatal: the
            // data and every other object are already in place.
            Some(e) => {
                let _ = exec(conn, "SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER ON").await;
                outcome.warnings.push(format!(
                    "{} {} could not be created on the target: {e}",
                    format!("{:?}", m.kind).to_lowercase(),
                    m.object_name()
                ));
            }
        }
    }
    for skipped in &detail.skipped {
        outcome
            .warnings
            .push(format!("not copied (unsupported object kind): {skipped}"));
    }
    Ok(())
}

/// Adds the indexes of `request.table` that the target table lacks, the
/// clustered one first, while the other tables are still being copied (see
/// `Request::AddTableIndexes`). `USE`s the database; switches back to master.
pub async fn add_table_indexes(conn: &mut Conn, request: &TableIndexesRequest) -> Result<()> {
    let table = TableDetail::from_json(&request.table.detail)?;
    exec(conn, &format!("USE {}", ident(&request.database))).await?;
    let mut result = add_indexes(conn, &table, true).await;
    if result.is_ok() {
        result = add_indexes(conn, &table, false).await;
    }
    let _ = exec(conn, "USE master").await;
    result
}

/// Adds `table`'s clustered (or else its other) indexes that it lacks, by
/// name: the early build may have added some, an interrupted finish others.
async fn add_indexes(conn: &mut Conn, table: &TableDetail, clustered: bool) -> Result<()> {
    for index in ddl::index_order(table)
        .into_iter()
        .filter(|i| i.kind.is_clustered() == clustered)
    {
        if count(conn, &index_exists_sql(table, &index.name)).await? > 0 {
            continue;
        }
        for sql in ddl::create_index(table, index) {
            exec(conn, &sql).await?;
        }
    }
    Ok(())
}

/// Most runs of one catalog change that a concurrent one failed.
const CATALOG_CHANGE_ATTEMPTS: u64 = 8;

/// Runs a catalog change (`CREATE DATABASE`), again after a growing pause
/// when it failed only because another session changed the catalog at the
/// same moment ([`Flavour::is_concurrent_catalog_change`]): another
/// import, or anyone's `CREATE DATABASE`, into the same Babelfish server.
async fn exec_catalog_change(conn: &mut Conn, flavour: Flavour, statement: &str) -> Result<()> {
    let mut attempt = 1;
    loop {
        match exec(conn, statement).await {
            Err(e) if attempt < CATALOG_CHANGE_ATTEMPTS && flavour.is_concurrent_catalog_change(&e) => {
                tracing::info!(attempt, error = %e, "a concurrent catalog change failed the statement; running it again");
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detail::ModuleKind;

    #[test]
    fn existence_checks_quote_names() {
        assert_eq!(
            exists_sql("s'", "t]"),
            "SELECT COUNT(*) FROM sys.objects WHERE object_id = OBJECT_ID(N'[s''].[t]]]')"
        );
        let t = TableDetail {
            schema: "dbo".into(),
            name: "t".into(),
            ..TableDetail::default()
        };
        assert!(index_exists_sql(&t, "PK'x").ends_with("AND name = N'PK''x'"));
        assert!(database_state_sql("d'b").ends_with("WHERE name = N'd''b'"));
        assert!(referencing_foreign_keys_sql(&t).contains("OBJECT_ID(N'[dbo].[t]')"));
    }

    #[test]
    fn renamed_databases_are_detected_in_definitions() {
        let m = ModuleDetail {
            kind: ModuleKind::View,
            schema: "dbo".into(),
            name: "v".into(),
            definition: "CREATE VIEW v AS SELECT * FROM [Sales].dbo.t".into(),
            ansi_nulls: true,
            quoted_identifier: true,
            disabled: false,
            parent: None,
        };
        assert!(mentions_database(&m, "sales"));
        assert!(!mentions_database(&m, "other"));
    }
}
