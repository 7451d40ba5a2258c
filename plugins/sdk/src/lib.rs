//! Building blocks every engine plugin needs and none should write again.
//!
//! A plugin is a `cdylib` with its own copy of this crate, so the statics
//! here (the runtime) are per plugin, as they must be: a tokio runtime
//! cannot be shared across shared-library boundaries.
//!
//! - [`runtime`]: the plugin's tokio runtime that blocking ABI calls run on.
//! - [`reader`]: a chunk reader fed by a task through a bounded channel,
//!   which answers "idle" instead of blocking so the host can cancel.
//! - [`range`]: the SQL predicate `lower < key <= upper` for composite keys.
//! - [`tls`]: the rustls client configuration behind an instance's `tls` mode.
#![deny(missing_docs)]

pub mod range;
pub mod reader;
pub mod runtime;
pub mod tls;
