//! The contract between the dbferry host and its engine plugins.
//!
//! - [`ffi`]: the C ABI itself: `#[repr(C)]` tables, buffers and the handshake.
//! - [`protocol`]: the typed control messages that travel as JSON over
//!   `session_call`; the data path carries raw byte batches instead.
//! - [`detail`]: engine-private details, which a session keeps so that
//!   requests name them instead of carrying them.
//! - [`buffer`]: byte buffers that cross the boundary and are always released
//!   by the side that allocated them.
//! - [`plugin`]: the plugin-side SDK: implement [`plugin::Engine`] and call
//!   [`export_plugin!`]; every entry point then catches panics, and plugin
//!   `tracing` events are forwarded to the host.
#![deny(missing_docs)]

pub mod buffer;
pub mod detail;
pub mod ffi;
pub mod plugin;
pub mod protocol;

pub use buffer::ForeignBuffer;
pub use ffi::{ABI_MAJOR, ABI_MINOR};
pub use protocol::PluginError;
