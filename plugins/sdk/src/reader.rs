//! A chunk reader fed through a bounded channel.
//!
//! The engine's reading task encodes rows into batches and sends them; the
//! host's reader thread calls [`BatchChannel::next_batch`], which waits at
//! most [`POLL`] and then answers "idle" (an empty batch) so cancellation is
//! noticed promptly. Dropping the channel aborts the task: a task stopped
//! mid-result must drop its connection rather than return it to a pool.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long `next_batch` waits before answering "idle, ask again".
pub const POLL: Duration = Duration::from_millis(200);
/// Batches buffered between the reading task and the host.
pub const DEPTH: usize = 2;

/// The most bytes of a chunk's first batch.
pub const FIRST_BATCH: usize = 64 << 10;

/// The batch buffers of one chunk. The first is small: the host maps every
/// buffer of 256 KiB or more on its own (see the daemon's `memory`
/// module), and on 1,000 small tables mapping, faulting in and unmapping a
/// whole batch per chunk was an eighth of the copy's CPU.
pub struct BatchSizes {
    next: usize,
    full: usize,
}

impl BatchSizes {
    /// Batches of about `full` bytes after a first of at most [`FIRST_BATCH`].
    pub fn new(full: usize) -> Self {
        Self {
            next: full.min(FIRST_BATCH),
            full,
        }
    }

    /// An empty buffer for the next batch, and the length that ends it.
    pub fn next_buffer(&mut self) -> (BytesMut, usize) {
        let limit = std::mem::replace(&mut self.next, self.full);
        (BytesMut::with_capacity(limit + limit / 8), limit)
    }
}

/// One encoded batch and its row count, or the task's error.
pub type Batch<E> = Result<(Bytes, u64), E>;

/// Where the reading task sends its batches.
pub type BatchSender<E> = mpsc::Sender<Batch<E>>;

/// The host side of a reading task.
pub struct BatchChannel<E> {
    rx: mpsc::Receiver<Batch<E>>,
    task: Option<JoinHandle<()>>,
    done: bool,
}

impl<E: Send + 'static> BatchChannel<E> {
    /// Spawns `produce` on `runtime`; it sends batches (or one error) and
    /// ends the chunk by returning.
    pub fn spawn<F, Fut>(runtime: &Runtime, produce: F) -> Self
    where
        F: FnOnce(BatchSender<E>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(DEPTH);
        let task = runtime.spawn(produce(tx));
        Self {
            rx,
            task: Some(task),
            done: false,
        }
    }

    /// `Some(batch)`, `Some(empty)` when nothing arrived within [`POLL`],
    /// `None` at the end; the task's error once, then the end.
    pub fn next_batch(&mut self, runtime: &Runtime) -> Result<Option<(Bytes, u64)>, E> {
        if self.done {
            return Ok(None);
        }
        match runtime.block_on(async { tokio::time::timeout(POLL, self.rx.recv()).await }) {
            Ok(Some(Ok(batch))) => Ok(Some(batch)),
            Ok(Some(Err(e))) => {
                self.done = true;
                Err(e)
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(_) => Ok(Some((Bytes::new(), 0))),
        }
    }
}

impl<E> Drop for BatchChannel<E> {
    fn drop(&mut self) {
        self.rx.close();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> &'static Runtime {
        crate::runtime::runtime("sdk-test").expect("runtime")
    }

    #[test]
    fn only_the_first_batch_of_a_chunk_is_small() {
        let mut sizes = BatchSizes::new(1 << 20);
        let (buf, limit) = sizes.next_buffer();
        assert_eq!(limit, FIRST_BATCH);
        assert!(buf.capacity() < 256 << 10);
        assert_eq!(sizes.next_buffer().1, 1 << 20);
        assert_eq!(sizes.next_buffer().1, 1 << 20);
        assert_eq!(BatchSizes::new(4096).next_buffer().1, 4096);
    }

    #[test]
    fn batches_then_end_and_idle_while_the_task_is_slow() {
        let mut channel = BatchChannel::<String>::spawn(runtime(), |tx| async move {
            let _ = tx.send(Ok((Bytes::from_static(b"a\n"), 1))).await;
            tokio::time::sleep(POLL * 2).await;
            let _ = tx.send(Ok((Bytes::from_static(b"b\n"), 1))).await;
        });
        assert_eq!(channel.next_batch(runtime()), Ok(Some((Bytes::from_static(b"a\n"), 1))));
        assert_eq!(
            channel.next_batch(runtime()),
            Ok(Some((Bytes::new(), 0))),
            "idle, not blocked"
        );
        let mut next = channel.next_batch(runtime());
        while next == Ok(Some((Bytes::new(), 0))) {
            next = channel.next_batch(runtime());
        }
        assert_eq!(next, Ok(Some((Bytes::from_static(b"b\n"), 1))));
        assert_eq!(channel.next_batch(runtime()), Ok(None));
    }

    #[test]
    fn an_error_is_reported_once_and_ends_the_chunk() {
        let mut channel = BatchChannel::spawn(runtime(), |tx| async move {
            let _ = tx.send(Err("lost connection".to_string())).await;
        });
        assert_eq!(channel.next_batch(runtime()), Err("lost connection".to_string()));
        assert_eq!(channel.next_batch(runtime()), Ok(None));
    }
}
