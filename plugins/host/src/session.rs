//! Safe wrappers around plugin sessions, readers and writers.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dbferry_copy_core::checkpoint::ChunkStats;
use dbferry_copy_core::error::BoxError;
use dbferry_copy_core::pipeline::{BatchReader, BatchWriter, ReadOutcome};
use dbferry_plugin_abi::buffer::{export_bytes, ForeignBuffer};
use dbferry_plugin_abi::detail::{number_details, CarriesDetails, SentDetails};
use dbferry_plugin_abi::ffi::{self, FfiBuffer, FfiStr, Handle};
use dbferry_plugin_abi::protocol::{
    BackupProgress, BackupRestoreRequest, DatabaseSchema, Digest, DigestRequest, DigestsRequest, ErrorKind,
    FinishRequest, GroupRead, GroupWritten, KeyTuple, PluginError, PrepareRequest, RangeDigestsRequest,
    ReadGroupRequest, ReadRequest, Request, SchemaOutcome, ServerInfo, SessionConfig, SnapshotInfo, SplitRequest,
    TableIndexesRequest, WriteGroupRequest, WriteRequest, WriteSummary,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::HostError;
use crate::library::Plugin;

struct SessionInner {
    plugin: Plugin,
    handle: Handle,
    /// The details this session keeps (see `dbferry_plugin_abi::detail`).
    sent: Mutex<SentDetails>,
}

// SAFETY: plugin sessions are `Send + Sync` by the SDK's bounds; the handle
// is only an opaque pointer to one.
unsafe impl Send for SessionInner {}
// SAFETY: as above.
unsafe impl Sync for SessionInner {}

impl Drop for SessionInner {
    fn drop(&mut self) {
        // SAFETY: the handle is live and closed exactly once, here; every
        // reader and writer holds this inner alive, so they are gone.
        unsafe { (self.plugin.inner.api.session_close)(self.handle) }
    }
}

/// A connection to one instance through its engine's plugin. Clones share it.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

fn to_json<T: Serialize>(engine: &str, value: &T) -> Result<Vec<u8>, HostError> {
    serde_json::to_vec(value).map_err(|e| HostError::Protocol {
        engine: engine.to_string(),
        message: format!("encoding a request: {e}"),
    })
}

/// Turns a status and the buffer beside it into a result.
fn check(engine: &str, status: i32, buffer: ForeignBuffer) -> Result<Bytes, HostError> {
    let bytes = buffer.into_bytes();
    match status {
        ffi::STATUS_OK | ffi::STATUS_END => Ok(bytes),
        ffi::STATUS_ERROR | ffi::STATUS_PANIC => {
            let error = serde_json::from_slice::<PluginError>(&bytes).unwrap_or_else(|_| {
                PluginError::new(
                    if status == ffi::STATUS_PANIC {
                        ErrorKind::Panic
                    } else {
                        ErrorKind::Internal
                    },
                    String::from_utf8_lossy(&bytes).into_owned(),
                )
            });
            if error.kind == ErrorKind::Panic {
                tracing::error!(engine, message = %error.message, "plugin panicked; the call failed and the host carries on");
            }
            Err(HostError::Plugin {
                engine: engine.to_string(),
                error,
            })
        }
        other => Err(HostError::Protocol {
            engine: engine.to_string(),
            message: format!("unknown status {other}"),
        }),
    }
}

fn parse<T: DeserializeOwned>(engine: &str, bytes: &[u8]) -> Result<T, HostError> {
    serde_json::from_slice(bytes).map_err(|e| HostError::Protocol {
        engine: engine.to_string(),
        message: format!("decoding a response: {e}"),
    })
}

impl Plugin {
    /// Connects to an instance.
    pub fn connect(&self, config: &SessionConfig) -> Result<Session, HostError> {
        let engine = &self.info().engine;
        let json = match &self.state_dir {
            Some(dir) if !config.options.contains_key("state_dir") => {
                let mut config = config.clone();
                config
                    .options
                    .insert("state_dir".into(), dir.display().to_string().into());
                to_json(engine, &config)?
            }
            _ => to_json(engine, config)?,
        };
        let mut handle: Handle = std::ptr::null_mut();
        let mut err = FfiBuffer::empty();
        // SAFETY: valid borrowed request and out-parameters.
        let status = unsafe { (self.inner.api.session_open)(FfiStr::new(&json), &mut handle, &mut err) };
        // SAFETY: the plugin wrote an owned buffer (or left it empty).
        check(engine, status, unsafe { ForeignBuffer::from_raw(err) })?;
        if handle.is_null() {
            return Err(HostError::Protocol {
                engine: engine.clone(),
                message: "session_open returned no session".into(),
            });
        }
        Ok(Session {
            inner: Arc::new(SessionInner {
                plugin: self.clone(),
                handle,
                sent: Mutex::default(),
            }),
        })
    }
}

impl Session {
    /// The engine of the plugin behind this session (`mysql`, ...).
    pub fn engine(&self) -> &str {
        &self.inner.plugin.info().engine
    }

    /// Names every detail of `request` by number, sending the session the
    /// ones it does not keep yet. The lock is held while they are sent, so
    /// that no other thread names a detail before the session keeps it.
    fn name_details(&self, request: &mut dyn CarriesDetails) -> Result<(), HostError> {
        let mut sent = self.inner.sent.lock().unwrap_or_else(PoisonError::into_inner);
        let unsent = sent.unsent(request);
        if !unsent.is_empty() {
            self.send::<()>(&Request::KeepDetails(unsent.clone()))?;
            sent.kept(unsent);
        }
        sent.name(request);
        Ok(())
    }

    fn call<T: DeserializeOwned>(&self, mut request: Request) -> Result<T, HostError> {
        self.name_details(&mut request)?;
        self.send(&request)
    }

    fn send<T: DeserializeOwned>(&self, request: &Request) -> Result<T, HostError> {
        let json = to_json(self.engine(), request)?;
        let mut out = FfiBuffer::empty();
        // SAFETY: live handle, valid borrowed request and out-parameter.
        let status =
            unsafe { (self.inner.plugin.inner.api.session_call)(self.inner.handle, FfiStr::new(&json), &mut out) };
        // SAFETY: the plugin wrote an owned buffer (or left it empty).
        let bytes = check(self.engine(), status, unsafe { ForeignBuffer::from_raw(out) })?;
        parse(self.engine(), &bytes)
    }

    /// See `Request::Interrupt`: stops this session's in-flight
    /// verification and schema statements, from any thread.
    pub fn interrupt(&self) -> Result<(), HostError> {
        self.send(&Request::Interrupt)
    }

    /// See `Request::Probe`.
    pub fn probe(&self) -> Result<ServerInfo, HostError> {
        self.call(Request::Probe)
    }

    /// See `Request::DescribeDatabase`.
    pub fn describe_database(&self, database: &str) -> Result<DatabaseSchema, HostError> {
        // The session keeps the details it describes, so the host never
        // sends them back: 2 MB of JSON for 1,000 MySQL tables.
        let mut sent = self.inner.sent.lock().unwrap_or_else(PoisonError::into_inner);
        let first = sent.next_id();
        let mut schema: DatabaseSchema = self.send(&Request::DescribeDatabase {
            database: database.to_string(),
            keep_from: Some(first),
        })?;
        sent.kept(number_details(&mut schema, first));
        Ok(schema)
    }

    /// See `Request::SplitPoints`.
    pub fn split_points(&self, request: SplitRequest) -> Result<Vec<KeyTuple>, HostError> {
        self.call(Request::SplitPoints(request))
    }

    /// See `Request::BeginSnapshot`.
    pub fn begin_snapshot(&self, readers: u32) -> Result<SnapshotInfo, HostError> {
        self.call(Request::BeginSnapshot { readers })
    }

    /// See `Request::EndSnapshot`.
    pub fn end_snapshot(&self) -> Result<(), HostError> {
        self.call(Request::EndSnapshot)
    }

    /// See `Request::PrepareTarget`.
    pub fn prepare_target(&self, request: PrepareRequest) -> Result<SchemaOutcome, HostError> {
        self.call(Request::PrepareTarget(request))
    }

    /// See `Request::CheckTarget`: what of `request.schema` the target
    /// cannot hold (engines without the check answer nothing).
    pub fn check_target(&self, request: PrepareRequest) -> Result<Vec<String>, HostError> {
        self.call(Request::CheckTarget(request))
    }

    /// See `Request::FinishTarget`.
    pub fn finish_target(&self, request: FinishRequest) -> Result<SchemaOutcome, HostError> {
        self.call(Request::FinishTarget(request))
    }

    /// See `Request::AddTableIndexes` (engines without it answer `Unsupported`).
    pub fn add_table_indexes(&self, request: TableIndexesRequest) -> Result<(), HostError> {
        self.call(Request::AddTableIndexes(request))
    }

    /// See `Request::BackupRestore` (engines without it answer `Unsupported`).
    pub fn backup_restore(&self, request: BackupRestoreRequest) -> Result<SchemaOutcome, HostError> {
        self.call(Request::BackupRestore(request))
    }

    /// See `Request::BackupProgress`; callable while `backup_restore` runs.
    pub fn backup_progress(&self) -> Result<BackupProgress, HostError> {
        self.call(Request::BackupProgress)
    }

    /// See `Request::TableDigest`.
    pub fn table_digest(&self, request: DigestRequest) -> Result<Digest, HostError> {
        self.call(Request::TableDigest(request))
    }

    /// See `Request::TableDigests`: one digest per table, in their order.
    pub fn table_digests(&self, request: DigestsRequest) -> Result<Vec<Digest>, HostError> {
        let tables = request.tables.len();
        let digests: Vec<Digest> = self.call(Request::TableDigests(request))?;
        if digests.len() != tables {
            return Err(HostError::Protocol {
                engine: self.engine().to_string(),
                message: format!("asked for {tables} table digests, got {}", digests.len()),
            });
        }
        Ok(digests)
    }

    fn protocol_error(&self, message: String) -> HostError {
        HostError::Protocol {
            engine: self.engine().to_string(),
            message,
        }
    }

    /// See `Request::RangeDigests`: one digest per range, in their order.
    /// Engines without range digests answer `Unsupported`.
    pub fn range_digests(&self, request: RangeDigestsRequest) -> Result<Vec<Digest>, HostError> {
        let ranges = request.ranges.len();
        let digests: Vec<Digest> = self.call(Request::RangeDigests(request))?;
        if digests.len() != ranges {
            return Err(self.protocol_error(format!("asked for {ranges} range digests, got {}", digests.len())));
        }
        Ok(digests)
    }

    /// Reads several small chunks whole: their payloads back to back, and
    /// a part per chunk read (a prefix of the request's chunks). Engines
    /// without group reads answer `Unsupported`.
    pub fn read_group(&self, mut request: ReadGroupRequest) -> Result<(Bytes, GroupRead), HostError> {
        self.name_details(&mut request)?;
        let json = to_json(self.engine(), &request)?;
        let (mut data, mut out) = (FfiBuffer::empty(), FfiBuffer::empty());
        // SAFETY: live handle, valid borrowed request and out-parameters.
        let status = unsafe {
            (self.inner.plugin.inner.api.session_read_group)(self.inner.handle, FfiStr::new(&json), &mut data, &mut out)
        };
        // SAFETY: the plugin wrote owned buffers (or left them empty).
        let (data, out) = unsafe { (ForeignBuffer::from_raw(data).into_bytes(), ForeignBuffer::from_raw(out)) };
        let read: GroupRead = parse(self.engine(), &check(self.engine(), status, out)?)?;
        let bytes = read.parts.iter().try_fold(0u64, |sum, p| sum.checked_add(p.bytes));
        if read.parts.len() > request.chunks.len() || bytes != Some(data.len() as u64) {
            return Err(self.protocol_error(format!(
                "a group read of {} chunks answered {} parts of {bytes:?} bytes with {} bytes",
                request.chunks.len(),
                read.parts.len(),
                data.len()
            )));
        }
        Ok((data, read))
    }

    /// Writes what [`Session::read_group`] produced; the plugin takes
    /// `data` without copying. One outcome per chunk, in order.
    pub fn write_group(&self, mut request: WriteGroupRequest, data: Bytes) -> Result<GroupWritten, HostError> {
        self.name_details(&mut request)?;
        let json = to_json(self.engine(), &request)?;
        let mut out = FfiBuffer::empty();
        // SAFETY: live handle; ownership of the buffer passes to the plugin.
        let status = unsafe {
            (self.inner.plugin.inner.api.session_write_group)(
                self.inner.handle,
                FfiStr::new(&json),
                export_bytes(data),
                &mut out,
            )
        };
        // SAFETY: the plugin wrote an owned buffer (or left it empty).
        let written: GroupWritten = parse(
            self.engine(),
            &check(self.engine(), status, unsafe { ForeignBuffer::from_raw(out) })?,
        )?;
        if written.chunks.len() != request.chunks.len() {
            return Err(self.protocol_error(format!(
                "a group write of {} chunks answered {} outcomes",
                request.chunks.len(),
                written.chunks.len()
            )));
        }
        Ok(written)
    }

    fn open<R: Serialize + CarriesDetails>(
        &self,
        mut request: R,
        open: unsafe extern "C" fn(Handle, FfiStr, *mut Handle, *mut FfiBuffer) -> i32,
    ) -> Result<Handle, HostError> {
        self.name_details(&mut request)?;
        let json = to_json(self.engine(), &request)?;
        let mut handle: Handle = std::ptr::null_mut();
        let mut err = FfiBuffer::empty();
        // SAFETY: live session, valid borrowed request and out-parameters.
        let status = unsafe { open(self.inner.handle, FfiStr::new(&json), &mut handle, &mut err) };
        // SAFETY: the plugin wrote an owned buffer (or left it empty).
        check(self.engine(), status, unsafe { ForeignBuffer::from_raw(err) })?;
        if handle.is_null() {
            return Err(HostError::Protocol {
                engine: self.engine().to_string(),
                message: "open returned no handle".into(),
            });
        }
        Ok(handle)
    }

    /// Starts reading a chunk.
    pub fn open_reader(&self, request: ReadRequest) -> Result<Reader, HostError> {
        let handle = self.open(request, self.inner.plugin.inner.api.reader_open)?;
        Ok(Reader {
            session: self.inner.clone(),
            handle,
        })
    }

    /// Starts writing a chunk in one target transaction.
    pub fn open_writer(&self, request: WriteRequest) -> Result<Writer, HostError> {
        let handle = self.open(request, self.inner.plugin.inner.api.writer_open)?;
        Ok(Writer {
            session: self.inner.clone(),
            handle: Some(handle),
            rows: 0,
            bytes: 0,
        })
    }
}

/// Reads one chunk. Closed when dropped.
pub struct Reader {
    session: Arc<SessionInner>,
    handle: Handle,
}

// SAFETY: plugin readers are `Send` by the SDK's bounds.
unsafe impl Send for Reader {}

impl Reader {
    /// The next batch, `Idle` when none is ready yet, or `End`.
    pub fn next_batch(&mut self) -> Result<ReadOutcome, HostError> {
        let api = &self.session.plugin.inner.api;
        let engine = &self.session.plugin.info().engine;
        let mut out = FfiBuffer::empty();
        let mut rows = 0u64;
        // SAFETY: live handle and valid out-parameters.
        let status = unsafe { (api.reader_next)(self.handle, &mut out, &mut rows) };
        // SAFETY: the plugin wrote an owned buffer (or left it empty).
        let data = check(engine, status, unsafe { ForeignBuffer::from_raw(out) })?;
        Ok(match status {
            ffi::STATUS_END => ReadOutcome::End,
            _ if data.is_empty() && rows == 0 => ReadOutcome::Idle,
            _ => ReadOutcome::Batch { data, rows },
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // SAFETY: closed exactly once; the session outlives it.
        unsafe { (self.session.plugin.inner.api.reader_close)(self.handle) }
    }
}

impl BatchReader for Reader {
    fn next(&mut self) -> Result<ReadOutcome, BoxError> {
        Reader::next_batch(self).map_err(Into::into)
    }
}

/// Writes one chunk in one transaction. Rolled back if dropped uncommitted.
pub struct Writer {
    session: Arc<SessionInner>,
    handle: Option<Handle>,
    rows: u64,
    bytes: u64,
}

// SAFETY: plugin writers are `Send` by the SDK's bounds.
unsafe impl Send for Writer {}

impl Writer {
    fn closed(&self) -> HostError {
        HostError::Protocol {
            engine: self.session.plugin.info().engine.clone(),
            message: "writer already finished".into(),
        }
    }

    /// Appends a batch; the plugin takes it without copying.
    pub fn write(&mut self, data: Bytes, rows: u64) -> Result<(), HostError> {
        let handle = self.handle.ok_or_else(|| self.closed())?;
        let len = data.len() as u64;
        let mut err = FfiBuffer::empty();
        // SAFETY: live handle; ownership of the buffer passes to the plugin.
        let status =
            unsafe { (self.session.plugin.inner.api.writer_write)(handle, export_bytes(data), rows, &mut err) };
        // SAFETY: the plugin wrote an owned buffer (or left it empty).
        check(&self.session.plugin.info().engine, status, unsafe {
            ForeignBuffer::from_raw(err)
        })?;
        self.rows += rows;
        self.bytes += len;
        Ok(())
    }

    /// Commits the chunk.
    pub fn commit(mut self) -> Result<WriteSummary, HostError> {
        let handle = self.handle.take().ok_or_else(|| self.closed())?;
        let mut out = FfiBuffer::empty();
        // SAFETY: consumes the live handle exactly once.
        let status = unsafe { (self.session.plugin.inner.api.writer_commit)(handle, &mut out) };
        let engine = &self.session.plugin.info().engine;
        // SAFETY: the plugin wrote an owned buffer (or left it empty).
        let bytes = check(engine, status, unsafe { ForeignBuffer::from_raw(out) })?;
        parse(engine, &bytes)
    }

    /// Rolls the chunk back.
    pub fn abort(mut self) {
        self.abort_in_place();
    }

    fn abort_in_place(&mut self) {
        if let Some(handle) = self.handle.take() {
            // SAFETY: consumes the live handle exactly once.
            unsafe { (self.session.plugin.inner.api.writer_abort)(handle) }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.abort_in_place();
    }
}

impl BatchWriter for Writer {
    fn write(&mut self, data: Bytes, rows: u64) -> Result<(), BoxError> {
        Writer::write(self, data, rows).map_err(Into::into)
    }

    fn commit(self: Box<Self>) -> Result<ChunkStats, BoxError> {
        let bytes = self.bytes;
        let summary = Writer::commit(*self)?;
        for warning in &summary.warnings {
            tracing::warn!(%warning, "target warning while loading");
        }
        Ok(ChunkStats {
            rows: summary.rows,
            bytes,
        })
    }

    fn abort(self: Box<Self>) {
        Writer::abort(*self);
    }
}
