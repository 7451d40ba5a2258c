//! The plugin-side SDK.
//!
//! A plugin implements [`Engine`], [`Session`], [`Reader`] and [`Writer`] in
//! safe Rust and calls [`crate::export_plugin!`]. The SDK provides the
//! `extern "C"` entry points: it decodes JSON, catches every panic (a panic
//! becomes `STATUS_PANIC` with its message and never unwinds into the host),
//! and forwards the plugin's `tracing` events to the host's log.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{OnceLock, PoisonError, RwLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::buffer::{write_out, ForeignBuffer};
use crate::detail::{number_details, CarriesDetails, KeptDetails};
use crate::ffi::{self, FfiBuffer, FfiStr, Handle, HostApi, PluginApi};
use crate::protocol::{
    BackupProgress, BackupRestoreRequest, DatabaseSchema, Digest, DigestRequest, DigestsRequest, ErrorKind,
    FinishRequest, GroupRead, GroupWritten, KeyTuple, PluginError, PrepareRequest, RangeDigestsRequest,
    ReadGroupRequest, ReadRequest, Request, SchemaOutcome, ServerInfo, SessionConfig, SnapshotInfo, SplitRequest,
    TableIndexesRequest, WriteGroupRequest, WriteRequest, WriteSummary,
};

/// An engine: knows how to connect.
pub trait Engine: Send + Sync + 'static {
    /// A connection to one instance.
    type Session: Session;
    /// Connects to the instance `config` names.
    fn connect(config: SessionConfig) -> Result<Self::Session, PluginError>;
}

/// A connection to one instance. Calls may come from several host threads at
/// once (every copy lane opens its own readers or writers).
pub trait Session: Send + Sync + 'static {
    /// Reads one chunk.
    type Reader: Reader;
    /// Writes one chunk.
    type Writer: Writer;
    /// See [`Request::Probe`].
    fn probe(&self) -> Result<ServerInfo, PluginError>;
    /// See [`Request::DescribeDatabase`].
    fn describe_database(&self, database: &str) -> Result<DatabaseSchema, PluginError>;
    /// See [`Request::SplitPoints`].
    fn split_points(&self, request: SplitRequest) -> Result<Vec<KeyTuple>, PluginError>;
    /// See [`Request::BeginSnapshot`].
    fn begin_snapshot(&self, readers: u32) -> Result<SnapshotInfo, PluginError>;
    /// See [`Request::EndSnapshot`].
    fn end_snapshot(&self) -> Result<(), PluginError>;
    /// See [`Request::PrepareTarget`].
    fn prepare_target(&self, request: PrepareRequest) -> Result<SchemaOutcome, PluginError>;
    /// See [`Request::CheckTarget`]. The default: the target holds
    /// whatever its own engine describes.
    fn check_target(&self, request: PrepareRequest) -> Result<Vec<String>, PluginError> {
        let _ = request;
        Ok(Vec::new())
    }
    /// See [`Request::FinishTarget`].
    fn finish_target(&self, request: FinishRequest) -> Result<SchemaOutcome, PluginError>;
    /// See [`Request::AddTableIndexes`]. Optional: the default says
    /// `Unsupported`, and [`Session::finish_target`] adds every index.
    fn add_table_indexes(&self, request: TableIndexesRequest) -> Result<(), PluginError> {
        let _ = request;
        Err(PluginError::new(
            ErrorKind::Unsupported,
            "this engine adds indexes when the whole copy is done",
        ))
    }
    /// See [`Request::Interrupt`]. The default does nothing: calls end
    /// when their statements do.
    fn interrupt(&self) -> Result<(), PluginError> {
        Ok(())
    }
    /// See [`Request::TableDigest`].
    fn table_digest(&self, request: DigestRequest) -> Result<Digest, PluginError>;
    /// See [`Request::TableDigests`]. The default asks [`Session::table_digest`]
    /// table by table; an engine that can answer in fewer round trips does.
    fn table_digests(&self, request: DigestsRequest) -> Result<Vec<Digest>, PluginError> {
        (0..request.tables.len())
            .filter_map(|i| request.one(i))
            .map(|one| self.table_digest(one))
            .collect()
    }
    /// See [`Request::RangeDigests`]. Optional: the default says
    /// `Unsupported`, and the host then compares whole tables.
    fn range_digests(&self, request: RangeDigestsRequest) -> Result<Vec<Digest>, PluginError> {
        let _ = request;
        Err(PluginError::new(
            ErrorKind::Unsupported,
            "this engine digests whole tables only",
        ))
    }
    /// Starts reading a chunk.
    fn open_reader(&self, request: ReadRequest) -> Result<Self::Reader, PluginError>;
    /// Starts writing a chunk in one transaction.
    fn open_writer(&self, request: WriteRequest) -> Result<Self::Writer, PluginError>;
    /// See [`Request::BackupRestore`]. Optional: the default says `Unsupported`.
    fn backup_restore(&self, request: BackupRestoreRequest) -> Result<SchemaOutcome, PluginError> {
        let _ = request;
        Err(PluginError::new(
            ErrorKind::Unsupported,
            "this engine cannot copy by backup and restore",
        ))
    }
    /// See [`Request::BackupProgress`]. Optional: the default says `Unsupported`.
    fn backup_progress(&self) -> Result<BackupProgress, PluginError> {
        Err(PluginError::new(
            ErrorKind::Unsupported,
            "this engine cannot copy by backup and restore",
        ))
    }
    /// Reads several small chunks whole, in fewer round trips than one by
    /// one: their payloads back to back, and each one's size. Optional: the
    /// default says `Unsupported`, and the host then reads them one by one.
    fn read_group(&self, request: ReadGroupRequest) -> Result<(Bytes, GroupRead), PluginError> {
        let _ = request;
        Err(PluginError::new(
            ErrorKind::Unsupported,
            "this engine reads chunk by chunk",
        ))
    }
    /// Writes what [`Session::read_group`] produced; see
    /// [`WriteGroupRequest`]. Optional like it.
    fn write_group(&self, request: WriteGroupRequest, data: Bytes) -> Result<GroupWritten, PluginError> {
        let _ = (request, data);
        Err(PluginError::new(
            ErrorKind::Unsupported,
            "this engine writes chunk by chunk",
        ))
    }
}

/// Reads one chunk as batches in the target's ingest format.
pub trait Reader: Send + 'static {
    /// `Some((batch, rows))`; an empty batch means "nothing yet, ask again"
    /// and should be returned after at most a few hundred milliseconds of
    /// waiting, so the host can notice cancellation. `None` at the end.
    fn next_batch(&mut self) -> Result<Option<(Bytes, u64)>, PluginError>;
}

/// Writes one chunk inside one transaction.
pub trait Writer: Send + 'static {
    /// Appends a batch.
    fn write(&mut self, batch: Bytes, rows: u64) -> Result<(), PluginError>;
    /// Commits.
    fn commit(self) -> Result<WriteSummary, PluginError>;
    /// Rolls back.
    fn abort(self);
}

/// Holds a plugin's function table in a `static`.
pub struct ApiCell(OnceLock<PluginApi>);

// SAFETY: the table holds only function pointers and pointers to static
// strings, all immutable after initialisation.
unsafe impl Sync for ApiCell {}

impl ApiCell {
    /// An empty cell.
    pub const fn new() -> Self {
        Self(OnceLock::new())
    }
}

impl Default for ApiCell {
    fn default() -> Self {
        Self::new()
    }
}

/// Exports an [`Engine`] as a dbferry plugin: `export_plugin!(MyEngine, "name")`.
#[macro_export]
macro_rules! export_plugin {
    ($engine:ty, $name:expr) => {
        /// ABI handshake: the version this plugin was built against.
        #[no_mangle]
        pub extern "C" fn dbferry_plugin_abi() -> $crate::ffi::AbiVersion {
            $crate::ffi::current_version()
        }

        /// The plugin's function table.
        ///
        /// # Safety
        /// `host` must point to a valid `HostApi` that outlives the plugin.
        #[no_mangle]
        pub unsafe extern "C" fn dbferry_plugin_entry(
            host: *const $crate::ffi::HostApi,
        ) -> *const $crate::ffi::PluginApi {
            static API: $crate::plugin::ApiCell = $crate::plugin::ApiCell::new();
            // SAFETY: forwarded contract.
            unsafe { $crate::plugin::entry::<$engine>(&API, host, $name, env!("CARGO_PKG_VERSION")) }
        }
    };
}

/// Builds the function table once and connects the plugin's logging to the
/// host. Called by [`export_plugin!`].
///
/// # Safety
/// `host` must be null or point to a valid `HostApi` for the plugin's life.
pub unsafe fn entry<E: Engine>(
    cell: &'static ApiCell,
    host: *const HostApi,
    engine: &'static str,
    version: &'static str,
) -> *const PluginApi {
    if !host.is_null() {
        // SAFETY: non-null and valid per the contract.
        let host = unsafe { *host };
        crate::plugin::logging::install(host);
        // A cdylib has its own panic hook; report panics through the host's
        // log instead of raw stderr. The panic itself is caught by `guarded`.
        std::panic::set_hook(Box::new(|info| tracing::error!(target: "panic", "{info}")));
    }
    cell.0.get_or_init(|| PluginApi {
        struct_size: std::mem::size_of::<PluginApi>() as u32,
        abi_major: ffi::ABI_MAJOR,
        abi_minor: ffi::ABI_MINOR,
        engine: FfiStr::new(engine.as_bytes()),
        version: FfiStr::new(version.as_bytes()),
        session_open: session_open::<E>,
        session_call: session_call::<E>,
        session_close: session_close::<E>,
        reader_open: reader_open::<E>,
        reader_next: reader_next::<E>,
        reader_close: reader_close::<E>,
        writer_open: writer_open::<E>,
        writer_write: writer_write::<E>,
        writer_commit: writer_commit::<E>,
        writer_abort: writer_abort::<E>,
        session_read_group: session_read_group::<E>,
        session_write_group: session_write_group::<E>,
    })
}

type SessionOf<E> = <E as Engine>::Session;
type SlotOf<E> = SessionSlot<SessionOf<E>>;
type ReaderOf<E> = <SessionOf<E> as Session>::Reader;
type WriterOf<E> = <SessionOf<E> as Session>::Writer;

/// What a session handle points to: the engine's session and the details
/// the host asked it to keep, which the SDK puts back into each request.
struct SessionSlot<S> {
    session: S,
    kept: RwLock<KeptDetails>,
}

impl<S> SessionSlot<S> {
    /// `request` with the details it names by number put back.
    fn restore<R: CarriesDetails>(&self, mut request: R) -> Result<R, PluginError> {
        // Every keep leaves the map consistent.
        self.kept
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .restore(&mut request)?;
        Ok(request)
    }
}

/// Runs `f`, turning errors and panics into a status and an error buffer.
fn guarded(err: *mut FfiBuffer, f: impl FnOnce() -> Result<i32, PluginError>) -> i32 {
    let (status, error) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(status)) => return status,
        Ok(Err(error)) => (ffi::STATUS_ERROR, error),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            (
                ffi::STATUS_PANIC,
                PluginError::new(ErrorKind::Panic, format!("plugin panicked: {what}")),
            )
        }
    };
    let json = serde_json::to_vec(&error).unwrap_or_else(|_| b"{}".to_vec());
    // SAFETY: the host passes a valid out-parameter or null.
    unsafe { write_out(err, Bytes::from(json)) };
    status
}

/// Runs an infallible cleanup, swallowing a panic so it cannot unwind into the host.
fn guarded_void(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::error!("plugin panicked while releasing a handle");
    }
}

fn decode<T: DeserializeOwned>(bytes: FfiStr) -> Result<T, PluginError> {
    // SAFETY: the host lends valid bytes for the duration of the call.
    let bytes = unsafe { bytes.as_bytes() };
    serde_json::from_slice(bytes)
        .map_err(|e| PluginError::new(ErrorKind::InvalidRequest, format!("malformed request: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, PluginError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| PluginError::new(ErrorKind::Internal, format!("encoding a response: {e}")))
}

fn put_handle<T>(out: *mut Handle, value: T) -> i32 {
    let raw = Box::into_raw(Box::new(value)).cast::<c_void>();
    // SAFETY: `out` is a valid out-parameter per the ABI.
    unsafe { out.write(raw) };
    ffi::STATUS_OK
}

/// # Safety
/// `handle` must come from `put_handle::<T>` and still be live.
unsafe fn borrow<'a, T>(handle: Handle) -> Result<&'a mut T, PluginError> {
    // SAFETY: forwarded contract.
    unsafe { handle.cast::<T>().as_mut() }.ok_or_else(|| PluginError::new(ErrorKind::InvalidRequest, "null handle"))
}

/// # Safety
/// `handle` must come from `put_handle::<T>` and is consumed.
unsafe fn take<T>(handle: Handle) -> Option<T> {
    if handle.is_null() {
        return None;
    }
    // SAFETY: forwarded contract; ownership returns to us once.
    Some(*unsafe { Box::from_raw(handle.cast::<T>()) })
}

unsafe extern "C" fn session_open<E: Engine>(config: FfiStr, out: *mut Handle, err: *mut FfiBuffer) -> i32 {
    guarded(err, || {
        let config: SessionConfig = decode(config)?;
        let session = E::connect(config)?;
        Ok(put_handle(
            out,
            SessionSlot {
                session,
                kept: RwLock::default(),
            },
        ))
    })
}

unsafe extern "C" fn session_call<E: Engine>(session: Handle, request: FfiStr, out: *mut FfiBuffer) -> i32 {
    guarded(out, || {
        // SAFETY: the host passes a live session handle.
        let slot: &SlotOf<E> = unsafe { borrow(session) }?;
        let session = &slot.session;
        let response = match slot.restore(decode::<Request>(request)?)? {
            Request::Probe => encode(&session.probe()?)?,
            Request::DescribeDatabase { database, keep_from } => {
                let mut schema = session.describe_database(&database)?;
                if let Some(first) = keep_from {
                    let numbered = number_details(&mut schema, first);
                    slot.kept.write().unwrap_or_else(PoisonError::into_inner).keep(numbered);
                }
                encode(&schema)?
            }
            Request::SplitPoints(r) => encode(&session.split_points(r)?)?,
            Request::BeginSnapshot { readers } => encode(&session.begin_snapshot(readers)?)?,
            Request::EndSnapshot => encode(&session.end_snapshot()?)?,
            Request::PrepareTarget(r) => encode(&session.prepare_target(r)?)?,
            Request::FinishTarget(r) => encode(&session.finish_target(r)?)?,
            Request::AddTableIndexes(r) => encode(&session.add_table_indexes(r)?)?,
            Request::CheckTarget(r) => encode(&session.check_target(r)?)?,
            Request::Interrupt => encode(&session.interrupt()?)?,
            Request::TableDigest(r) => encode(&session.table_digest(r)?)?,
            Request::TableDigests(r) => encode(&session.table_digests(r)?)?,
            Request::RangeDigests(r) => encode(&session.range_digests(r)?)?,
            Request::BackupRestore(r) => encode(&session.backup_restore(r)?)?,
            Request::BackupProgress => encode(&session.backup_progress()?)?,
            Request::KeepDetails(details) => {
                slot.kept.write().unwrap_or_else(PoisonError::into_inner).keep(details);
                encode(&())?
            }
        };
        // SAFETY: valid out-parameter per the ABI.
        unsafe { write_out(out, response) };
        Ok(ffi::STATUS_OK)
    })
}

unsafe extern "C" fn session_read_group<E: Engine>(
    session: Handle,
    request: FfiStr,
    data: *mut FfiBuffer,
    out: *mut FfiBuffer,
) -> i32 {
    guarded(out, || {
        // SAFETY: the host passes a live session handle.
        let slot: &SlotOf<E> = unsafe { borrow(session) }?;
        let (payload, read) = slot.session.read_group(slot.restore(decode(request)?)?)?;
        let read = encode(&read)?;
        // SAFETY: valid out-parameters per the ABI.
        unsafe {
            write_out(data, payload);
            write_out(out, read);
        }
        Ok(ffi::STATUS_OK)
    })
}

unsafe extern "C" fn session_write_group<E: Engine>(
    session: Handle,
    request: FfiStr,
    data: FfiBuffer,
    out: *mut FfiBuffer,
) -> i32 {
    // SAFETY: the ABI hands us ownership of `data`, released by its allocator.
    let data = unsafe { ForeignBuffer::from_raw(data) }.into_bytes();
    guarded(out, || {
        // SAFETY: the host passes a live session handle.
        let slot: &SlotOf<E> = unsafe { borrow(session) }?;
        let written = encode(&slot.session.write_group(slot.restore(decode(request)?)?, data)?)?;
        // SAFETY: valid out-parameter per the ABI.
        unsafe { write_out(out, written) };
        Ok(ffi::STATUS_OK)
    })
}

unsafe extern "C" fn session_close<E: Engine>(session: Handle) {
    // SAFETY: the host closes each session once.
    guarded_void(|| drop(unsafe { take::<SlotOf<E>>(session) }));
}

unsafe extern "C" fn reader_open<E: Engine>(
    session: Handle,
    request: FfiStr,
    out: *mut Handle,
    err: *mut FfiBuffer,
) -> i32 {
    guarded(err, || {
        // SAFETY: live session handle.
        let slot: &SlotOf<E> = unsafe { borrow(session) }?;
        let reader = slot.session.open_reader(slot.restore(decode(request)?)?)?;
        Ok(put_handle(out, reader))
    })
}

unsafe extern "C" fn reader_next<E: Engine>(reader: Handle, out: *mut FfiBuffer, rows: *mut u64) -> i32 {
    guarded(out, || {
        // SAFETY: live reader handle.
        let reader: &mut ReaderOf<E> = unsafe { borrow(reader) }?;
        match reader.next_batch()? {
            Some((batch, count)) => {
                // SAFETY: valid out-parameters per the ABI.
                unsafe {
                    rows.write(count);
                    write_out(out, batch);
                }
                Ok(ffi::STATUS_OK)
            }
            None => Ok(ffi::STATUS_END),
        }
    })
}

unsafe extern "C" fn reader_close<E: Engine>(reader: Handle) {
    // SAFETY: the host closes each reader once.
    guarded_void(|| drop(unsafe { take::<ReaderOf<E>>(reader) }));
}

unsafe extern "C" fn writer_open<E: Engine>(
    session: Handle,
    request: FfiStr,
    out: *mut Handle,
    err: *mut FfiBuffer,
) -> i32 {
    guarded(err, || {
        // SAFETY: live session handle.
        let slot: &SlotOf<E> = unsafe { borrow(session) }?;
        let writer = slot.session.open_writer(slot.restore(decode(request)?)?)?;
        Ok(put_handle(out, writer))
    })
}

unsafe extern "C" fn writer_write<E: Engine>(writer: Handle, batch: FfiBuffer, rows: u64, err: *mut FfiBuffer) -> i32 {
    // SAFETY: the ABI hands us ownership of `batch`, released by its allocator.
    let batch = unsafe { ForeignBuffer::from_raw(batch) }.into_bytes();
    guarded(err, || {
        // SAFETY: live writer handle.
        let writer: &mut WriterOf<E> = unsafe { borrow(writer) }?;
        writer.write(batch, rows)?;
        Ok(ffi::STATUS_OK)
    })
}

unsafe extern "C" fn writer_commit<E: Engine>(writer: Handle, out: *mut FfiBuffer) -> i32 {
    guarded(out, || {
        // SAFETY: the host commits each writer once; it is consumed.
        let writer = unsafe { take::<WriterOf<E>>(writer) }
            .ok_or_else(|| PluginError::new(ErrorKind::InvalidRequest, "null writer"))?;
        let summary = encode(&writer.commit()?)?;
        // SAFETY: valid out-parameter.
        unsafe { write_out(out, summary) };
        Ok(ffi::STATUS_OK)
    })
}

unsafe extern "C" fn writer_abort<E: Engine>(writer: Handle) {
    // SAFETY: the host aborts each writer once; it is consumed.
    guarded_void(|| {
        if let Some(writer) = unsafe { take::<WriterOf<E>>(writer) } {
            writer.abort();
        }
    });
}

pub mod logging {
    //! Forwards the plugin's `tracing` events to the host.
    //!
    //! A `cdylib` carries its own copy of `tracing`, so the host's subscriber
    //! never sees plugin events on its own; this layer hands each one over
    //! the ABI's `log` callback.

    use std::fmt::Write as _;

    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::Layer;

    use crate::ffi::{level, FfiStr, HostApi};

    struct HostLayer(HostApi);

    #[derive(Default)]
    struct Text(String);

    impl Visit for Text {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let rest = std::mem::take(&mut self.0);
                let _ = write!(self.0, "{value:?}{rest}");
            } else {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.0.insert_str(0, value);
            } else {
                let _ = write!(self.0, " {}={value}", field.name());
            }
        }
    }

    impl<S: Subscriber> Layer<S> for HostLayer {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut text = Text::default();
            event.record(&mut text);
            let code = match *event.metadata().level() {
                Level::ERROR => level::ERROR,
                Level::WARN => level::WARN,
                Level::INFO => level::INFO,
                Level::DEBUG => level::DEBUG,
                Level::TRACE => level::TRACE,
            };
            let target = event.metadata().target();
            // SAFETY: the host's callback is valid for the plugin's life and
            // only borrows the strings for the call.
            unsafe {
                (self.0.log)(code, FfiStr::new(target.as_bytes()), FfiStr::new(text.0.as_bytes()));
            }
        }
    }

    /// Installs the forwarding subscriber once; later calls do nothing.
    pub fn install(host: HostApi) {
        let filter = tracing_subscriber::filter::LevelFilter::DEBUG;
        let subscriber = tracing_subscriber::registry().with(HostLayer(host).with_filter(filter));
        let _ = tracing::subscriber::set_global_default(subscriber);
    }
}
