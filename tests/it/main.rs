//! dbferry's integration suite: the real `dbferry` binary against real
//! MariaDB servers started by `dbferry-testkit`.
//!
//! One test binary (registered by the daemon package as `[[test]] name =
//! "it"`), so the servers of [`common::pair`] are started once and shared by
//! every test that only needs its own databases; tests that change global
//! server state (read_only, killing a server, ...) start dedicated servers.
//!
//! Every comparison of source and target is made independently of dbferry,
//! through the `mariadb` client: `CHECKSUM TABLE`, a server-computed ordered
//! row hash, and `SHOW CREATE` of every object.
//!
//! Needs MariaDB installed (`make test` installs it) and the binary built
//! with its plugins next to it (`cargo build --workspace`, which `make test`
//! runs first; `cargo test` builds the binary and the mysql plugin, a
//! default member, too).

mod api;
mod blackhole;
mod cancel;
mod cli;
mod common;
mod consistency;
mod creators;
mod cross_flavour;
mod daemon;
mod faults;
mod fidelity;
mod jobfiles;
mod ladder_writes;
mod ops;
mod prechecks;
mod privilege;
mod resume;
mod sqlserver;
mod statistics;
mod tls;
