//! The host side of dbferry's plugin ABI.
//!
//! [`Plugin::load`] opens a `cdylib`, performs the handshake (ABI major and
//! minor, function-table size) and refuses a plugin built for another ABI
//! with an error that names the file, its ABI and ours. Every object handed
//! out ([`Session`], [`Reader`], [`Writer`]) holds the library alive, so a
//! plugin is never unloaded while anything of it is in use.
#![deny(missing_docs)]

mod error;
mod library;
mod session;

pub use error::HostError;
pub use library::{is_plugin_file, load_dir, Plugin, PluginInfo};
pub use session::{Reader, Session, Writer};
