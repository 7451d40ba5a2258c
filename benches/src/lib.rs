//! dbferry's benchmark suite (package `dbferry-benches`).
//!
//! # The comparative suite: `make bench`
//!
//! ```text
//! cargo build --release -p dbferry -p dbferry-mysql
//! cargo run --release -p dbferry-benches --bin bench -- \
//!     [--dataset a|b|c|d|all] [--runs N] [--scale F] [--out DIR] [--dbferry PATH]
//! ```
//!
//! It boots two throwaway MariaDB servers ([`server`]), builds each dataset of
//! the performance issue on the source ([`datasets`]), then copies it to the
//! target with every tool ([`tools`]): dbferry, `mariadb-dump | mariadb`,
//! `mydumper` + `myloader`, and the `LOAD DATA INFILE` floor ([`floor`]).
//! Tools alternate within each round, after one unmeasured warm-up load
//! into the fresh target; every run starts from an empty target database
//! and is checked by exact row counts afterwards. The medians go to a
//! table on stdout, `benches/results/<dataset>.json` and
//! `benches/results/chart.png` ([`report`]). For dataset (d) it also sweeps
//! dbferry's `parallelism` (and the floor's sessions) over 1, 2, 4 and 8.
//! Quick check at CI size: `--scale 0.02 --runs 1`.
//!
//! `--flavour babelfish` (part of the default `all`) adds the SQL Server
//! dataset on two Babelfish servers ([`sqlserver`]): dbferry against
//! `freebcp` out + in and the floor (`freebcp` out, then PostgreSQL's `COPY
//! FROM`).
//!
//! # The memory guard: `rss_guard`
//!
//! `cargo run --release -p dbferry-benches --bin rss_guard` copies dataset (a)
//! at a small scale with the release `dbferry` and fails if its peak RSS
//! exceeds 128 MiB. No timing, so it is stable on a noisy CI machine.
//!
//! # Micro-benchmarks: `cargo bench -p dbferry-benches`
//!
//! `benches/pipeline.rs` drives `dbferry_copy_core::run_copy` with in-memory
//! sources and sinks; `benches/encoder.rs` measures the MySQL plugin's row
//! encoder and decoder (`dbferry_mysql::encode`) next to
//! [`encoder_baseline`], a plain reference encoder.

pub mod datasets;
pub mod encoder_baseline;
pub mod floor;
pub mod measure;
pub mod report;
pub mod rig;
pub mod server;
pub mod sqlserver;
pub mod tools;
