//! Finding, loading and handshaking plugins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dbferry_plugin_abi::ffi::{self, AbiVersion, FfiStr, HostApi, PluginApi};

use crate::error::HostError;

/// A loaded plugin. Cheap to clone; the library stays loaded while any clone,
/// session, reader or writer lives.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<Loaded>,
    /// Given to each session as its `state_dir` option (see [`Plugin::with_state_dir`]).
    pub(crate) state_dir: Option<Arc<Path>>,
}

pub(crate) struct Loaded {
    pub(crate) api: PluginApi,
    pub(crate) info: PluginInfo,
    // Kept last so it is dropped after everything that points into it.
    _library: libloading::Library,
}

// SAFETY: the function table is immutable and plugins must be thread-safe
// (their sessions are `Send + Sync` by the SDK's trait bounds).
unsafe impl Send for Loaded {}
// SAFETY: as above.
unsafe impl Sync for Loaded {}

/// What `dbferry plugins` shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// Engine name (`mysql`, `sqlserver`).
    pub engine: String,
    /// The plugin's own version.
    pub version: String,
    /// Its ABI, `major.minor`.
    pub abi: String,
    /// The file it was loaded from.
    pub file: PathBuf,
}

fn describe(v: AbiVersion) -> String {
    format!("{}.{} (table size {})", v.major, v.minor, v.plugin_api_size)
}

static HOST_API: HostApi = HostApi {
    struct_size: std::mem::size_of::<HostApi>() as u32,
    abi_major: ffi::ABI_MAJOR,
    abi_minor: ffi::ABI_MINOR,
    log: plugin_log,
};

/// Re-emits a plugin's log event in the host's `tracing`.
unsafe extern "C" fn plugin_log(level: u8, target: FfiStr, message: FfiStr) {
    // SAFETY: the plugin lends both strings for the duration of the call.
    let (target, message) = unsafe { (target.as_bytes(), message.as_bytes()) };
    let target = String::from_utf8_lossy(target);
    let message = String::from_utf8_lossy(message);
    match level {
        ffi::level::ERROR => {
            tracing::error!(target: "dbferry::plugin", plugin_target = %target, "{message}")
        }
        ffi::level::WARN => {
            tracing::warn!(target: "dbferry::plugin", plugin_target = %target, "{message}")
        }
        ffi::level::INFO => {
            tracing::info!(target: "dbferry::plugin", plugin_target = %target, "{message}")
        }
        ffi::level::DEBUG => {
            tracing::debug!(target: "dbferry::plugin", plugin_target = %target, "{message}")
        }
        _ => tracing::trace!(target: "dbferry::plugin", plugin_target = %target, "{message}"),
    }
}

impl Plugin {
    /// Loads one plugin file and checks its ABI before calling anything else.
    pub fn load(file: &Path) -> Result<Self, HostError> {
        let file = file.to_path_buf();
        // SAFETY: loading runs the library's initialisers; plugin files are
        // trusted code installed by the operator, like the binary itself.
        let library = unsafe { libloading::Library::new(&file) }.map_err(|source| HostError::Load {
            file: file.clone(),
            source,
        })?;
        let missing = |symbol: &[u8]| HostError::NotAPlugin {
            file: file.clone(),
            symbol: String::from_utf8_lossy(&symbol[..symbol.len() - 1]).into_owned(),
        };
        // SAFETY: this symbol's signature is frozen across all ABI versions.
        let version = unsafe {
            let abi = library
                .get::<extern "C" fn() -> AbiVersion>(ffi::ABI_SYMBOL)
                .map_err(|_| missing(ffi::ABI_SYMBOL))?;
            abi()
        };
        let ours = ffi::current_version();
        let compatible = version.major == ours.major
            && version.minor >= ours.minor
            && version.plugin_api_size as usize >= std::mem::size_of::<PluginApi>();
        if !compatible {
            return Err(HostError::Incompatible {
                file,
                plugin: describe(version),
                host: describe(ours),
            });
        }
        // SAFETY: the handshake established that the entry has this ABI's
        // signature and returns a table at least as large as ours.
        let api = unsafe {
            let entry = library
                .get::<unsafe extern "C" fn(*const HostApi) -> *const PluginApi>(ffi::ENTRY_SYMBOL)
                .map_err(|_| missing(ffi::ENTRY_SYMBOL))?;
            let table = entry(&HOST_API);
            table.as_ref().copied()
        }
        .ok_or_else(|| HostError::Incompatible {
            file: file.clone(),
            plugin: "a null function table".into(),
            host: describe(ours),
        })?;
        // SAFETY: the strings are static in the plugin, which stays loaded.
        let (engine, plugin_version) = unsafe { (api.engine.as_bytes(), api.version.as_bytes()) };
        let info = PluginInfo {
            engine: String::from_utf8_lossy(engine).into_owned(),
            version: String::from_utf8_lossy(plugin_version).into_owned(),
            abi: format!("{}.{}", api.abi_major, api.abi_minor),
            file,
        };
        tracing::info!(engine = %info.engine, version = %info.version, abi = %info.abi, file = %info.file.display(), "plugin loaded");
        Ok(Self {
            inner: Arc::new(Loaded {
                api,
                info,
                _library: library,
            }),
            state_dir: None,
        })
    }

    /// This plugin with a directory of its own in which its sessions may
    /// keep files across processes (the MySQL engine journals the server
    /// sessions it lost to a network fault there, so that a resumed import
    /// ends them). Each session gets it as the `state_dir` engine option,
    /// unless its config sets one; the directory may not exist yet.
    pub fn with_state_dir(mut self, dir: PathBuf) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// What was loaded.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }
}

/// Whether a file name follows the plugin convention `libdbferry_<name>.so`.
/// Other libraries in the directory (a build tree holds many) are not plugins.
pub fn is_plugin_file(name: &str) -> bool {
    name.starts_with("libdbferry_") && name.ends_with(".so")
}

/// Loads every `libdbferry_*.so` in `dir`, sorted by name. Files that fail
/// are returned beside the plugins that loaded, so one bad file does not
/// hide the others.
pub fn load_dir(dir: &Path) -> Result<(Vec<Plugin>, Vec<HostError>), HostError> {
    let entries = std::fs::read_dir(dir).map_err(|source| HostError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| is_plugin_file(&n.to_string_lossy())) && p.is_file())
        .collect();
    files.sort();
    let (mut plugins, mut failures) = (Vec::new(), Vec::new());
    for file in files {
        match Plugin::load(&file) {
            Ok(plugin) => plugins.push(plugin),
            Err(error) => failures.push(error),
        }
    }
    Ok((plugins, failures))
}
