//! Test harness for dbferry.
//!
//! - [`MariaDb`]: a real, throwaway MariaDB server (Debian's `mariadbd`)
//!   with a private datadir and an ephemeral port, torn down on drop. Many
//!   can run in parallel; each starts from a cached template datadir.
//! - SQL helpers on [`MariaDb`] that shell out to the `mariadb` client, so
//!   tests compare source and target independently of dbferry's own code:
//!   [`MariaDb::exec`], [`MariaDb::query`], [`MariaDb::checksum_table`],
//!   [`MariaDb::row_hash`], [`MariaDb::show_create`].
//! - [`ConfigBuilder`], [`Instance`] and [`Job`]: write dbferry config and
//!   job files (CONTRACT §2 and §3) into a [`Files`] directory, secrets with
//!   mode 0600.
//! - [`run_job`] and [`dbferry`]: run the real `dbferry` binary and parse its
//!   `--json` output ([`Outcome`]).
//!
//! - [`Babelfish`]: a real, throwaway Babelfish for PostgreSQL server (TDS
//!   and T-SQL) for the SQL Server engine, with T-SQL helpers (FreeTDS's
//!   `tsql`) and PostgreSQL-side row hashes ([`Babelfish::row_hash`]).
//!
//! If MariaDB is not installed, starting a server panics with a message that
//! says to run `make test` (which installs it): a silently skipped database
//! test would hide a failure.
#![deny(missing_docs)]

mod babelfish;
mod config;
mod error;
mod run;
mod server;
mod sql;

pub use babelfish::{
    babelfish_available, babelfish_prefix, record_sqlserver_test, Babelfish, BABELFISH_PASSWORD, BABELFISH_PG_DATABASE,
    BABELFISH_USER,
};
pub use config::{AccessKey, ConfigBuilder, Files, Instance, Job, DEFAULT_OWNER};
pub use error::Error;
pub use run::{dbferry, dbferry_with_env, run_job, spawn_run, Outcome, RunningJob, RUN_TIMEOUT};
pub use server::{MariaDb, ADMIN_USER};
pub use sql::{ident, literal, ObjectKind, Rows};
