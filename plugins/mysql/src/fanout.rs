//! Runs independent DDL tasks on several connections at once: the caller's
//! own connection and extra ones leased from the pool, each first given the
//! caller's session. Tasks are handed out in order; once one has failed no
//! new one starts, and the failure of the earliest failed task is reported.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::{join_all, BoxFuture, FutureExt};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::conn::{Pool, Role};
use crate::error::{Context, Error, Result};

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
}

/// Hands out task numbers and remembers whether one failed.
struct Queue<'t> {
    tasks: &'t [Task],
    next: AtomicUsize,
    failed: AtomicBool,
}

impl<'t> Queue<'t> {
    fn take(&self) -> Option<(usize, &'t Task)> {
        if self.failed.load(Ordering::SeqCst) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        self.tasks.get(i).map(|t| (i, t))
    }

    /// Runs tasks on `conn` until none is left or one failed (returned
    /// with its number).
    async fn work(&self, conn: &mut Conn) -> Option<(usize, Error)> {
        while let Some((i, task)) = self.take() {
            for sql in &task.statements {
                if let Err(e) = conn.query_drop(sql.as_str()).await.ctx(|| task.context.clone()) {
                    self.failed.store(true, Ordering::SeqCst);
                    return Some((i, e));
                }
            }
        }
        None
    }
}

/// Runs `tasks` on `first` (already in the right session) and on up to
/// `width - 1` extra connections. An extra connection that the pool cannot
/// give at once, or that fails to open or to take the session, is simply
/// not used: the others do its share.
pub async fn run(first: &mut Conn, extra: &Extra<'_>, width: usize, tasks: &[Task]) -> Result<()> {
    let queue = Queue {
        tasks,
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
    let failure = queue.work(conn).await;
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
