//! Target DDL: `prepare` creates the tables without their deferred parts;
//! `finish` adds indexes and foreign keys, then routines, views (in
//! dependency order), triggers and events. Tables are created, and their
//! indexes added, on several connections at once ([`crate::fanout`]).

use std::collections::HashSet;
use std::sync::Arc;

use dbferry_plugin_abi::protocol::{
    Detail, ExistingTables, FinishRequest, ObjectKind, ObjectRef, PrepareRequest, SchemaOutcome, TableSchema,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::{cell, Pool, ServerFacts, PLAIN_SQL_MODE};
use crate::ddl::{rewrite_definer, with_plain_indexes, without_inherited_collations};
use crate::describe::database_exists;
use crate::detail::{DatabaseDetail, DdlKind, DetailCache, ObjectDdl, TableDetail};
use crate::error::{Context, Error, Result};
use crate::fanout::{self, Extra, Task, Trips};
use crate::indexes::index_task;
use crate::interrupt::Interruptible;
use crate::quote::{hex_str, ident, is_word, qualified, string};

async fn rows(conn: &mut Conn, sql: String) -> Result<Vec<Row>> {
    conn.query::<Row, _>(sql.as_str())
        .await
        .ctx(|| format!("running {sql}"))
}

async fn exec(conn: &mut Conn, sql: &str, what: impl FnOnce() -> String) -> Result<()> {
    conn.query_drop(sql).await.ctx(what)
}

/// Decodes a `DatabaseSchema::detail` (a null one is empty).
pub(crate) fn database_detail(detail: &Detail) -> Result<DatabaseDetail> {
    if detail.is_null() {
        return Ok(DatabaseDetail::default());
    }
    detail
        .decode()
        .map_err(|e| Error::Invalid(format!("malformed database detail: {e}")))
}

/// What already exists in a target database, by kind and (folded) name.
struct Existing {
    fold: bool,
    names: HashSet<(ObjectKind, String)>,
}

impl Existing {
    async fn load(conn: &mut Conn, database: &str) -> Result<Self> {
        let db = hex_str(database);
        let fold = rows(conn, "SELECT @@lower_case_table_names".into())
            .await?
            .first()
            .map(|r| cell::u64(r, 0) != 0)
            .unwrap_or(false);
        let mut names = HashSet::new();
        let queries = [
            format!("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db}"),
            format!("SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db}"),
            format!("SELECT TRIGGER_NAME, 'TRIGGER' FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db}"),
            format!("SELECT EVENT_NAME, 'EVENT' FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db}"),
        ];
        for sql in queries {
            for r in rows(conn, sql).await? {
                let kind = match cell::string(&r, 1).as_str() {
                    "VIEW" => ObjectKind::View,
                    "FUNCTION" => ObjectKind::Function,
                    "PROCEDURE" => ObjectKind::Procedure,
                    "TRIGGER" => ObjectKind::Trigger,
                    "EVENT" => ObjectKind::Event,
                    "SEQUENCE" => ObjectKind::Sequence,
                    _ => ObjectKind::Table,
                };
                let name = cell::string(&r, 0);
                names.insert((kind, Self::key(fold, kind, &name)));
            }
        }
        Ok(Self { fold, names })
    }

    fn key(fold: bool, kind: ObjectKind, name: &str) -> String {
        // Routine, trigger and event names are case-insensitive everywhere.
        let insensitive = fold || !matches!(kind, ObjectKind::Table | ObjectKind::View | ObjectKind::Sequence);
        if insensitive {
            name.to_lowercase()
        } else {
            name.to_string()
        }
    }

    fn has(&self, kind: ObjectKind, name: &str) -> bool {
        self.names.contains(&(kind, Self::key(self.fold, kind, name)))
    }

    /// The existing object a source object of `kind` named `name` collides with.
    fn collides(&self, kind: ObjectKind, name: &str) -> Option<ObjectKind> {
        let candidates: &[ObjectKind] = match kind {
            // Tables, views and sequences share one namespace.
            ObjectKind::Table | ObjectKind::View | ObjectKind::Sequence => {
                &[ObjectKind::Table, ObjectKind::View, ObjectKind::Sequence]
            }
            other => std::slice::from_ref(match other {
                ObjectKind::Function => &ObjectKind::Function,
                ObjectKind::Procedure => &ObjectKind::Procedure,
                ObjectKind::Trigger => &ObjectKind::Trigger,
                _ => &ObjectKind::Event,
            }),
        };
        candidates.iter().copied().find(|k| self.has(*k, name))
    }
}

fn drop_sql(database: &str, kind: ObjectKind, name: &str) -> String {
    let what = match kind {
        ObjectKind::Table => "TABLE",
        ObjectKind::View => "VIEW",
        ObjectKind::Sequence => "SEQUENCE",
        ObjectKind::Function => "FUNCTION",
        ObjectKind::Procedure => "PROCEDURE",
        ObjectKind::Trigger => "TRIGGER",
        _ => "EVENT",
    };
    format!("DROP {what} IF EXISTS {}", qualified(database, name))
}

fn describe_kind(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Table => "table",
        ObjectKind::View => "view",
        ObjectKind::Function => "function",
        ObjectKind::Procedure => "procedure",
        ObjectKind::Trigger => "trigger",
        ObjectKind::Event => "event",
        ObjectKind::Sequence => "sequence",
        ObjectKind::Schema => "schema",
        ObjectKind::Database => "database",
    }
}

/// Most `CREATE TABLE` statements sent in one round trip: one each cost a
/// tenth of dbferry's CPU on 1,000 small tables.
const CREATES_PER_TRIP: usize = 16;

/// How many connections a request's `parallelism` allows.
fn width(parallelism: u32) -> usize {
    parallelism.max(1) as usize
}

/// Creates the tables of one database on the target: collisions are
/// checked and dropped on `conn`, the tables created on up to
/// `parallelism` connections (`conn` and more from `pool`).
pub async fn prepare(
    conn: &mut Conn,
    pool: &Arc<Pool>,
    target: &ServerFacts,
    details: &DetailCache,
    request: &PrepareRequest,
) -> Result<SchemaOutcome> {
    let database = request.database.as_str();
    if database_exists(conn, database).await?.is_none() {
        return Err(Error::NotFound(format!(
            "database {} does not exist on the target",
            ident(database)
        )));
    }
    let detail = database_detail(&request.schema.detail)?;
    let existing = Existing::load(conn, database).await?;
    let mut outcome = SchemaOutcome::default();

    // Collisions with what the target already holds.
    let mut collisions = Vec::new();
    for object in &request.schema.objects {
        if let Some(found) = existing.collides(object.kind, &object.name) {
            if request.resume {
                // Tables this import created are kept; other objects are
                // recreated by `finish` anyway.
                continue;
            }
            collisions.push((object.clone(), found));
        }
    }
    if !collisions.is_empty() && request.existing_tables == ExistingTables::Fail {
        let list: Vec<String> = collisions
            .iter()
            .take(10)
            .map(|(o, found)| format!("{} {}", describe_kind(*found), qualified(database, &o.name)))
            .collect();
        let more = collisions.len().saturating_sub(10);
        return Err(Error::Conflict(format!(
            "the target already has {}{}",
            list.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )));
    }
    if !collisions.is_empty() {
        // Triggers before their tables, views before what they use: every
        // drop then removes something that is really there.
        let rank = |k: ObjectKind| match k {
            ObjectKind::Trigger => 0,
            ObjectKind::Event => 1,
            ObjectKind::View => 2,
            ObjectKind::Function | ObjectKind::Procedure => 3,
            _ => 4,
        };
        collisions.sort_by_key(|(_, found)| rank(*found));
        exec(conn, "SET SESSION foreign_key_checks = 0", || {
            "disabling foreign key checks".into()
        })
        .await?;
        for (object, found) in &collisions {
            let sql = drop_sql(database, *found, &object.name);
            exec(conn, &sql, || format!("dropping {}", qualified(database, &object.name))).await?;
            outcome.dropped.push(ObjectRef {
                kind: *found,
                name: object.name.clone(),
            });
        }
        exec(conn, "SET SESSION foreign_key_checks = 1", || {
            "enabling foreign key checks".into()
        })
        .await?;
    }

    let dropped: HashSet<&str> = outcome
        .dropped
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::Table | ObjectKind::Sequence))
        .map(|o| o.name.as_str())
        .collect();
    let mut tasks = Vec::new();
    for table in &request.schema.tables {
        if request.resume
            && existing.collides(ObjectKind::Table, &table.name).is_some()
            && !dropped.contains(table.name.as_str())
        {
            continue;
        }
        tasks.push(Task {
            context: format!("creating table {}", qualified(database, &table.name)),
            statements: vec![create_table_sql(
                table,
                &*details.table(&table.detail)?,
                request.inline_index_max_bytes,
            )],
        });
        outcome.created.push(ObjectRef {
            kind: ObjectKind::Table,
            name: table.name.clone(),
        });
    }

    // Tables, each connection's session set up once: the database, the
    // source's sql_mode without the checks that reject what SHOW CREATE
    // TABLE prints (a zero-date default made under a laxer session mode).
    let table_mode = table_ddl_sql_mode(&detail.sql_mode);
    let session = [
        format!("USE {}", ident(database)),
        format!("SET SESSION sql_mode = {}", string(&table_mode)),
    ];
    let restore = format!("SET SESSION sql_mode = '{PLAIN_SQL_MODE}'");
    exec(conn, &session[0], || format!("selecting {}", ident(database))).await?;
    exec(conn, &session[1], || "setting the source's sql_mode".into()).await?;
    // Sequences before the tables whose defaults call NEXTVAL on them.
    let sequences = create_sequences(conn, database, &detail, &existing, request.resume, &dropped).await;
    let sequences = match sequences {
        Ok(created) => created,
        Err(e) => {
            exec(conn, &restore, || "restoring sql_mode".into()).await?;
            return Err(e);
        }
    };
    outcome.created.splice(0..0, sequences);
    let extra = Extra {
        pool,
        setup: session.to_vec(),
        reset: Some(restore.clone()),
        interruptible: None,
    };
    let trips = Trips::batched(CREATES_PER_TRIP, target, &table_mode);
    let result = fanout::run(conn, &extra, width(request.parallelism), &tasks, trips).await;
    let restored = exec(conn, &restore, || "restoring sql_mode".into()).await;
    result.map_err(|e| {
        if e.server_code() == Some(crate::error::code::TABLE_EXISTS) {
            Error::Conflict(e.to_string())
        } else {
            e
        }
    })?;
    restored?;
    Ok(outcome)
}

/// Creates the source's sequences and sets each where the source stands
/// (`SETVAL` with `is_used = 0`: the next `NEXTVAL` returns it). Resuming,
/// a sequence an earlier attempt created is kept as it is.
async fn create_sequences(
    conn: &mut Conn,
    database: &str,
    detail: &DatabaseDetail,
    existing: &Existing,
    resume: bool,
    dropped: &HashSet<&str>,
) -> Result<Vec<ObjectRef>> {
    let mut created = Vec::new();
    for sequence in &detail.sequences {
        let name = qualified(database, &sequence.name);
        if resume && existing.has(ObjectKind::Sequence, &sequence.name) && !dropped.contains(sequence.name.as_str()) {
            continue;
        }
        exec(conn, &sequence.create, || format!("creating sequence {name}")).await?;
        let setval = format!(
            "SELECT SETVAL({name}, {}, 0, {})",
            number(&sequence.next)?,
            number(&sequence.round)?
        );
        exec(conn, &setval, || {
            format!("setting sequence {name} where the source stands")
        })
        .await?;
        created.push(ObjectRef {
            kind: ObjectKind::Sequence,
            name: sequence.name.clone(),
        });
    }
    Ok(created)
}

/// `text` when it is an integer literal (the detail came from a server, but
/// crossed the host and the state store on the way).
fn number(text: &str) -> Result<&str> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text)
    } else {
        Err(Error::Invalid(format!("a sequence value {text:?} is not an integer")))
    }
}

/// The CREATE TABLE of `table`: a table estimated at most
/// `inline_index_max_bytes` gets its non-FULLTEXT secondary indexes at once.
fn create_table_sql(table: &TableSchema, detail: &TableDetail, inline_index_max_bytes: u64) -> String {
    let base = without_inherited_collations(&detail.create_base);
    if table.estimated_bytes > inline_index_max_bytes {
        return base;
    }
    with_plain_indexes(&base, &detail.deferred_indexes)
}

/// Completes one database on the target after its data: the deferred
/// indexes on up to `parallelism` connections (`conn` and more from
/// `pool`), different tables at once; then, on `conn`, foreign keys,
/// routines, views, triggers and events.
pub async fn finish(
    conn: &mut Conn,
    pool: &Arc<Pool>,
    details: &DetailCache,
    interruptible: &Interruptible,
    request: &FinishRequest,
) -> Result<SchemaOutcome> {
    let database = request.database.as_str();
    let detail = database_detail(&request.schema.detail)?;
    let db = hex_str(database);
    let mut outcome = SchemaOutcome::default();
    exec(conn, &format!("USE {}", ident(database)), || {
        format!("selecting {}", ident(database))
    })
    .await?;

    // What an interrupted earlier finish may already have added.
    // Indexes and foreign keys apart: a foreign key's index usually shares
    // its name, and a small table got that index at CREATE TABLE.
    let mut have: HashSet<(String, String)> = HashSet::new();
    let mut have_foreign_keys: HashSet<(String, String)> = HashSet::new();
    for r in rows(
        conn,
        format!(
            "SELECT TABLE_NAME, INDEX_NAME, 0 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {db} \
             UNION SELECT TABLE_NAME, CONSTRAINT_NAME, 1 FROM information_schema.TABLE_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = {db} AND CONSTRAINT_TYPE = 'FOREIGN KEY'"
        ),
    )
    .await?
    {
        let set = if cell::u64(&r, 2) == 1 {
            &mut have_foreign_keys
        } else {
            &mut have
        };
        set.insert((cell::string(&r, 0), cell::string(&r, 1)));
    }

    let details = request
        .schema
        .tables
        .iter()
        .map(|t| details.table(&t.detail).map(|d| (t.name.as_str(), d)))
        .collect::<Result<Vec<_>>>()?;
    let tasks: Vec<Task> = details
        .iter()
        .filter_map(|(table, d)| {
            index_task(database, table, d, |index| {
                have.contains(&(table.to_string(), index.to_string()))
            })
        })
        .collect();
    let extra = Extra {
        pool,
        setup: vec![format!("USE {}", ident(database))],
        reset: None,
        interruptible: Some(interruptible),
    };
    // An index build can take long: one per round trip keeps them spread
    // over the connections.
    fanout::run(conn, &extra, width(request.parallelism), &tasks, Trips::ONE).await?;
    exec(conn, "SET SESSION foreign_key_checks = 0", || {
        "disabling foreign key checks".into()
    })
    .await?;
    for (table, d) in &details {
        let adds: Vec<String> = d
            .deferred_foreign_keys
            .iter()
            .filter(|f| f.name.is_empty() || !have_foreign_keys.contains(&(table.to_string(), f.name.clone())))
            .map(|f| format!("ADD {}", f.definition))
            .collect();
        if !adds.is_empty() {
            let sql = format!("ALTER TABLE {} {}", qualified(database, table), adds.join(", "));
            exec(conn, &sql, || {
                format!("adding foreign keys to {}", qualified(database, table))
            })
            .await?;
        }
    }
    exec(conn, "SET SESSION foreign_key_checks = 1", || {
        "enabling foreign key checks".into()
    })
    .await?;

    let existing = Existing::load(conn, database).await?;
    // Resuming: what an earlier attempt created stays as it is.
    let todo = |objects: &[ObjectDdl]| -> Vec<ObjectDdl> {
        objects
            .iter()
            .filter(|o| !(request.resume && existing.has(object_kind(o.kind), &o.name)))
            .cloned()
            .collect()
    };
    for object in &todo(&detail.routines) {
        create_fresh(conn, database, &existing, object, &mut outcome).await?;
    }
    create_views(conn, database, &existing, &todo(&detail.views), &mut outcome).await?;
    for object in todo(&detail.triggers).iter().chain(&todo(&detail.events)) {
        create_fresh(conn, database, &existing, object, &mut outcome).await?;
    }
    Ok(outcome)
}

fn object_kind(kind: DdlKind) -> ObjectKind {
    match kind {
        DdlKind::View => ObjectKind::View,
        DdlKind::Function => ObjectKind::Function,
        DdlKind::Procedure => ObjectKind::Procedure,
        DdlKind::Trigger => ObjectKind::Trigger,
        DdlKind::Event => ObjectKind::Event,
    }
}

/// Creates `object`, first dropping a same-named one (only ours can be
/// left: `prepare` refused or dropped any other).
async fn create_fresh(
    conn: &mut Conn,
    database: &str,
    existing: &Existing,
    object: &ObjectDdl,
    outcome: &mut SchemaOutcome,
) -> Result<()> {
    let kind = object_kind(object.kind);
    if existing.has(kind, &object.name) {
        let sql = drop_sql(database, kind, &object.name);
        exec(conn, &sql, || format!("dropping {}", qualified(database, &object.name))).await?;
    }
    create_object(conn, database, object, &mut outcome.warnings).await?;
    outcome.created.push(ObjectRef {
        kind,
        name: object.name.clone(),
    });
    Ok(())
}

/// Creates views until none is left or no more can be created: a view on a
/// view or on a function succeeds once what it uses exists.
async fn create_views(
    conn: &mut Conn,
    database: &str,
    existing: &Existing,
    views: &[ObjectDdl],
    outcome: &mut SchemaOutcome,
) -> Result<()> {
    for view in views {
        if existing.has(ObjectKind::View, &view.name) {
            let sql = drop_sql(database, ObjectKind::View, &view.name);
            exec(conn, &sql, || format!("dropping {}", qualified(database, &view.name))).await?;
        }
    }
    let mut pending: Vec<&ObjectDdl> = views.iter().collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for view in pending.iter().copied() {
            match create_object(conn, database, view, &mut outcome.warnings).await {
                Ok(()) => outcome.created.push(ObjectRef {
                    kind: ObjectKind::View,
                    name: view.name.clone(),
                }),
                Err(e) => {
                    failed.push(view);
                    errors.push(e);
                }
            }
        }
        if failed.len() == pending.len() {
            let first = errors.into_iter().next();
            return Err(first.unwrap_or_else(|| Error::Internal("views could not be created".into())));
        }
        pending = failed;
    }
    Ok(())
}

/// Executes an object's DDL under its own sql_mode, character set and
/// (events) time zone. A DEFINER the target refuses becomes CURRENT_USER,
/// with a warning.
async fn create_object(conn: &mut Conn, database: &str, object: &ObjectDdl, warnings: &mut Vec<String>) -> Result<()> {
    let name = qualified(database, &object.name);
    let what = || format!("creating {} {name}", object.kind.keyword().to_lowercase());
    let result = async {
        set_client(conn, object).await?;
        let first = run_ddl(conn, object, &object.create).await;
        match first {
            Err(e) if e.is_access_denied() => {
                let Some((rewritten, old)) = rewrite_definer(&object.create) else {
                    return Err(e);
                };
                run_ddl(conn, object, &rewritten).await?;
                let reason = match &e {
                    Error::Sql {
                        source: mysql_async::Error::Server(s),
                        ..
                    } => s.message.clone(),
                    other => other.to_string(),
                };
                warnings.push(format!(
                    "{} {name}: DEFINER={old} was refused by the target ({reason}); created with DEFINER=CURRENT_USER",
                    object.kind.keyword().to_lowercase()
                ));
                Ok(())
            }
            other => other,
        }
    }
    .await;
    let restore = conn
        .query_drop(format!(
            "SET NAMES utf8mb4, sql_mode = '{PLAIN_SQL_MODE}', time_zone = '+00:00'"
        ))
        .await
        .ctx(|| "restoring the session".into());
    result.map_err(|e| match e {
        Error::Sql { context, source } => Error::Sql {
            context: format!("{}: {context}", what()),
            source,
        },
        other => other,
    })?;
    restore
}

async fn set_client(conn: &mut Conn, object: &ObjectDdl) -> Result<()> {
    // The object keeps its own sql_mode where the target knows every name
    // in it (a routine stores it); else without what only affects GRANT.
    let known = conn
        .query_drop(format!("SET SESSION sql_mode = {}", string(&object.sql_mode)))
        .await
        .is_ok();
    let mode = if known {
        object.sql_mode.clone()
    } else {
        without_grant_modes(&object.sql_mode)
    };
    let mut sets = vec![format!("sql_mode = {}", string(&mode))];
    if let Some(tz) = &object.time_zone {
        sets.push(format!("time_zone = {}", string(tz)));
    }
    let cs = &object.character_set_client;
    let coll = &object.collation_connection;
    if is_word(cs) {
        let names = if is_word(coll) {
            format!("SET NAMES {cs} COLLATE {coll}, {}", sets.join(", "))
        } else {
            format!("SET NAMES {cs}, {}", sets.join(", "))
        };
        if conn.query_drop(names.as_str()).await.is_ok() {
            return Ok(());
        }
        // The collation may not exist here (utf8mb4_0900_ai_ci on MariaDB, say).
        let names = format!("SET NAMES {cs}, {}", sets.join(", "));
        if conn.query_drop(names.as_str()).await.is_ok() {
            return Ok(());
        }
    }
    let plain = format!("SET NAMES utf8mb4, {}", sets.join(", "));
    exec(conn, &plain, || "setting the object's session".into()).await
}

/// Sends `text` in the object's client character set.
async fn run_ddl(conn: &mut Conn, object: &ObjectDdl, text: &str) -> Result<()> {
    let cs = object.character_set_client.to_ascii_lowercase();
    let utf8 = matches!(cs.as_str(), "utf8" | "utf8mb3" | "utf8mb4" | "");
    if utf8 || text.is_ascii() || !is_word(&cs) {
        return exec(conn, text, || "running its DDL".into()).await;
    }
    // Re-encode in the client character set, server-side: the text came to
    // us as utf8mb4.
    let converted: Option<String> = conn
        .query_first(format!("SELECT HEX(CONVERT({} USING {cs}))", hex_str(text)))
        .await
        .ctx(|| format!("converting DDL to {cs}"))?;
    let bytes = converted
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| Error::Internal(format!("cannot convert DDL to {cs}")))?;
    conn.query_drop(bytes.as_slice()).await.ctx(|| "running its DDL".into())
}

/// The `sql_mode` table DDL runs under: the source's global mode, for the
/// modes that change how statements parse, minus those that only validate
/// values. A table keeps no mode of its own, and one created under a laxer
/// session than the global (a `'0000-00-00'` default, which MySQL's
/// NO_ZERO_DATE refuses) must be created again as it is.
fn table_ddl_sql_mode(source_global: &str) -> String {
    const VALIDATING: [&str; 6] = [
        "STRICT_TRANS_TABLES",
        "STRICT_ALL_TABLES",
        "NO_ZERO_DATE",
        "NO_ZERO_IN_DATE",
        "ERROR_FOR_DIVISION_BY_ZERO",
        "TRADITIONAL",
    ];
    source_global
        .split(',')
        .map(str::trim)
        .filter(|mode| !mode.is_empty() && !VALIDATING.iter().any(|v| v.eq_ignore_ascii_case(mode)))
        .filter(|mode| !only_for_grants(mode))
        .collect::<Vec<_>>()
        .join(",")
}

/// `NO_AUTO_CREATE_USER` (MariaDB's default) only changes GRANT, and MySQL
/// 8+ refuses the name: leaving it out changes no DDL and lets a MariaDB
/// source's mode be set on a MySQL target.
fn only_for_grants(mode: &str) -> bool {
    mode.eq_ignore_ascii_case("NO_AUTO_CREATE_USER")
}

/// `mode` without the modes that only affect GRANT (see [`only_for_grants`]).
fn without_grant_modes(mode: &str) -> String {
    mode.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty() && !only_for_grants(m))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod table_mode_tests {
    use super::table_ddl_sql_mode;

    #[test]
    fn table_ddl_keeps_parsing_modes_and_drops_value_checks() {
        assert_eq!(
            table_ddl_sql_mode(
                "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
            ),
            "ONLY_FULL_GROUP_BY,NO_ENGINE_SUBSTITUTION"
        );
        assert_eq!(table_ddl_sql_mode("ANSI_QUOTES,STRICT_ALL_TABLES"), "ANSI_QUOTES");
        assert_eq!(
            table_ddl_sql_mode(
                "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
            ),
            "NO_ENGINE_SUBSTITUTION"
        );
        assert_eq!(table_ddl_sql_mode(""), "");
    }
}
