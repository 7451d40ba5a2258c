//! Runs independent DDL tasks on several connections at once: the caller's
//! own connection and extra ones leased from the pool, each first given the
//! caller's session. Tasks are handed out in order, several consecutive
//! ones per round trip where the caller allows it; once one has failed no
//! new one starts, and the failure of the earliest failed task is reported.
//!
//! Several tasks go in one multi-statement query, which the server answers
//! statement by statement, so the client still wakes once per task; or, on
//! MariaDB, in one compound statement (`BEGIN NOT ATOMIC … END`), answered
//! once. A compound's error does not say which statement failed, so after
//! one the statements it did not finish run again the first way, where the
//! failing one fails again with its own error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::{join_all, BoxFuture, FutureExt};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::{Pool, Role, ServerFacts};
use crate::error::{Context, Error, Result};
use crate::interrupt::Interruptible;

/// Statements run in order on one connection: one unit of work.
#[derive(Clone, Debug)]
pub struct Task {
    /// What the task does, for its error ("creating table `db`.`t`").
    pub context: String,
    /// The statements.
    pub statements: Vec<String>,
}

/// Where extra connections come from and the session they need.
pub struct Extra<'a> {
    /// The pool to lease them from.
    pub pool: &'a Arc<Pool>,
    /// Statements that give a leased connection the caller's session.
    pub setup: Vec<String>,
    /// A statement that undoes `setup` before the connection goes back to
    /// the pool; when it fails the connection is discarded instead.
    pub reset: Option<String>,
    /// Where extra connections register while they work, so that a cancel
    /// can stop their statements (the caller registers its own).
    pub interruptible: Option<&'a Interruptible>,
}

/// How consecutive tasks share a round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trips {
    /// Most tasks per round trip.
    pub most: usize,
    /// Send them as one compound statement (see the module's comment).
    pub compound: bool,
}

impl Trips {
    /// One task per round trip.
    pub const ONE: Trips = Trips {
        most: 1,
        compound: false,
    };

    /// Up to `most` tasks per round trip, in a compound statement where
    /// `server` and the session's `sql_mode` allow one: MySQL has none
    /// outside stored programs, and in ORACLE mode MariaDB reads `BEGIN` as
    /// PL/SQL.
    pub fn batched(most: usize, server: &ServerFacts, sql_mode: &str) -> Trips {
        Trips {
            most,
            compound: server.mariadb && !sql_mode.to_ascii_uppercase().contains("ORACLE"),
        }
    }
}

/// Hands out task numbers and remembers whether one failed.
struct Queue<'t> {
    tasks: &'t [Task],
    /// Most tasks sent in one round trip.
    per_trip: usize,
    compound: bool,
    next: AtomicUsize,
    failed: AtomicBool,
}

impl<'t> Queue<'t> {
    /// The next consecutive tasks, with the number of the first.
    fn take(&self) -> Option<(usize, &'t [Task])> {
        if self.failed.load(Ordering::SeqCst) {
            return None;
        }
        let first = self.next.fetch_add(self.per_trip, Ordering::SeqCst);
        let end = first.saturating_add(self.per_trip).min(self.tasks.len());
        self.tasks
            .get(first..end)
            .filter(|taken| !taken.is_empty())
            .map(|t| (first, t))
    }

    /// Runs tasks on `conn` until none is left or one failed (returned
    /// with its number).
    async fn work(&self, conn: &mut Conn) -> Option<(usize, Error)> {
        while let Some((first, tasks)) = self.take() {
            let statements: Vec<(usize, &str)> = tasks
                .iter()
                .enumerate()
                .flat_map(|(i, task)| task.statements.iter().map(move |sql| (first + i, sql.as_str())))
                .collect();
            let sent = if self.compound {
                compound_trip(conn, &statements).await
            } else {
                round_trip(conn, &statements).await
            };
            if let Err((failed, e)) = sent {
                self.failed.store(true, Ordering::SeqCst);
                let context = self.tasks.get(failed).map(|t| t.context.clone()).unwrap_or_default();
                return Some((failed, Error::Sql { context, source: e }));
            }
        }
        None
    }
}

/// Runs `statements` (each with its task's number) in one round trip; on
/// failure, the number of the task whose statement failed.
async fn round_trip(
    conn: &mut Conn,
    statements: &[(usize, &str)],
) -> std::result::Result<(), (usize, mysql_async::Error)> {
    let Some(&(first, _)) = statements.first() else {
        return Ok(());
    };
    if let [(task, sql)] = statements {
        return conn.query_drop(*sql).await.map_err(|e| (*task, e));
    }
    let sql: Vec<&str> = statements.iter().map(|s| s.1).collect();
    let mut result = conn.query_iter(sql.join(";\n")).await.map_err(|e| (first, e))?;
    // mysql_async keeps a later statement's error until its result is the
    // current one, so a failure comes out of its own collect.
    for &(task, _) in statements {
        result.collect::<Row>().await.map_err(|e| (task, e))?;
    }
    let last = statements.last().map_or(first, |s| s.0);
    result.drop_result().await.map_err(|e| (last, e))
}

/// Counts the statements of a compound that finished, for [`compound_trip`].
const DONE_VARIABLE: &str = "@dbferry_statements_done";

/// Runs `statements` as one compound statement; after a failure, runs those
/// it did not finish through [`round_trip`], which reports the failing one.
async fn compound_trip(
    conn: &mut Conn,
    statements: &[(usize, &str)],
) -> std::result::Result<(), (usize, mysql_async::Error)> {
    if statements.len() < 2 {
        return round_trip(conn, statements).await;
    }
    // Reset outside the compound: one that fails to parse runs nothing.
    let mut sql = format!("SET {DONE_VARIABLE} = 0;\nBEGIN NOT ATOMIC\n");
    for (i, (_, statement)) in statements.iter().enumerate() {
        sql.push_str(statement);
        sql.push_str(&format!(";\nSET {DONE_VARIABLE} = {};\n", i + 1));
    }
    sql.push_str("END");
    if conn.query_drop(sql).await.is_ok() {
        return Ok(());
    }
    let done: usize = match conn
        .query_first::<Option<u64>, _>(format!("SELECT {DONE_VARIABLE}"))
        .await
    {
        Ok(Some(Some(done))) => usize::try_from(done).unwrap_or(0),
        _ => 0,
    };
    round_trip(conn, statements.get(done..).unwrap_or_default()).await
}

/// Runs `tasks` on `first` (already in the right session) and on up to
/// `width - 1` extra connections, up to `trips.most` consecutive tasks per
/// round trip but never so many that a connection goes without work.
/// An extra connection that the pool cannot give at once, or that fails to
/// open or to take the session, is simply not used: the others do its share.
pub async fn run(first: &mut Conn, extra: &Extra<'_>, width: usize, tasks: &[Task], trips: Trips) -> Result<()> {
    let queue = Queue {
        tasks,
        per_trip: (tasks.len() / width.max(1) / 4).clamp(1, trips.most.max(1)),
        compound: trips.compound,
        next: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
    };
    let extras = width.min(tasks.len()).saturating_sub(1);
    let mut workers: Vec<BoxFuture<'_, Option<(usize, Error)>>> = Vec::with_capacity(extras + 1);
    workers.push(queue.work(first).boxed());
    for _ in 0..extras {
        workers.push(leased(extra, &queue).boxed());
    }
    let failures = join_all(workers).await;
    match failures.into_iter().flatten().min_by_key(|(i, _)| *i) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// One extra connection's worker.
async fn leased(extra: &Extra<'_>, queue: &Queue<'_>) -> Option<(usize, Error)> {
    let mut lease = match open(extra).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(error = %e, "an extra connection for DDL is not available");
            return None;
        }
    };
    let Ok(conn) = lease.conn() else {
        return None;
    };
    let running = extra.interruptible.map(|registry| registry.enter(conn.id()));
    let failure = queue.work(conn).await;
    drop(running);
    let reset = match &extra.reset {
        Some(sql) => conn.query_drop(sql.as_str()).await.is_ok(),
        None => true,
    };
    if reset {
        lease.release();
    }
    failure
}

async fn open(extra: &Extra<'_>) -> Result<Option<crate::conn::Lease>> {
    let Some(mut lease) = extra.pool.try_get(Role::Control).await? else {
        return Ok(None);
    };
    let conn = lease.conn()?;
    for sql in &extra.setup {
        conn.query_drop(sql.as_str())
            .await
            .ctx(|| format!("setting up a DDL session: {sql}"))?;
    }
    Ok(Some(lease))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compound_statements_only_on_mariadb_outside_oracle_mode() {
        let mariadb = ServerFacts {
            mariadb: true,
            ..ServerFacts::default()
        };
        let mysql = ServerFacts::default();
        assert!(Trips::batched(16, &mariadb, "STRICT_TRANS_TABLES").compound);
        assert!(!Trips::batched(16, &mariadb, "PIPES_AS_CONCAT,oracle").compound);
        assert!(!Trips::batched(16, &mysql, "").compound);
        assert_eq!(Trips::batched(16, &mysql, "").most, 16);
    }
}
