//! Server sessions lost to a network fault, and how they are ended.
//!
//! When the network to a server goes silent (packets dropped, no reset),
//! the client finds its connection dead (keepalive and `TCP_USER_TIMEOUT`,
//! see [`crate::conn::guard_socket`]) but the server learns nothing: the
//! session waits for its next packet for `net_read_timeout` (3600 s for
//! ours, see [`crate::conn::Role::setup`]) or `wait_timeout`, keeping its
//! open transaction and the row and metadata locks it took. A chunk redone
//! on a new connection then waits on those locks until
//! `innodb_lock_wait_timeout` and fails, on every redo.
//!
//! So a pooled connection that is dropped while mysql_async holds it
//! disconnected (an I/O or protocol failure; a server's error leaves the
//! session usable, and it is closed cleanly) is noted in [`LostSessions`]
//! by its server-side id. Before the next connection to that server and
//! account is handed out, the noted sessions are killed (`KILL <id>`: an
//! account may always kill its own sessions, no privilege needed) and
//! waited for until the server has rolled them back and let them go.
//!
//! An id names a session only within one run of the server: each note
//! carries the server's start ([`Incarnation`]), and the sessions of a
//! server that restarted since are gone already and are never killed (their
//! ids may be someone else's now).
//!
//! The notes also go to a [`journal`] in the engine's state directory when
//! the host names one, so that the next process (`dbferry resume` after an
//! import failed on a target that stayed unreachable) ends them too.

pub mod journal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use serde::{Deserialize, Serialize};

use crate::conn::cell;
use crate::error::{code, Context, Error, Result};
use journal::Journal;

/// How long the server may take to roll back and drop the killed sessions
/// before their chunks are redone anyway: a chunk's transaction is at most
/// `chunk_bytes` of rows, which InnoDB undoes in seconds.
pub const ROLLBACK_WAIT: Duration = Duration::from_secs(120);
/// Pause between two looks at whether the killed sessions are gone.
const GONE_POLL: Duration = Duration::from_millis(200);

/// When a server started, in seconds on its own clock (`UNIX_TIMESTAMP()`
/// less `Uptime`, both of which need no privilege): the same for every
/// session of one run of the server, whatever the client's clock says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incarnation(pub i64);

impl Incarnation {
    /// Reads the start of the server `conn` is connected to.
    pub async fn read(conn: &mut Conn) -> Result<Self> {
        let now: Option<Row> = conn
            .query_first("SELECT UNIX_TIMESTAMP()")
            .await
            .ctx(|| "reading the server's clock".into())?;
        let uptime: Option<Row> = conn
            .query_first("SHOW GLOBAL STATUS LIKE 'Uptime'")
            .await
            .ctx(|| "reading the server's uptime".into())?;
        match (now, uptime) {
            (Some(now), Some(uptime)) => {
                let now = i64::try_from(cell::u64(&now, 0)).unwrap_or(i64::MAX);
                let uptime = i64::try_from(cell::u64(&uptime, 1)).unwrap_or(0);
                Ok(Self(now - uptime))
            }
            _ => Err(Error::Internal(
                "the server did not say when it started (Uptime)".into(),
            )),
        }
    }

    /// Whether two readings are of the same run of the server. Each is a
    /// difference of two whole-second clocks read in two statements, so
    /// they may be 2 s apart; a restart closer to the previous start than
    /// that goes unseen.
    pub fn same_run(self, other: Self) -> bool {
        (self.0 - other.0).abs() <= 2
    }
}

/// A session lost to a network fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    /// Its id on the server (`CONNECTION_ID()`).
    pub id: u32,
    /// The run of the server it belonged to.
    pub incarnation: Incarnation,
}

/// What one server and account lost; shared by every pool of them in this
/// process, so that a new session (after an outage the host opens new
/// ones) ends what an earlier one lost.
#[derive(Default)]
struct Registry {
    pending: Mutex<Vec<Lost>>,
    /// One settle at a time: the others wait for it, then find nothing to do.
    settling: tokio::sync::Mutex<()>,
}

/// Every registry of this process, by server and account.
fn registries() -> &'static Mutex<HashMap<String, Arc<Registry>>> {
    static ALL: OnceLock<Mutex<HashMap<String, Arc<Registry>>>> = OnceLock::new();
    ALL.get_or_init(Default::default)
}

/// How a settle ended, for its log line.
#[derive(Debug, Default)]
struct Settled {
    killed: Vec<u32>,
    already_gone: Vec<u32>,
    restarted: Vec<u32>,
    refused: Vec<(u32, String)>,
}

/// The sessions one server and account lost to network faults, and the
/// way to end them (see the [module](self)).
#[derive(Clone)]
pub struct LostSessions {
    /// `user@host:port` (or the socket): whose sessions, on which server.
    server: Arc<str>,
    /// The instance id, for logs.
    instance: Arc<str>,
    registry: Arc<Registry>,
    journal: Option<Journal>,
}

impl LostSessions {
    /// The lost sessions of `server` (`user@host:port`), with those an
    /// earlier process left in the journal under `state_dir`, if any.
    pub fn of(server: String, instance: &str, state_dir: Option<std::path::PathBuf>) -> Self {
        let registry = registries()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(server.clone())
            .or_default()
            .clone();
        let journal = state_dir.map(Journal::new);
        let lost = Self {
            server: server.into(),
            instance: instance.into(),
            registry,
            journal,
        };
        if let Some(journal) = &lost.journal {
            for session in journal.load(&lost.server) {
                lost.remember(session);
            }
        }
        lost
    }

    /// Adds `session` unless it is known; whether it was new.
    fn remember(&self, session: Lost) -> bool {
        let mut pending = self.registry.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.contains(&session) {
            return false;
        }
        pending.push(session);
        true
    }

    /// Notes a session that a network fault took from us; it is killed
    /// before the next connection to the server is handed out.
    pub fn note(&self, session: Lost) {
        if !self.remember(session) {
            return;
        }
        tracing::warn!(
            instance = %self.instance,
            session_id = session.id,
            "lost a session to a network fault; the server may keep it with its locks, so it is killed once the server answers"
        );
        if let Some(journal) = &self.journal {
            if let Err(e) = journal.add(&self.server, session) {
                tracing::warn!(instance = %self.instance, session_id = session.id, error = %e, "cannot journal a lost session; only this process will kill it");
            }
        }
    }

    /// Whether nothing is waiting to be killed (cheap: every lease asks).
    pub fn is_empty(&self) -> bool {
        self.registry
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// The sessions waiting to be killed.
    pub fn pending(&self) -> Vec<Lost> {
        self.registry
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Kills every noted session over `conn` (a live connection to the same
    /// server, as the same account) and waits, up to [`ROLLBACK_WAIT`], until
    /// the server has let them go. A network failure on `conn` leaves them
    /// noted for the next try; a server refusing to kill one forgets it,
    /// with a warning.
    pub async fn settle(&self, conn: &mut Conn) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let _turn = self.registry.settling.lock().await;
        let lost = self.pending();
        if lost.is_empty() {
            return Ok(());
        }
        let now = match Incarnation::read(conn).await {
            Ok(now) => now,
            // Without the server's start an id may name someone else's
            // session: better leave the lost ones to their timeouts than
            // fail every lease on this server.
            Err(e) if e.server_code().is_some() || matches!(e, Error::Internal(_)) => {
                tracing::warn!(instance = %self.instance, error = %e, "cannot tell whether the server restarted; the sessions lost to a network fault are not killed");
                self.forget(&lost);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut settled = Settled::default();
        for session in &lost {
            // The id of our own connection can only match after a restart.
            if !session.incarnation.same_run(now) || session.id == conn.id() {
                settled.restarted.push(session.id);
                continue;
            }
            match conn.query_drop(format!("KILL {}", session.id)).await {
                Ok(()) => settled.killed.push(session.id),
                Err(mysql_async::Error::Server(e)) if e.code == code::NO_SUCH_THREAD => {
                    settled.already_gone.push(session.id)
                }
                Err(mysql_async::Error::Server(e)) => settled.refused.push((session.id, e.message)),
                Err(source) => {
                    return Err(Error::Sql {
                        context: format!("killing session {} lost on {}", session.id, self.instance),
                        source,
                    })
                }
            }
        }
        let lingering = wait_gone(conn, &settled.killed).await?;
        self.forget(&lost);
        // Killing sessions on someone's server is worth a warning.
        if settled.killed.is_empty() {
            tracing::info!(
                instance = %self.instance,
                already_gone = ?settled.already_gone,
                server_restarted = ?settled.restarted,
                "the sessions lost to a network fault had ended already"
            );
        } else {
            tracing::warn!(
                instance = %self.instance,
                killed = ?settled.killed,
                already_gone = ?settled.already_gone,
                server_restarted = ?settled.restarted,
                "killed the sessions lost to a network fault, which rolls back their transactions"
            );
        }
        for (id, why) in &settled.refused {
            tracing::warn!(instance = %self.instance, session_id = id, reason = %why, "the server refused to kill a lost session; its locks stay until it times out");
        }
        if !lingering.is_empty() {
            tracing::warn!(
                instance = %self.instance,
                session_ids = ?lingering,
                waited_seconds = ROLLBACK_WAIT.as_secs(),
                "killed lost sessions are still rolling back; their chunks may wait on their locks"
            );
        }
        Ok(())
    }

    /// Drops `done` from the registry and the journal.
    fn forget(&self, done: &[Lost]) {
        self.registry
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| !done.contains(s));
        if let Some(journal) = &self.journal {
            for session in done {
                if let Err(e) = journal.remove(&self.server, *session) {
                    tracing::warn!(instance = %self.instance, session_id = session.id, error = %e, "cannot take an ended session out of the journal");
                }
            }
        }
    }
}

/// Waits until none of `ids` is in the server's process list, or
/// [`ROLLBACK_WAIT`] passed; returns those still there. A killed session
/// stays listed until its transaction is rolled back, and an account sees
/// its own sessions there without the `PROCESS` privilege.
async fn wait_gone(conn: &mut Conn, ids: &[u32]) -> Result<Vec<u32>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    let sql = format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ({})",
        list.join(", ")
    );
    let deadline = Instant::now() + ROLLBACK_WAIT;
    loop {
        let listed: Vec<Row> = match conn.query(sql.as_str()).await {
            Ok(listed) => listed,
            // The kills are done; only the wait cannot be, here.
            Err(mysql_async::Error::Server(e)) => {
                tracing::warn!(error = %e.message, "cannot look whether killed sessions are gone; not waiting for them");
                return Ok(Vec::new());
            }
            Err(source) => {
                return Err(Error::Sql {
                    context: "looking whether killed sessions are gone".into(),
                    source,
                })
            }
        };
        let left: Vec<u32> = listed
            .iter()
            .filter_map(|r| u32::try_from(cell::u64(r, 0)).ok())
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(GONE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(id: u32) -> Lost {
        Lost {
            id,
            incarnation: Incarnation(1_700_000_000),
        }
    }

    #[test]
    fn a_restart_more_than_two_seconds_later_is_another_run() {
        let run = Incarnation(1_700_000_000);
        assert!(run.same_run(Incarnation(1_700_000_002)));
        assert!(run.same_run(Incarnation(1_699_999_998)));
        assert!(!run.same_run(Incarnation(1_700_000_003)));
    }

    #[test]
    fn pools_of_one_server_and_account_share_their_lost_sessions_and_others_do_not() {
        let a = LostSessions::of("u@shared-test:1".into(), "a", None);
        let b = LostSessions::of("u@shared-test:1".into(), "b", None);
        let other = LostSessions::of("v@shared-test:1".into(), "c", None);
        a.note(lost(7));
        a.note(lost(7));
        assert_eq!(b.pending(), vec![lost(7)], "noted once, seen by the other pool");
        assert!(other.is_empty());
        b.forget(&[lost(7)]);
        assert!(a.is_empty());
    }
}
