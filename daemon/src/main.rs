//! The `dbferry` binary: parse, dispatch, exit.

use clap::Parser;

fn main() {
    dbferry::memory::tune_allocator();
    let cli = dbferry::cli::Cli::parse();
    let default_log = match cli.command {
        dbferry::cli::Command::Daemon { .. } => "info",
        _ => "warn",
    };
    dbferry::init_logging(default_log);
    std::process::exit(dbferry::commands::dispatch(cli));
}
