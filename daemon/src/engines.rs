//! The engine plugins loaded from `plugin_dir`.

use std::path::Path;

use dbferry_plugin_host::{load_dir, HostError, Plugin, PluginInfo};

use crate::metrics::Metrics;

/// Plugins by engine, plus the files that failed to load.
#[derive(Clone, Default)]
pub struct Engines {
    plugins: Vec<Plugin>,
    failures: Vec<String>,
}

impl Engines {
    /// Loads every plugin in `dir`. A file that fails is logged and listed
    /// in [`Engines::failures`]; the others still load. Each plugin keeps
    /// its files across processes in `state_dir/plugins/<engine>`.
    pub fn load(dir: &Path, state_dir: &Path, metrics: &Metrics) -> Result<Self, HostError> {
        let (plugins, failures) = load_dir(dir)?;
        let plugins: Vec<Plugin> = plugins
            .into_iter()
            .map(|plugin| {
                let own = state_dir.join("plugins").join(&plugin.info().engine);
                plugin.with_state_dir(own)
            })
            .collect();
        for failure in &failures {
            tracing::error!(error = %failure, "plugin refused");
        }
        for plugin in &plugins {
            let info = plugin.info();
            metrics
                .plugin_info
                .with_label_values(&[&info.engine, &info.version, &info.abi])
                .set(1);
        }
        Ok(Self {
            plugins,
            failures: failures.iter().map(ToString::to_string).collect(),
        })
    }

    /// The plugin serving `engine`.
    pub fn get(&self, engine: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.info().engine == engine)
    }

    /// What was loaded.
    pub fn infos(&self) -> Vec<PluginInfo> {
        self.plugins.iter().map(|p| p.info().clone()).collect()
    }

    /// Files that could not be loaded, with why.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }
}
