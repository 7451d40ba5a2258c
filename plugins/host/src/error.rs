//! Host-side errors.

use std::path::PathBuf;

use dbferry_plugin_abi::protocol::{ErrorKind, PluginError};

/// Why a plugin could not be loaded or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The file could not be opened as a shared library.
    #[error("{}: cannot load plugin: {source}", file.display())]
    Load {
        /// The plugin file.
        file: PathBuf,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// The file is a library but not a dbferry plugin.
    #[error("{}: not a dbferry plugin (no `{symbol}` symbol)", file.display())]
    NotAPlugin {
        /// The plugin file.
        file: PathBuf,
        /// The missing symbol.
        symbol: String,
    },
    /// The plugin was built for another ABI.
    #[error("{}: plugin ABI {plugin} is incompatible with dbferry's ABI {host}", file.display())]
    Incompatible {
        /// The plugin file.
        file: PathBuf,
        /// The plugin's ABI, `major.minor (table size N)`.
        plugin: String,
        /// Ours, in the same form.
        host: String,
    },
    /// A plugin directory could not be read.
    #[error("{}: cannot read plugin directory: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No loaded plugin serves the engine.
    #[error("no plugin for engine `{0}` is loaded")]
    NoEngine(String),
    /// The plugin returned an error (or panicked: kind `Panic`).
    #[error("{engine} plugin: {error}")]
    Plugin {
        /// The engine.
        engine: String,
        /// The plugin's error.
        error: PluginError,
    },
    /// The plugin answered something the host could not understand.
    #[error("{engine} plugin: protocol error: {message}")]
    Protocol {
        /// The engine.
        engine: String,
        /// What was wrong.
        message: String,
    },
}

impl HostError {
    /// The plugin's own error, if this is one.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            HostError::Plugin { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the plugin panicked (the panic was caught at the boundary).
    pub fn is_panic(&self) -> bool {
        self.plugin_error().is_some_and(|e| e.kind == ErrorKind::Panic)
    }
}
