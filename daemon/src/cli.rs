//! The command line (CONTRACT §1).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG;

/// dbferry: moves whole databases between MySQL/MariaDB or SQL Server instances.
#[derive(Debug, Parser)]
#[command(name = "dbferry", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the config is: `--config`, else `$DBFERRY_CONFIG`, else the default.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The daemon config file.
    #[arg(long, env = "DBFERRY_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one import in the foreground.
    Run {
        /// Config.
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON lines (progress events) and a final result object.
        #[arg(long)]
        json: bool,
        /// The job file.
        job: PathBuf,
    },
    /// Run the long-lived service.
    Daemon {
        /// Config.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check the config and job files; print every error as FILE:LINE:COL.
    Validate {
        /// Config.
        #[command(flatten)]
        config: ConfigArg,
        /// Job files to check against the config.
        jobs: Vec<PathBuf>,
    },
    /// Imports known to a running daemon.
    Status {
        /// The daemon's HTTP endpoint.
        #[arg(long, default_value = "http://127.0.0.1:9650")]
        endpoint: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// One import.
        import_id: Option<u64>,
    },
    /// Cancel a running or pending import.
    Cancel {
        /// The daemon's HTTP endpoint.
        #[arg(long, default_value = "http://127.0.0.1:9650")]
        endpoint: String,
        /// The import.
        import_id: u64,
    },
    /// Go on with an import that failed, was cancelled or whose process died:
    /// in the foreground (same config and state dir), or, with `--endpoint`,
    /// in a running daemon.
    Resume {
        /// Config.
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON lines (progress events) and a final result object.
        #[arg(long)]
        json: bool,
        /// Ask the daemon at this HTTP endpoint to resume it instead.
        #[arg(long)]
        endpoint: Option<String>,
        /// The import.
        import_id: u64,
    },
    /// List the loaded engine plugins.
    Plugins {
        /// Config.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Quickstart: two throwaway MariaDB instances, a sample database, a migration.
    Demo {
        /// Rows in the sample database.
        #[arg(long, default_value_t = 300_000)]
        rows: u64,
    },
}
