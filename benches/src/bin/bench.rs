//! `make bench`: dbferry against `dump | client`, the stock-client pipe,
//! mydumper + myloader (Debian's 0.10, and current 1.x streaming) and the
//! `LOAD DATA INFILE` floor, on two local MariaDB servers, then on two
//! Oracle MySQL servers.
//!
//! ```text
//! cargo build --release -p dbferry -p dbferry-mysql
//! cargo run --release -p dbferry-benches --bin bench -- \
//!     [--flavour mariadb|mysql|both] [--dataset a|b|c|d|all] [--runs N] [--scale F] \
//!     [--fresh] [--verify count|checksum] [--tls MODE] [--out DIR] [--dbferry PATH] \
//!     [--tools dbferry,mariadb-dump,pipe,mydumper,mydumper-stream,floor] [--sweep 1,2,4,8] [--threads 4]
//! cargo run --release -p dbferry-benches --bin bench -- --chart-only   # redraw from OUT/*.json
//! ```
//!
//! Per flavour and dataset: build it on the source, export it once for the floor, then
//! `--runs` rounds in which every tool copies it once into an emptied target
//! database (the order rotates each round, so no tool always goes first).
//! Each run is checked with exact row counts. Prints a table, writes
//! `OUT/<dataset>.json` and redraws `OUT/chart.png` from every JSON in OUT.
//! For dataset (d) it also measures dbferry at `parallelism` 1, 2, 4 and 8
//! (and the floor with as many sessions). Exits 1 if any leg failed, after
//! writing what it measured. With `--fresh` the datasets are not analysed
//! after loading, as after a restore: MySQL then still reports the empty
//! tables' cached statistics.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use dbferry_benches::datasets::{self, Dataset, DatasetInfo};
use dbferry_benches::floor::{self, FloorPlan};
use dbferry_benches::report::{self, DatasetResult, ScalingPoint, ToolSummary};
use dbferry_benches::rig::{resolve_binary, workspace_root, Rig};
use dbferry_benches::server::{Flavour, Server};
use dbferry_benches::tools::{Bench, RunResult, Tool};

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "dbferry vs. dump | client, the client pipe, mydumper/myloader and the LOAD DATA floor"
)]
struct Args {
    /// Server flavour(s): mariadb, mysql, babelfish (the SQL Server
    /// dataset), a comma list, both (mariadb and mysql) or all.
    #[arg(long, default_value = "all")]
    flavour: String,
    /// Leave the datasets unanalysed after loading, as after a restore.
    #[arg(long)]
    fresh: bool,
    /// dbferry's `verify` option.
    #[arg(long, default_value = "count")]
    verify: String,
    /// dbferry's per-instance `tls` mode (for example `trust`); unset by default.
    #[arg(long)]
    tls: Option<String>,
    /// The directory holding current mydumper's `mydumper` and `myloader`.
    #[arg(long, default_value = "/var/cache/dbferry-mydumper/bin")]
    mydumper_stream_bin: PathBuf,
    /// Dataset(s): a, b, c, d, a comma list, or all.
    #[arg(long, default_value = "all")]
    dataset: String,
    /// Runs per tool (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The SQL Server dataset holds, instead of its two tables, this many
    /// rows of 64 MiB varchar(max), nvarchar(max) and varbinary(max)
    /// values, and runs dbferry alone (its peak RSS with long values).
    #[arg(long, default_value_t = 0)]
    long_values: u64,
    /// Multiplies row counts (dataset c: the number of tables).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Where results go [default: benches/results].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The dbferry binary (relative paths also tried from the workspace root).
    #[arg(long, default_value = "target/release/dbferry")]
    dbferry: PathBuf,
    /// dbferry's plugin_dir, if the MySQL plugin is not next to the binary.
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Tools to run, comma separated.
    #[arg(long, default_value = "dbferry,mariadb-dump,pipe,mydumper,mydumper-stream,floor")]
    tools: String,
    /// Threads / parallelism of dbferry, mydumper, myloader and the floor.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// mydumper --rows (chunk size in rows); 0 keeps tables whole.
    #[arg(long, default_value_t = 100_000)]
    mydumper_rows: u64,
    /// Parallelism values for the dataset (d) sweep; empty to skip it.
    #[arg(long, default_value = "1,2,4,8")]
    sweep: String,
    /// innodb_buffer_pool_size of each server.
    #[arg(long, default_value = "512M")]
    buffer_pool: String,
    /// Parent directory for datadirs and scratch [default: the system temp dir].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Only redraw OUT/chart.png and reprint the table from OUT/*.json.
    #[arg(long)]
    chart_only: bool,
    /// Build the first dataset (with `--flavour babelfish`, the SQL Server
    /// one), print how to run dbferry against it by hand (for `perf record`
    /// or callgrind), and keep both servers up until standard input closes.
    #[arg(long)]
    hold: bool,
}

fn list<T>(text: &str, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse(s.trim()))
        .collect()
}

fn version(cmd: &str, arg: &str) -> String {
    std::process::Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

fn environment(source: &Server, args: &Args) -> Vec<(String, String)> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let stream = args.mydumper_stream_bin.join("mydumper");
    vec![
        ("cores".into(), cores.to_string()),
        (
            source.flavour.key().into(),
            source.query_value("SELECT VERSION()").unwrap_or_default(),
        ),
        ("mydumper".into(), version("mydumper", "--version")),
        (
            "mydumper-stream".into(),
            version(&stream.to_string_lossy(), "--version"),
        ),
        ("sysbench".into(), version("sysbench", "--version")),
        ("kernel".into(), version("uname", "-r")),
    ]
}

/// Runs `tool` once; a failure is returned as text so the suite goes on.
fn one_run(
    bench: &Bench<'_>,
    tool: Tool,
    dataset: Dataset,
    info: &DatasetInfo,
    plan: &FloorPlan,
    parallelism: usize,
    round: usize,
) -> std::result::Result<RunResult, String> {
    let started = Instant::now();
    match bench.run(tool, dataset, info, Some(plan), parallelism) {
        Ok(run) => {
            eprintln!(
                "  [{}] round {} {:<13} p={parallelism}: {:>8.2} s  cpu {:>6.1} s  rss {:>7.1} MiB",
                dataset.key(),
                round + 1,
                tool.key(),
                run.wall_s,
                run.tool_cpu_s,
                run.tool_max_rss_kib as f64 / 1024.0
            );
            Ok(run)
        }
        Err(error) => {
            let message = format!("{error:#}");
            eprintln!(
                "  [{}] round {} {:<13} p={parallelism}: FAILED after {:.1} s: {message}",
                dataset.key(),
                round + 1,
                tool.key(),
                started.elapsed().as_secs_f64()
            );
            Err(message)
        }
    }
}

/// `--hold`: leaves the rig up for profiling by hand.
fn hold(bench: &Bench<'_>, dataset: Dataset) -> Result<()> {
    let db = dataset.database();
    let (config, job) = bench.dbferry_files(db, bench.threads)?;
    let reset = bench.scratch.join("reset-target.sh");
    let target = bench.target.tcp_args().join(" ");
    let client = bench.target.flavour.program("mariadb");
    std::fs::write(
        &reset,
        format!(
            "#!/bin/sh\nexec {} --no-defaults {target} -e 'DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` DEFAULT CHARACTER SET utf8mb4'\n",
            client.display()
        ),
    )?;
    println!("reset the target:  sh {}", reset.display());
    println!(
        "run dbferry:       {} run --json --config {} {}",
        bench.dbferry.display(),
        config.display(),
        job.display()
    );
    println!("holding; close standard input (Ctrl-D) to stop the servers");
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}

#[derive(Default)]
struct Collected {
    runs: Vec<RunResult>,
    error: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.scale.is_nan() || args.scale <= 0.0 {
        bail!("--scale must be positive");
    }
    let datasets: Vec<Dataset> = if args.dataset == "all" {
        Dataset::ALL.to_vec()
    } else {
        list(&args.dataset, Dataset::parse)?
    };
    let wanted: Vec<String> = match args.flavour.as_str() {
        "all" => vec!["mariadb".into(), "mysql".into(), "babelfish".into()],
        "both" => vec!["mariadb".into(), "mysql".into()],
        other => list(other, |s| Ok(s.to_string()))?,
    };
    let sqlserver = wanted.iter().any(|f| f == "babelfish");
    let flavours: Vec<Flavour> = wanted
        .iter()
        .filter(|f| *f != "babelfish")
        .map(|f| Flavour::parse(f))
        .collect::<Result<_>>()?;
    let tools: Vec<Tool> = list(&args.tools, Tool::parse)?;
    let sweep: Vec<usize> = list(&args.sweep, |s| s.parse::<usize>().context("bad --sweep value"))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("benches").join("results"));
    if args.chart_only {
        let everything = report::load_all(&out)?;
        print!("{}", report::table(&everything));
        report::chart(&everything, &out.join("chart.png"))?;
        println!("wrote {}", out.join("chart.png").display());
        return Ok(());
    }
    let dbferry = resolve_binary(&args.dbferry);
    if tools.contains(&Tool::Dbferry) && !dbferry.is_file() {
        eprintln!(
            "warning: dbferry binary not found at {}; its runs will fail \
             (build it with `cargo build --release -p dbferry -p dbferry-mysql`, or pass --dbferry PATH)",
            dbferry.display()
        );
    }
    let mut finished = Vec::new();
    let mut any_failed = false;
    for flavour in flavours {
        any_failed |= bench_flavour(&args, flavour, &datasets, &tools, &sweep, &dbferry, &out, &mut finished)?;
    }
    if sqlserver {
        let options = dbferry_benches::sqlserver::Options {
            shape: match args.long_values {
                0 => dbferry_benches::sqlserver::Shape::Tables,
                rows => dbferry_benches::sqlserver::Shape::LongValues(rows),
            },
            scale: args.scale,
            runs: args.runs,
            dbferry: dbferry.clone(),
            plugin_dir: args.plugin_dir.clone(),
            threads: args.threads,
            verify: args.verify.clone(),
            hold: args.hold,
        };
        if let Some(result) = dbferry_benches::sqlserver::run(&options)? {
            // freebcp in failing into Babelfish is a finding, not a failed bench.
            any_failed |= result.tools.iter().any(|t| t.error.is_some() && t.tool != "freebcp");
            result.save(&out)?;
            finished.push(result);
        }
    }

    println!();
    println!("== results (median of {} runs, scale {}) ==", args.runs, args.scale);
    print!("{}", report::table(&finished));
    for result in &finished {
        for tool in &result.tools {
            for command in &tool.commands {
                println!("  [{}] {}: {}", result.key(), tool.tool, command);
            }
        }
    }
    let everything = report::load_all(&out)?;
    let chart = out.join("chart.png");
    report::chart(&everything, &chart)?;
    println!("wrote {} and {}", out.join("<run>.json").display(), chart.display());
    if any_failed {
        eprintln!("some runs failed (see FAILED above)");
        std::process::exit(1);
    }
    Ok(())
}

/// Every dataset on one flavour's pair of servers. Returns whether any leg failed.
#[allow(clippy::too_many_arguments)]
fn bench_flavour(
    args: &Args,
    flavour: Flavour,
    datasets: &[Dataset],
    tools: &[Tool],
    sweep: &[usize],
    dbferry: &std::path::Path,
    out: &std::path::Path,
    finished: &mut Vec<DatasetResult>,
) -> Result<bool> {
    eprintln!(
        "booting source and target {} (buffer pool {} each)...",
        flavour.key(),
        args.buffer_pool
    );
    let rig = Rig::start(flavour, &args.buffer_pool, args.workdir.as_deref())?;
    eprintln!(
        "  source 127.0.0.1:{}  target 127.0.0.1:{}  in {}",
        rig.source.port,
        rig.target.port,
        rig.path().display()
    );
    let bench = Bench {
        source: &rig.source,
        target: &rig.target,
        scratch: rig.scratch.clone(),
        shm: rig.shm.path().to_path_buf(),
        dbferry: dbferry.to_path_buf(),
        plugin_dir: args.plugin_dir.clone(),
        threads: args.threads,
        mydumper_rows: args.mydumper_rows,
        mydumper_stream_bin: args.mydumper_stream_bin.clone(),
        verify: args.verify.clone(),
        tls: args.tls.clone(),
    };
    let env = environment(&rig.source, args);
    let mut variant: Vec<String> = Vec::new();
    if args.fresh {
        variant.push("fresh".into());
    }
    if let Some(tls) = &args.tls {
        variant.push(format!("tls-{tls}"));
    }
    if args.verify != "count" {
        variant.push(args.verify.clone());
    }
    let mut any_failed = false;
    for &dataset in datasets {
        eprintln!("building {} ...", dataset.describe(args.scale));
        let build_s = datasets::build(&rig.source, dataset, args.scale, args.fresh)?;
        let mut info = datasets::inspect(&rig.source, dataset)?;
        let plan = floor::export(&rig.source, dataset, &info, &rig.files.join(dataset.key()))?;
        info.logical_bytes = plan.bytes();
        eprintln!(
            "  built in {build_s:.1} s: {} tables, {} rows, {:.1} MB exported, {:.1} MB in InnoDB",
            info.tables.len(),
            info.rows,
            info.logical_bytes as f64 / 1e6,
            info.stored_bytes as f64 / 1e6
        );

        if args.hold {
            return hold(&bench, dataset).map(|()| false);
        }

        // A fresh server's first load is slower than the next ones (on
        // MySQL 9.7, 6.8 s against 5.3 s for the same dbferry import, four
        // in a row): whichever tool went first in round 1 paid for it. One
        // unmeasured load by the floor, which is no contender, pays instead.
        eprintln!("  warm-up: one unmeasured floor load into the fresh target");
        if let Err(message) = one_run(&bench, Tool::Floor, dataset, &info, &plan, args.threads, 0) {
            eprintln!("  note: the warm-up load failed ({message}); round 1 runs on a cold target");
        }
        let mut collected: Vec<Collected> = tools.iter().map(|_| Collected::default()).collect();
        for round in 0..args.runs {
            for k in 0..tools.len() {
                let index = (k + round) % tools.len();
                let tool = tools[index];
                let slot = &mut collected[index];
                // A failed run (myloader gives up on a deadlock, say) is
                // reported, and the tool's other runs still count.
                match one_run(&bench, tool, dataset, &info, &plan, args.threads, round) {
                    Ok(run) => slot.runs.push(run),
                    Err(message) => {
                        slot.error.get_or_insert(message);
                    }
                }
            }
        }

        let mut scaling = Vec::new();
        if dataset == Dataset::D && !sweep.is_empty() {
            let swept: Vec<Tool> = tools
                .iter()
                .copied()
                .filter(|t| matches!(t, Tool::Dbferry | Tool::Floor))
                .collect();
            let mut points: Vec<(Tool, usize, Collected)> = Vec::new();
            for &tool in &swept {
                for &p in sweep {
                    points.push((tool, p, Collected::default()));
                }
            }
            for round in 0..args.runs {
                for k in 0..points.len() {
                    let index = (k + round) % points.len();
                    let (tool, p, slot) = &mut points[index];
                    match one_run(&bench, *tool, dataset, &info, &plan, *p, round) {
                        Ok(run) => slot.runs.push(run),
                        Err(message) => {
                            slot.error.get_or_insert(message);
                        }
                    }
                }
            }
            for (tool, p, slot) in points {
                any_failed |= slot.error.is_some();
                scaling.push(ScalingPoint {
                    tool: tool.key().to_string(),
                    parallelism: p,
                    summary: ToolSummary::new(tool, slot.runs, slot.error, &info),
                });
            }
        }

        let mut result = DatasetResult {
            dataset: dataset.key().to_string(),
            flavour: flavour.key().to_string(),
            variant: variant.join("-"),
            description: dataset.describe(args.scale),
            scale: args.scale,
            runs_requested: args.runs,
            tables: info.tables.len(),
            rows: info.rows,
            logical_bytes: info.logical_bytes,
            stored_bytes: info.stored_bytes,
            build_s,
            environment: env.clone(),
            tools: tools
                .iter()
                .zip(collected)
                .map(|(&tool, c)| {
                    any_failed |= c.error.is_some();
                    ToolSummary::new(tool, c.runs, c.error, &info)
                })
                .collect(),
            scaling,
        };
        result.finish();
        result.save(out)?;
        print!("{}", report::table(std::slice::from_ref(&result)));
        finished.push(result);

        // Free the disk before the next dataset.
        let db = dataset.database();
        rig.target.exec(&format!(
            "DROP DATABASE IF EXISTS {}",
            dbferry_benches::server::ident(db)
        ))?;
        rig.source.exec(&format!(
            "DROP DATABASE IF EXISTS {}",
            dbferry_benches::server::ident(db)
        ))?;
        let _ = std::fs::remove_dir_all(rig.files.join(dataset.key()));
    }

    Ok(any_failed)
}
