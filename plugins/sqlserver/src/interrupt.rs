//! `Request::Interrupt`: the statements of a session that a cancel may stop
//! midway (digests while verifying, index builds and the rest of the
//! finish). Each runs beside a subscription to the session's interrupts; an
//! interrupt drops the running request and has the server stop it (see
//! [`crate::flavour::RequestStop`]) before the connection is let go.
//! Nothing that writes rows runs this way: the copy stops between chunks,
//! with every chunk committed or not.

use std::time::Duration;

use tokio::sync::watch;

use crate::conn::{exec, Conn, Pool};

/// How long the server may take to acknowledge an Attention; the
/// connection is closed either way.
pub const ATTENTION_WAIT: Duration = Duration::from_secs(2);

/// The session's interrupts: a count that each interrupt raises.
#[derive(Debug)]
pub struct Interrupts {
    count: watch::Sender<u64>,
}

impl Default for Interrupts {
    fn default() -> Self {
        Self {
            count: watch::Sender::new(0),
        }
    }
}

impl Interrupts {
    /// Stops every statement that is running under [`Interrupts::watch`] now.
    pub fn interrupt(&self) {
        self.count.send_modify(|n| *n += 1);
    }

    /// A watch that fires on the next interrupt, and not on earlier ones.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.count.subscribe()
    }
}

/// Has the server stop the request running on `conn`, whose session id is
/// `session` where the flavour stops requests by it; best effort, logged.
pub async fn stop(pool: &Pool, conn: &mut Conn, session: Option<i64>) {
    match session {
        None => match tokio::time::timeout(ATTENTION_WAIT, conn.cancel_query()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "sending an Attention"),
            Err(_) => tracing::debug!("the server did not acknowledge the Attention in time"),
        },
        Some(id) => {
            let mut other = match pool.unpooled().await {
                Ok(other) => other,
                Err(e) => return tracing::debug!(session = id, error = %e, "connecting to stop a request"),
            };
            for sql in crate::flavour::cancel_backend_sql(id) {
                match exec(&mut other, &sql).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(session = id, error = %e, "stopping a session's request"),
                }
            }
        }
    }
}
