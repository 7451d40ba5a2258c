//! The C ABI. Everything here is `#[repr(C)]` and versioned.
//!
//! Handshake: the host first calls [`ABI_SYMBOL`] (`dbferry_plugin_abi`),
//! which must keep the signature `extern "C" fn() -> AbiVersion` forever. Only
//! when the major version matches and the plugin's [`PluginApi`] is at least
//! as large as the host's does the host call [`ENTRY_SYMBOL`]
//! (`dbferry_plugin_entry`) with its [`HostApi`] and receive the function table.
//!
//! Status codes: every fallible entry returns one of the `STATUS_*` values.
//! On [`STATUS_ERROR`] and [`STATUS_PANIC`] the `out`/`err` buffer holds a
//! JSON [`crate::protocol::PluginError`].

use std::ffi::c_void;

/// Incompatible changes bump the major version.
pub const ABI_MAJOR: u16 = 2;
/// Compatible additions (fields appended to [`PluginApi`], requests added to
/// [`crate::protocol::Request`]) bump the minor: the host refuses a plugin
/// built for an older minor rather than meet an unknown request mid-import.
/// 2.1 added `TableDigests`; 2.2 `session_read_group` and `session_write_group`;
/// 2.3 `KeepDetails`; 2.4 `RangeDigests`; 2.5 `CheckTarget`; 2.6 `Interrupt`;
/// 2.7 `AddTableIndexes`.
pub const ABI_MINOR: u16 = 7;

/// `extern "C" fn() -> AbiVersion`.
pub const ABI_SYMBOL: &[u8] = b"dbferry_plugin_abi\0";
/// `extern "C" fn(host: *const HostApi) -> *const PluginApi`.
pub const ENTRY_SYMBOL: &[u8] = b"dbferry_plugin_entry\0";

/// The call succeeded.
pub const STATUS_OK: i32 = 0;
/// A reader has no more batches.
pub const STATUS_END: i32 = 1;
/// The call failed; the error buffer holds a JSON `PluginError`.
pub const STATUS_ERROR: i32 = 2;
/// The plugin panicked; the panic was caught and the buffer says where.
pub const STATUS_PANIC: i32 = 3;

/// What `dbferry_plugin_abi` returns: enough to decide compatibility before
/// anything else of the plugin is touched.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiVersion {
    /// The plugin's ABI major version.
    pub major: u16,
    /// The plugin's ABI minor version.
    pub minor: u16,
    /// `size_of::<PluginApi>()` as the plugin was built.
    pub plugin_api_size: u32,
}

/// A borrowed byte string, valid for the duration of one call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FfiStr {
    /// First byte; may be dangling when `len` is 0.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl FfiStr {
    /// Borrows `bytes` for one call.
    pub fn new(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive `'a`.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees ptr/len describe live memory.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// An owned byte buffer crossing the boundary. Whoever ends up holding it must
/// call `release(owner)` exactly once; `release` belongs to the allocator.
#[repr(C)]
#[derive(Debug)]
pub struct FfiBuffer {
    /// First byte.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
    /// Opaque allocator state handed back to `release`.
    pub owner: *mut c_void,
    /// Frees the buffer; `None` for an empty buffer.
    pub release: Option<unsafe extern "C" fn(owner: *mut c_void)>,
}

impl FfiBuffer {
    /// A buffer with nothing in it and nothing to free.
    pub const fn empty() -> Self {
        Self {
            ptr: std::ptr::null(),
            len: 0,
            owner: std::ptr::null_mut(),
            release: None,
        }
    }
}

/// Log levels carried by [`HostApi::log`].
pub mod level {
    /// Error.
    pub const ERROR: u8 = 1;
    /// Warning.
    pub const WARN: u8 = 2;
    /// Information.
    pub const INFO: u8 = 3;
    /// Debug.
    pub const DEBUG: u8 = 4;
    /// Trace.
    pub const TRACE: u8 = 5;
}

/// What the host offers every plugin.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the host was built.
    pub struct_size: u32,
    /// The host's ABI major version.
    pub abi_major: u16,
    /// The host's ABI minor version.
    pub abi_minor: u16,
    /// Emits one plugin log event into the host's `tracing`.
    pub log: unsafe extern "C" fn(level: u8, target: FfiStr, message: FfiStr),
}

/// Opaque handle to a plugin object (session, reader or writer).
pub type Handle = *mut c_void;

/// The plugin's function table. Fields are only ever appended.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PluginApi {
    /// `size_of::<PluginApi>()` as the plugin was built.
    pub struct_size: u32,
    /// The plugin's ABI major version.
    pub abi_major: u16,
    /// The plugin's ABI minor version.
    pub abi_minor: u16,
    /// Engine name, as in the config's `engine` key (static, UTF-8).
    pub engine: FfiStr,
    /// Plugin version (static, UTF-8).
    pub version: FfiStr,
    /// Connects to an instance. `config` is a JSON `protocol::SessionConfig`.
    pub session_open: unsafe extern "C" fn(config: FfiStr, out: *mut Handle, err: *mut FfiBuffer) -> i32,
    /// A control request: `request` is a JSON `protocol::Request`; on success
    /// `out` holds the JSON response.
    pub session_call: unsafe extern "C" fn(session: Handle, request: FfiStr, out: *mut FfiBuffer) -> i32,
    /// Closes a session. Its readers and writers must be closed first.
    pub session_close: unsafe extern "C" fn(session: Handle),
    /// Starts reading a chunk: `request` is a JSON `protocol::ReadRequest`.
    pub reader_open:
        unsafe extern "C" fn(session: Handle, request: FfiStr, out: *mut Handle, err: *mut FfiBuffer) -> i32,
    /// Next batch: `STATUS_OK` with a (possibly empty, meaning "not yet")
    /// batch and its row count, or `STATUS_END`.
    pub reader_next: unsafe extern "C" fn(reader: Handle, out: *mut FfiBuffer, rows: *mut u64) -> i32,
    /// Stops and frees a reader.
    pub reader_close: unsafe extern "C" fn(reader: Handle),
    /// Starts writing a chunk in one transaction: JSON `protocol::WriteRequest`.
    pub writer_open:
        unsafe extern "C" fn(session: Handle, request: FfiStr, out: *mut Handle, err: *mut FfiBuffer) -> i32,
    /// Appends a batch. Takes ownership of `batch` whatever the outcome.
    pub writer_write: unsafe extern "C" fn(writer: Handle, batch: FfiBuffer, rows: u64, err: *mut FfiBuffer) -> i32,
    /// Commits and frees the writer; `out` holds a JSON `protocol::WriteSummary`.
    pub writer_commit: unsafe extern "C" fn(writer: Handle, out: *mut FfiBuffer) -> i32,
    /// Rolls back and frees the writer.
    pub writer_abort: unsafe extern "C" fn(writer: Handle),
    /// Reads several small chunks whole: `request` is a JSON
    /// `protocol::ReadGroupRequest`. On success `data` holds their payloads
    /// back to back and `out` a JSON `protocol::GroupRead`; on failure `out`
    /// holds the error. Since 2.2.
    pub session_read_group:
        unsafe extern "C" fn(session: Handle, request: FfiStr, data: *mut FfiBuffer, out: *mut FfiBuffer) -> i32,
    /// Writes what a group read produced: `request` is a JSON
    /// `protocol::WriteGroupRequest`; takes ownership of `data` whatever the
    /// outcome; `out` holds a JSON `protocol::GroupWritten`. Since 2.2.
    pub session_write_group:
        unsafe extern "C" fn(session: Handle, request: FfiStr, data: FfiBuffer, out: *mut FfiBuffer) -> i32,
}

/// The version this crate implements, as the plugin side reports it.
pub const fn current_version() -> AbiVersion {
    AbiVersion {
        major: ABI_MAJOR,
        minor: ABI_MINOR,
        plugin_api_size: std::mem::size_of::<PluginApi>() as u32,
    }
}
