//! One module per command; each returns the process exit code.

pub mod demo;
pub mod plugins;
pub mod render;
pub mod run;
pub mod validate;

use crate::cli::{Cli, Command};

/// Runs a parsed command line and returns the exit code.
pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Run { config, json, job } => run::run(&config.config, &job, json),
        Command::Validate { config, jobs } => validate::validate(&config.config, &jobs),
        Command::Plugins { config } => plugins::plugins(&config.config),
        Command::Demo { rows } => demo::demo(rows),
        Command::Daemon { .. } | Command::Status { .. } | Command::Cancel { .. } => {
            eprintln!("error: this command needs the daemon, which this build does not include yet");
            1
        }
    }
}
