//! Test harness for dbferry.
//!
//! - [`Server`]: a real, throwaway database server of either [`Flavour`]:
//!   Debian's MariaDB 10.11 (`mariadbd`) or Oracle MySQL 9.7 (from
//!   `scripts/fetch-mysql.sh`'s prefix, with its shipped defaults: binary
//!   log, GTID mode, `caching_sha2_password`). Each has a private datadir
//!   and an ephemeral port, is torn down on drop, and many can run in
//!   parallel; each starts from a cached template datadir.
//!   [`Flavour::shared`] gives the one server of a flavour that a test
//!   binary shares; [`on_both_flavours!`] runs a test body on each.
//!   [`MariaDb`] is the historical name of [`Server`]; its flavour-less
//!   constructors start MariaDB.
//! - SQL helpers on [`Server`] that shell out to the flavour's own client,
//!   so tests compare source and target independently of dbferry's code:
//!   [`Server::exec`], [`Server::query`], [`Server::checksum_table`],
//!   [`Server::row_hash`], [`Server::show_create`].
//! - [`ConfigBuilder`], [`Instance`] and [`Job`]: write dbferry config and
//!   job files (CONTRACT §2 and §3) into a [`Files`] directory, secrets with
//!   mode 0600.
//! - [`run_job`] and [`dbferry`]: run the real `dbferry` binary and parse its
//!   `--json` output ([`Outcome`]).
//! - [`Babelfish`]: a real, throwaway Babelfish for PostgreSQL server (TDS
//!   and T-SQL) for the SQL Server engine, with T-SQL helpers (FreeTDS's
//!   `tsql`) and PostgreSQL-side row hashes ([`Babelfish::row_hash`]).
//!
//! If a flavour is not installed, starting its server panics with a message
//! that says to run `make test` (which installs both): a silently skipped
//! database test would hide a failure.
#![deny(missing_docs)]

mod babelfish;
mod certs;
mod config;
mod error;
mod flavour;
mod process;
mod run;
mod server;
mod sql;
mod template;

pub use babelfish::{
    babelfish_available, babelfish_prefix, record_sqlserver_test, Babelfish, BABELFISH_PASSWORD, BABELFISH_PG_DATABASE,
    BABELFISH_USER,
};
pub use certs::TestCerts;
pub use config::{AccessKey, ConfigBuilder, Files, Instance, Job, DEFAULT_OWNER};
pub use error::Error;
pub use flavour::{mysql_prefix, Flavour, DEFAULT_MYSQL_PREFIX};
pub use run::{dbferry, dbferry_with_env, run_job, spawn_run, Outcome, RunningJob, RUN_TIMEOUT};
pub use server::{MariaDb, Server, ADMIN_USER};
pub use sql::{ident, literal, ObjectKind, Rows};

/// Declares tests whose body runs once per [`Flavour`]: each
/// `fn name(flavour: Flavour) { ... }` becomes a module `name` with the
/// tests `name::mariadb` and `name::mysql`. The body usually takes its
/// server from [`Flavour::shared`], so a test binary starts one server per
/// flavour however many tests it has. A return type (e.g. a `Result`) is
/// kept; attributes (`#[ignore]`, docs) go on both tests.
///
/// ```ignore
/// dbferry_testkit::on_both_flavours! {
///     fn copies_a_table(flavour: Flavour) {
///         let server = flavour.shared();
///         server.exec("SELECT 1");
///     }
/// }
/// ```
#[macro_export]
macro_rules! on_both_flavours {
    ($($(#[$meta:meta])* fn $name:ident($flavour:ident : Flavour) $(-> $ret:ty)? $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn body($flavour: $crate::Flavour) $(-> $ret)? $body

                $(#[$meta])*
                #[test]
                fn mariadb() $(-> $ret)? {
                    body($crate::Flavour::MariaDb)
                }

                $(#[$meta])*
                #[test]
                fn mysql() $(-> $ret)? {
                    body($crate::Flavour::MySql)
                }
            }
        )*
    };
}
