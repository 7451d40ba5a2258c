//! A chunk's batches, fed through a short queue to the task that writes
//! them, whichever way it writes ([`crate::writer`], [`crate::pgload`]).
//! The host's `write` blocks while the queue is full, which is the
//! backpressure; a task that failed stops taking batches, and the next
//! `write` reports its error.

use std::future::Future;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::conn::runtime;
use crate::error::{Error, Result};

/// Batches queued towards the writing task.
const DEPTH: usize = 2;

/// The queue into one chunk's writing task, whose result is `T`.
pub struct Feed<T> {
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<JoinHandle<Result<T>>>,
    rows: u64,
    table: String,
}

impl<T: Send + 'static> Feed<T> {
    /// Spawns `work` on the batches of `table` (named in messages).
    pub fn start<F>(table: String, work: impl FnOnce(mpsc::Receiver<Bytes>) -> F) -> Self
    where
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
        Self {
            tx: Some(tx),
            task: Some(tokio::spawn(work(rx))),
            rows: 0,
            table,
        }
    }

    /// The rows sent so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The table, for messages.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Queues `batch` of `rows` rows, waiting while the queue is full.
    pub fn send(&mut self, batch: Bytes, rows: u64) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rt = runtime()?;
        let Some(tx) = self.tx.clone() else {
            return Err(Error::Invalid("the writer already finished".into()));
        };
        if rt.block_on(tx.send(batch)).is_ok() {
            self.rows += rows;
            return Ok(());
        }
        // The task stopped taking batches: it failed; report why.
        Err(match rt.block_on(self.finish()) {
            Err(e) => e,
            Ok(_) => Error::Internal(format!("the write of {} ended early", self.table)),
        })
    }

    /// Ends the queue and waits for the task's result.
    pub async fn finish(&mut self) -> Result<T> {
        self.tx.take();
        let task = self
            .task
            .take()
            .ok_or_else(|| Error::Invalid("the writer already finished".into()))?;
        task.await
            .map_err(|e| Error::Internal(format!("the write task of {} failed: {e}", self.table)))?
    }

    /// Stops the task; what it held (its connection, and with it any open
    /// transaction) is dropped.
    pub fn abort(&mut self) {
        self.tx.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
