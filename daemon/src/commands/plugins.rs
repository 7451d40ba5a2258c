//! `dbferry plugins`: what `plugin_dir` holds.

use std::path::Path;

use crate::config::Config;
use crate::engines::Engines;
use crate::metrics::Metrics;

/// Lists loaded plugins; exit 1 if the config is invalid or a plugin was refused.
pub fn plugins(config_path: &Path) -> i32 {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(diags) => {
            eprintln!("{diags}");
            return 1;
        }
    };
    let engines = match Engines::load(&config.daemon.plugin_dir, &config.daemon.state_dir, &Metrics::new()) {
        Ok(engines) => engines,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    println!("{:<10} {:<10} {:<5} FILE", "ENGINE", "VERSION", "ABI");
    for info in engines.infos() {
        println!(
            "{:<10} {:<10} {:<5} {}",
            info.engine,
            info.version,
            info.abi,
            info.file.display()
        );
    }
    for failure in engines.failures() {
        eprintln!("refused: {failure}");
    }
    i32::from(!engines.failures().is_empty())
}
