//! One module per command; each returns the process exit code.

pub mod demo;
pub mod plugins;
pub mod remote;
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
        Command::Daemon { config } => crate::service::main(&config.config),
        Command::Status {
            endpoint,
            json,
            import_id,
        } => remote::status(&endpoint, import_id, json),
        Command::Cancel { endpoint, import_id } => remote::cancel(&endpoint, import_id),
        Command::Resume {
            config,
            json,
            endpoint,
            import_id,
        } => match endpoint {
            Some(endpoint) => remote::resume(&endpoint, import_id),
            None => run::resume(&config.config, import_id, json),
        },
    }
}
