//! dbferry: moves whole databases between database instances.
//!
//! The binary is a thin `main` over this library: [`cli`] parses the command
//! line, [`commands`] runs it. An import ([`import::Import`]) goes through
//! the prechecks of CONTRACT §4, reserves both instances, then copies every
//! table through an engine plugin and the engine-neutral copy core, and
//! verifies the result.
#![deny(missing_docs)]

pub mod api;
pub mod cli;
pub mod codes;
pub mod commands;
pub mod config;
pub mod dbinfo;
pub mod diag;
pub mod engines;
pub mod ids;
pub mod import;
pub mod instances;
pub mod job;
pub mod memory;
pub mod metrics;
pub mod service;
pub mod state;

/// Logs go to stderr, filtered by `DBFERRY_LOG` (or `RUST_LOG`), `default`
/// otherwise; secrets are never logged.
pub fn init_logging(default: &str) {
    let filter = std::env::var("DBFERRY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
