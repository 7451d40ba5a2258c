//! Target schema steps: `PrepareTarget` creates the destination database
//! (named by the job's DBInfo, whatever the source's name) and its tables
//! without keys or indexes; `FinishTarget` adds, after the data, clustered
//! then nonclustered indexes and keys, checks, foreign keys, identity
//! values, and views/functions/procedures/triggers in dependency order.
//! `AddTableIndexes` adds one copied table's indexes before that, while the
//! others are still being copied; the finish then skips them.
//!
//! Each step runs on [`Steps`]: its DDL over TDS, its existence checks
//! there too or on a Babelfish catalogue connection.

use dbferry_plugin_abi::protocol::{
    ExistingTables, FinishRequest, ObjectKind, ObjectRef, PrepareRequest, SchemaOutcome, TableIndexesRequest,
};

use crate::catalog_source::{CatalogSource, PgCatalog};
use crate::cell::{flag, string, text, u64, Cells};
use crate::conn::{exec, rows, Conn};
use crate::ddl;
use crate::describe::module_object_kind;
use crate::detail::{DatabaseDetail, ModuleDetail, TableDetail};
use crate::error::{Error, Result};
use crate::flavour::Flavour;
use crate::quote::{ident, nvarchar, object_argument};

/// Where a schema step's statements run: its DDL on a TDS connection; its
/// existence checks on the same connection or, on Babelfish with
/// `postgres_port`, on a catalogue connection to the PostgreSQL port
/// ([`PgCatalog`]). PostgreSQL parses a check in a millisecond, where a
/// TDS session meets each new statement shape with Babelfish's cold T-SQL
/// parser: 40-130 ms each, on the import's critical path (see
/// [`crate::catalog_source`]). Both see the same committed catalogue: the
/// DDL runs outside any transaction.
pub struct Steps<'a> {
    conn: &'a mut Conn,
    catalog: Option<&'a mut PgCatalog>,
}

impl<'a> Steps<'a> {
    /// DDL on `conn`; checks on `catalog` when given, else on `conn`.
    pub fn new(conn: &'a mut Conn, catalog: Option<&'a mut PgCatalog>) -> Self {
        Self { conn, catalog }
    }

    async fn exec(&mut self, sql: &str) -> Result<()> {
        exec(self.conn, sql).await
    }

    /// A check's first row, as `read` reads it; `None` when it has none.
    async fn check<T>(&mut self, sql: &str, read: impl FnOnce(&dyn Cells) -> T) -> Result<Option<T>> {
        Ok(match self.catalog.as_deref_mut() {
            Some(catalog) => catalog.rows(sql).await?.first().map(|r| read(r)),
            None => rows(self.conn, sql).await?.first().map(|r| read(r)),
        })
    }

    /// A check's count (0 for no row).
    async fn count(&mut self, sql: &str) -> Result<u64> {
        Ok(self.check(sql, |r| u64(r, 0)).await?.unwrap_or(0))
    }

    /// Runs `step` with `database` current on both connections, then
    /// goes back to master on the TDS connection, which is pooled again
    /// (the catalogue connection enters master whenever it is taken).
    async fn inside<T>(&mut self, database: &str, step: impl AsyncFnOnce(&mut Self) -> Result<T>) -> Result<T> {
        exec(self.conn, &format!("USE {}", ident(database))).await?;
        if let Some(catalog) = self.catalog.as_deref_mut() {
            catalog.enter(database).await?;
        }
        let result = step(self).await;
        let _ = exec(self.conn, "USE master").await;
        result
    }
}

/// State of a database on the target: (state_desc, read only); no row
/// when it does not exist.
pub fn database_state_sql(database: &str) -> String {
    format!(
        "SELECT state_desc, is_read_only FROM sys.databases WHERE name = {}",
        nvarchar(database)
    )
}

/// Whether an object exists in the current database.
pub fn exists_sql(schema: &str, name: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM sys.objects WHERE object_id = OBJECT_ID({})",
        object_argument(schema, name)
    )
}

/// Whether an index (or key) named `index` exists on a table.
pub fn index_exists_sql(t: &TableDetail, index: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM sys.indexes WHERE object_id = OBJECT_ID({}) AND name = {}",
        object_argument(&t.schema, &t.name),
        nvarchar(index)
    )
}

/// Whether a constraint named `name` exists in the current database schema.
pub fn constraint_exists_sql(schema: &str, name: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM sys.objects WHERE name = {} AND schema_id = SCHEMA_ID({})",
        nvarchar(name),
        nvarchar(schema)
    )
}

/// Foreign keys that reference a table, as DROP statements (T-SQL only:
/// it joins strings with `+`).
pub fn referencing_foreign_keys_sql(t: &TableDetail) -> String {
    format!(
        "SELECT N'ALTER TABLE ' + QUOTENAME(SCHEMA_NAME(p.schema_id)) + N'.' + QUOTENAME(p.name) + \
         N' DROP CONSTRAINT ' + QUOTENAME(fk.name) FROM sys.foreign_keys fk \
         JOIN sys.tables p ON p.object_id = fk.parent_object_id \
         WHERE fk.referenced_object_id = OBJECT_ID({})",
        crate::quote::object_literal(&t.schema, &t.name)
    )
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
pub async fn prepare(mut steps: Steps<'_>, request: &PrepareRequest, flavour: Flavour) -> Result<SchemaOutcome> {
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
    let state = steps
        .check(&database_state_sql(db), |r| (string(r, 0), flag(r, 1)))
        .await?;
    match state {
        None => {
            let create = flavour.create_database(
                db,
                &detail.collation,
                detail.snapshot_isolation,
                detail.read_committed_snapshot,
            );
            for statement in &create.statements {
                exec_catalog_change(steps.conn, flavour, statement).await?;
            }
            outcome.warnings.extend(create.warning);
            outcome.created.push(ObjectRef {
                kind: ObjectKind::Database,
                name: db.clone(),
            });
        }
        Some((state, _)) if state != "ONLINE" => {
            return Err(Error::NotFound(format!(
                "destination database {} is {state}, not ONLINE",
                ident(db)
            )))
        }
        Some((_, true)) => {
            return Err(Error::Unsupported(format!(
                "destination database {} is READ_ONLY",
                ident(db)
            )))
        }
        Some(_) => {}
    }
    steps
        .inside(db, async |steps| {
            prepare_inside(steps, request, &detail, &mut outcome).await
        })
        .await?;
    Ok(outcome)
}

async fn prepare_inside(
    steps: &mut Steps<'_>,
    request: &PrepareRequest,
    detail: &DatabaseDetail,
    outcome: &mut SchemaOutcome,
) -> Result<()> {
    for schema in &detail.schemas {
        let found = steps
            .count(&format!(
                "SELECT COUNT(*) FROM sys.schemas WHERE name = {}",
                nvarchar(schema)
            ))
            .await?;
        if found == 0 {
            steps.exec(&ddl::create_schema(schema)).await?;
            outcome.created.push(ObjectRef {
                kind: ObjectKind::Schema,
                name: schema.clone(),
            });
        }
    }
    for t in &detail.alias_types {
        let sql = format!(
            "SELECT COUNT(*) FROM sys.types WHERE name = {} AND schema_id = SCHEMA_ID({})",
            nvarchar(&t.name),
            nvarchar(&t.schema)
        );
        if steps.count(&sql).await? == 0 {
            steps.exec(&ddl::create_alias_type(t)).await?;
        }
    }
    for c in &detail.xml_collections {
        let sql = format!(
            "SELECT COUNT(*) FROM sys.xml_schema_collections WHERE name = {} AND schema_id = SCHEMA_ID({})",
            nvarchar(&c.name),
            nvarchar(&c.schema)
        );
        if steps.count(&sql).await? == 0 {
            steps.exec(&ddl::create_xml_collection(c)).await?;
        }
    }
    for s in &detail.sequences {
        if steps.count(&exists_sql(&s.schema, &s.name)).await? > 0 {
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
        steps.exec(&ddl::create_sequence(s)).await?;
        outcome.created.push(ObjectRef {
            kind: ObjectKind::Sequence,
            name: format!("{}.{}", s.schema, s.name),
        });
    }
    for table in &request.schema.tables {
        let t = TableDetail::from_json(&table.detail)?;
        let name = format!("{}.{}", t.schema, t.name);
        if steps.count(&exists_sql(&t.schema, &t.name)).await? > 0 {
            match (request.resume, request.existing_tables) {
                (true, _) => continue,
                (false, ExistingTables::Drop) => {
                    for drop_fk in rows(steps.conn, &referencing_foreign_keys_sql(&t)).await? {
                        steps.exec(&string(&drop_fk, 0)).await?;
                    }
                    steps.exec(&ddl::drop_table(&t)).await?;
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
        steps.exec(&ddl::create_table(&t)).await?;
        outcome.created.push(ObjectRef {
            kind: ObjectKind::Table,
            name,
        });
    }
    Ok(())
}

/// Everything after the data (`USE`s the database; switches back to master).
pub async fn finish(mut steps: Steps<'_>, request: &FinishRequest, flavour: Flavour) -> Result<SchemaOutcome> {
    let detail = DatabaseDetail::from_json(&request.schema.detail)?;
    let mut outcome = SchemaOutcome::default();
    steps
        .inside(&request.database, async |steps| {
            finish_inside(steps, request, &detail, &mut outcome, flavour).await
        })
        .await?;
    Ok(outcome)
}

async fn finish_inside(
    steps: &mut Steps<'_>,
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
            add_indexes(steps, t, clustered).await?;
        }
    }
    for t in &tables {
        for check in &t.checks {
            if steps.count(&constraint_exists_sql(&t.schema, &check.name)).await? == 0 {
                for sql in ddl::add_check(t, check) {
                    steps.exec(&sql).await?;
                }
            }
        }
    }
    for t in &tables {
        for fk in &t.foreign_keys {
            if steps.count(&constraint_exists_sql(&t.schema, &fk.name)).await? == 0 {
                for sql in ddl::add_foreign_key(t, fk) {
                    steps.exec(&sql).await?;
                }
            }
        }
    }
    for t in &tables {
        let Some(column) = t.identity() else { continue };
        let target_last = steps
            .check(&flavour.identity_last_value_sql(&t.schema, &t.name), |r| text(r, 0))
            .await?
            .flatten();
        let table = flavour.checkident_table(&t.schema, &t.name);
        if let Some(reseed) = ddl::reseed_identity(&table, column, target_last.as_deref()) {
            steps.exec(&reseed).await?;
        }
    }
    for m in &detail.modules {
        let exists = if m.schema.is_empty() {
            let sql = format!(
                "SELECT COUNT(*) FROM sys.triggers WHERE parent_class = 0 AND name = {}",
                nvarchar(&m.name)
            );
            steps.count(&sql).await? > 0
        } else {
            steps.count(&exists_sql(&m.schema, &m.name)).await? > 0
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
            if let Err(e) = steps.exec(&sql).await {
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
                let _ = steps.exec("SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER ON").await;
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
pub async fn add_table_indexes(mut steps: Steps<'_>, request: &TableIndexesRequest) -> Result<()> {
    let table = TableDetail::from_json(&request.table.detail)?;
    steps
        .inside(&request.database, async |steps| {
            add_indexes(steps, &table, true).await?;
            add_indexes(steps, &table, false).await
        })
        .await
}

/// Adds `table`'s clustered (or else its other) indexes that it lacks, by
/// name: the early build may have added some, an interrupted finish others.
async fn add_indexes(steps: &mut Steps<'_>, table: &TableDetail, clustered: bool) -> Result<()> {
    for index in ddl::index_order(table)
        .into_iter()
        .filter(|i| i.kind.is_clustered() == clustered)
    {
        if steps.count(&index_exists_sql(table, &index.name)).await? > 0 {
            continue;
        }
        for sql in ddl::create_index(table, index) {
            steps.exec(&sql).await?;
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
            "SELECT COUNT(*) FROM sys.objects WHERE object_id = OBJECT_ID(CAST(N'[s''].[t]]]' AS nvarchar(4000)))"
        );
        let t = TableDetail {
            schema: "dbo".into(),
            name: "t".into(),
            ..TableDetail::default()
        };
        assert!(index_exists_sql(&t, "PK'x").ends_with("AND name = CAST(N'PK''x' AS nvarchar(4000))"));
        assert!(database_state_sql("d'b").ends_with("WHERE name = CAST(N'd''b' AS nvarchar(4000))"));
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
