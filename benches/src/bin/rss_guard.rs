//! CI memory guard (no timing): copies dataset (a) at a small scale with the
//! release `dbferry`, MariaDB to MariaDB and then MySQL to MySQL, and fails
//! if the process's peak RSS (`ru_maxrss` from `wait4`) exceeds the bound in
//! either.
//!
//! ```text
//! cargo build --release -p dbferry -p dbferry-mysql
//! cargo run --release -p dbferry-benches --bin rss_guard -- [--scale 0.02] [--limit-mib 128] [--dbferry PATH]
//! ```
//!
//! Exit 0 when both copies succeeded, the targets' row counts match and peak
//! RSS is within the limit; 1 otherwise. Prints one `rss_guard: ...` line
//! per flavour.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;

use dbferry_benches::datasets::{self, Dataset};
use dbferry_benches::rig::{resolve_binary, Rig};
use dbferry_benches::server::Flavour;
use dbferry_benches::tools::{Bench, Tool};

#[derive(Parser, Debug)]
#[command(
    name = "rss_guard",
    about = "fails if dbferry's peak RSS on dataset (a) exceeds a bound"
)]
struct Args {
    /// Scale of dataset (a): 0.02 is 4 tables x 10,000 rows.
    #[arg(long, default_value_t = 0.02)]
    scale: f64,
    /// The bound, MiB.
    #[arg(long, default_value_t = 128)]
    limit_mib: u64,
    /// dbferry's parallelism.
    #[arg(long, default_value_t = 4)]
    parallelism: usize,
    /// The dbferry binary (relative paths also tried from the workspace root).
    #[arg(long, default_value = "target/release/dbferry")]
    dbferry: PathBuf,
    /// dbferry's plugin_dir, if the MySQL plugin is not next to the binary.
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// innodb_buffer_pool_size of each server.
    #[arg(long, default_value = "128M")]
    buffer_pool: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dbferry = resolve_binary(&args.dbferry);
    if !dbferry.is_file() {
        bail!(
            "rss_guard: dbferry binary not found at {} (build it with `cargo build --release -p dbferry -p dbferry-mysql`, or pass --dbferry PATH)",
            dbferry.display()
        );
    }
    let mut failed = false;
    for flavour in Flavour::ALL {
        let peak_mib = peak_rss_mib(&args, &dbferry, flavour)?;
        let verdict = if peak_mib <= args.limit_mib as f64 {
            "ok"
        } else {
            failed = true;
            "TOO HIGH"
        };
        println!(
            "rss_guard: {} dataset (a) scale {}: peak RSS {peak_mib:.1} MiB, limit {} MiB: {verdict}",
            flavour.key(),
            args.scale,
            args.limit_mib
        );
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Copies dataset (a) between two fresh servers of `flavour` (the bench
/// checks the target's row counts) and returns dbferry's peak RSS.
fn peak_rss_mib(args: &Args, dbferry: &std::path::Path, flavour: Flavour) -> Result<f64> {
    let rig = Rig::start(flavour, &args.buffer_pool, None)?;
    datasets::build(&rig.source, Dataset::A, args.scale, false)?;
    let info = datasets::inspect(&rig.source, Dataset::A)?;
    let bench = Bench {
        source: &rig.source,
        target: &rig.target,
        scratch: rig.scratch.clone(),
        shm: rig.shm.path().to_path_buf(),
        dbferry: dbferry.to_path_buf(),
        plugin_dir: args.plugin_dir.clone(),
        threads: args.parallelism,
        mydumper_rows: 0,
        mydumper_stream_bin: PathBuf::new(),
        verify: "count".into(),
        tls: None,
    };
    let run = bench.run(Tool::Dbferry, Dataset::A, &info, None, args.parallelism)?;
    Ok(run.tool_max_rss_kib as f64 / 1024.0)
}
