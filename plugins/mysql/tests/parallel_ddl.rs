//! Target DDL on several connections at once, against real MariaDB
//! and MySQL servers (started by `dbferry-testkit`): tables are created in parallel
//! but reported in schema order, the earliest failure is the one reported,
//! indexes are added in parallel (or one table's while the copy goes on),
//! and every extra connection goes back to the pool with a neutral session.

use dbferry_mysql::conn::{runtime, Pool, Role, PLAIN_SQL_MODE};
use dbferry_mysql::fanout::{self, Extra, Task, Trips};
use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::Session;
use dbferry_plugin_abi::protocol::{
    DatabaseSchema, Detail, ErrorKind, ExistingTables, FinishRequest, ObjectKind, PluginError, PrepareRequest,
    SchemaOutcome, SessionConfig, TableIndexesRequest, TableSchema,
};
use dbferry_testkit::{Flavour, Server};
use mysql_async::prelude::Queryable;

const TABLES: usize = 24;

fn config(server: &Server, max_connections: u32) -> SessionConfig {
    server.session_config("parallel-ddl", max_connections)
}

/// A source database `{prefix}_src` of [`TABLES`] tables, each with a
/// secondary index and every third with a FULLTEXT index too, and an empty
/// `{prefix}_dst`. Returns the session and the source's schema.
fn setup(flavour: Flavour, prefix: &str) -> (MysqlSession, DatabaseSchema) {
    let server = flavour.shared();
    let (src, dst) = (format!("{prefix}_src"), format!("{prefix}_dst"));
    let mut script = format!("CREATE DATABASE {src}; CREATE DATABASE {dst}; USE {src};");
    for i in 0..TABLES {
        let fulltext = if i % 3 == 0 { ", FULLTEXT KEY ft (body)" } else { "" };
        script.push_str(&format!(
            "CREATE TABLE t{i:02} (id INT PRIMARY KEY, k INT, body TEXT, KEY k_1 (k), KEY k_2 (k, id){fulltext}); \
             INSERT INTO t{i:02} VALUES (1, {i}, 'some words'), (2, {i}, 'more words');"
        ));
    }
    server.exec(&script);
    let session = MysqlSession::connect(&config(server, 6)).expect("connect");
    let schema = session.describe_database(&src).expect("describe");
    assert_eq!(schema.tables.len(), TABLES);
    (session, schema)
}

fn prepare(session: &MysqlSession, dst: &str, schema: &DatabaseSchema) -> Result<SchemaOutcome, PluginError> {
    session.prepare_target(PrepareRequest {
        database: dst.into(),
        schema: schema.clone(),
        existing_tables: ExistingTables::Fail,
        resume: false,
        inline_index_max_bytes: 0,
        parallelism: 4,
    })
}

fn index_names(flavour: Flavour, db: &str, table: &str) -> Vec<String> {
    flavour
        .shared()
        .query(&format!(
            "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}' ORDER BY INDEX_NAME"
        ))
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect()
}

fn finish(session: &MysqlSession, dst: &str, schema: &DatabaseSchema) -> Result<SchemaOutcome, PluginError> {
    session.finish_target(FinishRequest {
        database: dst.into(),
        schema: schema.clone(),
        resume: false,
        parallelism: 4,
    })
}

/// Every one of `tables` has the same indexes in `{prefix}_dst` as in `{prefix}_src`.
fn assert_same_indexes(flavour: Flavour, prefix: &str, tables: &[TableSchema]) {
    let (src, dst) = (format!("{prefix}_src"), format!("{prefix}_dst"));
    for table in tables {
        assert_eq!(
            index_names(flavour, &dst, &table.name),
            index_names(flavour, &src, &table.name),
            "{}",
            table.name
        );
    }
}

dbferry_testkit::on_both_flavours! {
fn tables_are_reported_in_schema_order_and_get_every_index(flavour: Flavour) {
    let (session, schema) = setup(flavour, "order");
    let outcome = prepare(&session, "order_dst", &schema).expect("prepare");
    let created: Vec<&str> = outcome.created.iter().map(|o| o.name.as_str()).collect();
    let expected: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(created, expected);
    assert!(outcome.created.iter().all(|o| o.kind == ObjectKind::Table));
    // Every index was deferred (inline_index_max_bytes = 0).
    assert_eq!(index_names(flavour, "order_dst", "t00"), ["PRIMARY"]);

    finish(&session, "order_dst", &schema).expect("finish");
    assert_same_indexes(flavour, "order", &schema.tables);
}

fn a_tables_indexes_added_during_the_copy_are_kept_by_the_finish(flavour: Flavour) {
    let (session, schema) = setup(flavour, "early");
    prepare(&session, "early_dst", &schema).expect("prepare");
    // t00 has a FULLTEXT index besides k_1 and k_2: one statement each.
    for table in &schema.tables[..2] {
        session
            .add_table_indexes(TableIndexesRequest {
                database: "early_dst".into(),
                table: table.clone(),
            })
            .expect("add the table's indexes");
    }
    assert_same_indexes(flavour, "early", &schema.tables[..2]);
    assert_eq!(index_names(flavour, "early_dst", "t02"), ["PRIMARY"], "only the tables named");
    // Asked again (a retried call), nothing is added twice.
    session
        .add_table_indexes(TableIndexesRequest {
            database: "early_dst".into(),
            table: schema.tables[0].clone(),
        })
        .expect("adding what exists is a no-op");
    finish(&session, "early_dst", &schema).expect("the finish skips the indexes that exist");
    assert_same_indexes(flavour, "early", &schema.tables);
}

fn the_earliest_failing_create_is_reported_by_name_and_nothing_succeeds(flavour: Flavour) {
    let (session, mut schema) = setup(flavour, "fail");
    // Table 3 cannot be created; a second `t01` at the end would collide.
    let mut broken: serde_json::Value = schema.tables[3].detail.decode().expect("detail");
    broken["create_base"] = serde_json::json!("CREATE TABLE t03 (id INT PRIMARY KEY,)");
    schema.tables[3].detail = Detail::encode(&broken).expect("detail");
    let mut again = schema.tables[1].clone();
    again.name = "t01".into();
    schema.tables.push(again);
    let error = prepare(&session, "fail_dst", &schema).expect_err("a broken CREATE must fail the prepare");
    assert_eq!(error.kind, ErrorKind::Query, "{error:?}");
    assert!(error.message.contains("`fail_dst`.`t03`"), "{}", error.message);

    // Only the collision left: reported as a conflict, with the contract code.
    schema.tables.remove(3);
    flavour.shared().exec("DROP DATABASE fail_dst; CREATE DATABASE fail_dst");
    let error = prepare(&session, "fail_dst", &schema).expect_err("a colliding CREATE must fail the prepare");
    assert_eq!(error.kind, ErrorKind::Conflict, "{error:?}");
    assert_eq!(error.code.as_deref(), Some("InvalidDBName.Exists"));
    assert!(error.message.contains("`fail_dst`.`t01`"), "{}", error.message);
}

fn extra_connections_take_the_session_and_go_back_neutral(flavour: Flavour) {
    let server = flavour.shared();
    server.exec("CREATE DATABASE fan; CREATE TABLE fan.seen (conn BIGINT, mode VARCHAR(200), db VARCHAR(64))");
    let pool = Pool::new(&config(server, 6)).expect("pool");
    let rt = runtime().expect("runtime");
    let tasks: Vec<Task> = (0..12)
        .map(|i| Task {
            context: format!("task {i}"),
            statements: vec![
                "DO SLEEP(0.05)".into(),
                "INSERT INTO seen VALUES (CONNECTION_ID(), @@sql_mode, DATABASE())".into(),
            ],
        })
        .collect();
    let session = vec![
        "USE fan".to_string(),
        "SET SESSION sql_mode = 'ANSI_QUOTES'".to_string(),
    ];
    rt.block_on(async {
        let mut first = pool.get(Role::Control).await.expect("lease");
        let conn = first.conn().expect("conn");
        for sql in &session {
            conn.query_drop(sql.as_str()).await.expect("session");
        }
        let extra = Extra {
            pool: &pool,
            setup: session.clone(),
            reset: Some(format!("SET SESSION sql_mode = '{PLAIN_SQL_MODE}'")),
            interruptible: None,
        };
        fanout::run(conn, &extra, 4, &tasks, Trips::ONE).await.expect("run");
        // A failure: the earliest failed task is reported, whatever ran
        // meanwhile on the other connections.
        let mut failing = tasks.clone();
        failing[2].statements.push("SELECT * FROM no_such_table".into());
        failing[5].statements.push("SELECT * FROM no_such_table".into());
        let error = fanout::run(conn, &extra, 4, &failing, Trips::ONE)
            .await
            .expect_err("must fail");
        assert!(error.to_string().starts_with("task 2: "), "{error}");
        conn.query_drop(format!("SET SESSION sql_mode = '{PLAIN_SQL_MODE}'"))
            .await
            .expect("restore");
        first.release();
    });
    let rows = server.query("SELECT COUNT(*), COUNT(DISTINCT conn), MIN(mode), MAX(mode), MIN(db) FROM fan.seen");
    let row: Vec<String> = rows[0].iter().map(|c| c.clone().unwrap_or_default()).collect();
    let tasks_run: usize = row[0].parse().expect("count");
    let connections: usize = row[1].parse().expect("count");
    assert!(tasks_run >= 12, "every task of the first run ran: {row:?}");
    assert!(
        (2..=4).contains(&connections),
        "the tasks ran on several connections, at most 4: {row:?}"
    );
    assert_eq!(
        (row[2].as_str(), row[3].as_str(), row[4].as_str()),
        ("ANSI_QUOTES", "ANSI_QUOTES", "fan")
    );

    // Every pooled connection is back in the neutral mode.
    rt.block_on(async {
        let mut leases = Vec::new();
        for _ in 0..4 {
            let mut lease = pool.get(Role::Control).await.expect("lease");
            let mode: Option<String> = lease
                .conn()
                .expect("conn")
                .query_first("SELECT @@sql_mode")
                .await
                .expect("sql_mode");
            assert_eq!(mode.as_deref(), Some(PLAIN_SQL_MODE));
            leases.push(lease);
        }
        for lease in leases {
            lease.release();
        }
    });
    let _guard = rt.enter();
    pool.close_idle();
}

fn tasks_sent_several_per_round_trip_report_the_failing_one_and_nothing_after_it_runs(flavour: Flavour) {
    let server = flavour.shared();
    server.exec("CREATE DATABASE trip; CREATE TABLE trip.done (task INT)");
    let pool = Pool::new(&config(server, 2)).expect("pool");
    let rt = runtime().expect("runtime");
    // Task `bad` fails when it runs (a missing table) or, with `unparsable`,
    // already when the server parses it.
    let tasks = |bad: Option<usize>, unparsable: bool| -> Vec<Task> {
        (0..40)
            .map(|i| {
                let sql = match (bad == Some(i), unparsable) {
                    (false, _) => format!("INSERT INTO trip.done VALUES ({i})"),
                    (true, false) => format!("INSERT INTO trip.no_such_table VALUES ({i})"),
                    (true, true) => format!("INSERT INTO trip.done VALUES ({i}"),
                };
                Task {
                    context: format!("task {i}"),
                    statements: vec![sql],
                }
            })
            .collect()
    };
    let done = || -> Vec<usize> {
        let rows = server.query("SELECT task FROM trip.done ORDER BY task");
        server.exec("DELETE FROM trip.done");
        rows.into_iter()
            .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
            .collect()
    };
    rt.block_on(async {
        let mut lease = pool.get(Role::Control).await.expect("lease");
        let conn = lease.conn().expect("conn");
        let extra = Extra {
            pool: &pool,
            setup: Vec::new(),
            reset: None,
            interruptible: None,
        };
        // Compound statements (`BEGIN NOT ATOMIC`) exist only on MariaDB;
        // Trips::batched never asks for them on MySQL.
        let modes: &[bool] = match flavour {
            Flavour::MariaDb => &[false, true],
            Flavour::MySql => &[false],
        };
        for &compound in modes {
            // One connection, 40 tasks, at most 8 per round trip: 8 per trip.
            let trips = Trips { most: 8, compound };
            fanout::run(conn, &extra, 1, &tasks(None, false), trips)
                .await
                .expect("run");
            assert_eq!(done(), (0..40).collect::<Vec<_>>(), "compound: {compound}");
            // The compound really ran, to its end, rather than falling back.
            let counted: Option<Option<u64>> = conn
                .query_first("SELECT @dbferry_statements_done")
                .await
                .expect("counter");
            assert_eq!(counted.flatten(), compound.then_some(8), "compound: {compound}");
            // First, middle and last of a trip, the first of the next, the very last.
            for bad in [0, 5, 7, 8, 39] {
                for unparsable in [false, true] {
                    let error = fanout::run(conn, &extra, 1, &tasks(Some(bad), unparsable), trips)
                        .await
                        .expect_err("must fail");
                    let case = format!("compound: {compound}, failing task {bad}, unparsable: {unparsable}");
                    assert!(
                        error.to_string().starts_with(&format!("task {bad}: ")),
                        "{case}: {error}"
                    );
                    let expected = if unparsable { "syntax" } else { "doesn't exist" };
                    assert!(error.to_string().contains(expected), "{case}: {error}");
                    assert_eq!(done(), (0..bad).collect::<Vec<_>>(), "{case}");
                }
            }
        }
        lease.release();
    });
    let _guard = rt.enter();
    pool.close_idle();
}
}
