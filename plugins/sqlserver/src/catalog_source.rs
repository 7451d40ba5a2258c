//! Where catalogue queries run: a TDS connection, or, on Babelfish with
//! `postgres_port`, a connection to its PostgreSQL port.
//!
//! Babelfish parses every T-SQL statement with its ANTLR parser, whose
//! decision cache each server process builds anew: a catalogue query meets
//! it cold, and took 0.2-0.6 s (the `sys.columns` query 0.85 s in a new
//! session, against 4 ms the second time). The describe's dozen queries
//! took 1.5 s on one new connection, most of the precheck. The catalogue
//! views are PostgreSQL views, and PostgreSQL parses the same queries in
//! milliseconds: the whole describe took 0.16 s there, connection
//! included. The views show the session's current T-SQL database, which a
//! PostgreSQL session has none of; a one-statement T-SQL block, `DO
//! $$USE [db]$$ LANGUAGE pltsql`, sets it for the session, as `USE` does
//! on TDS.
//!
//! The queries themselves are the flavour's T-SQL ones, written so that
//! PostgreSQL reads them too (`CONCAT`, not `+`, to join strings), and the
//! rows are read as text ([`crate::cell::Cells`]).

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::cell::{u64, Cells};
use crate::conn::{exec, rows, Conn};
use crate::error::{Error, Result};
use crate::flavour::Flavour;
use crate::pgload::PgPort;
use crate::probe::objects_sql;
use crate::quote::ident;

/// A connection that answers catalogue queries in a database's context.
// The futures run on the plugin's own runtime by `block_on`; none needs `Send`.
#[allow(async_fn_in_trait)]
pub trait CatalogSource {
    /// A row of an answer.
    type Row: Cells;

    /// The rows of `sql`'s first result.
    async fn rows(&mut self, sql: &str) -> Result<Vec<Self::Row>>;

    /// Makes `database` the current T-SQL database.
    async fn enter(&mut self, database: &str) -> Result<()>;

    /// Leaves the database entered, for a connection that is used again.
    async fn leave(&mut self) -> Result<()>;

    /// How many user objects `database` holds ([`objects_sql`]); `None`
    /// when it cannot be opened.
    async fn count_objects(&mut self, database: &str, flavour: Flavour) -> Option<u64>;
}

impl CatalogSource for Conn {
    type Row = tiberius::Row;

    async fn rows(&mut self, sql: &str) -> Result<Vec<tiberius::Row>> {
        rows(self, sql).await
    }

    async fn enter(&mut self, database: &str) -> Result<()> {
        exec(self, &format!("USE {}", ident(database))).await
    }

    async fn leave(&mut self) -> Result<()> {
        exec(self, "USE master").await
    }

    async fn count_objects(&mut self, database: &str, flavour: Flavour) -> Option<u64> {
        let found = rows(self, &objects_sql(Some(database), flavour)).await.ok()?;
        found.first().map(|r| u64(r, 0))
    }
}

/// A connection to a Babelfish server's PostgreSQL port, for catalogue
/// queries (see the module doc). Taken from and given back to its port's
/// catalogue connections ([`PgPort::catalog_client`]), never to the
/// connections that load and read rows, as it `USE`s databases.
pub struct PgCatalog {
    client: Client,
}

/// The dollar quote around the T-SQL block that enters a database.
const QUOTE: &str = "$dbferry$";

impl PgCatalog {
    /// Catalogue queries on `client`, in `master` as this plugin's TDS
    /// connections start: a PostgreSQL session has no current database,
    /// and T-SQL functions that ask for the login's rights through its
    /// database user (`HAS_PERMS_BY_NAME`) answer 0 without one. Entering
    /// a database also puts T-SQL's types and functions (`nvarchar`,
    /// `SCHEMA_NAME`) on the search path, before PostgreSQL's.
    pub async fn open(port: &PgPort) -> Result<Self> {
        let mut catalog = Self {
            client: port.catalog_client().await?,
        };
        catalog.enter("master").await?;
        Ok(catalog)
    }

    /// Gives the connection back to `port` for the next [`Self::open`],
    /// which enters master again. Only after every query answered.
    pub fn close(self, port: &PgPort) {
        port.give_back_catalog(self.client);
    }

    /// The statement that makes `database` current, `None` for a name that
    /// would end the block's quote.
    pub fn enter_sql(database: &str) -> Option<String> {
        let name = ident(database);
        (!name.contains(QUOTE)).then(|| format!("DO {QUOTE}USE {name}{QUOTE} LANGUAGE pltsql"))
    }
}

impl CatalogSource for PgCatalog {
    type Row = SimpleQueryRow;

    async fn rows(&mut self, sql: &str) -> Result<Vec<SimpleQueryRow>> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(Error::postgres(format!("running {}", crate::conn::abbreviate(sql))))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect())
    }

    async fn enter(&mut self, database: &str) -> Result<()> {
        let sql = Self::enter_sql(database)
            .ok_or_else(|| Error::Invalid(format!("the database name {} holds {QUOTE}", ident(database))))?;
        self.client
            .batch_execute(&sql)
            .await
            .map_err(Error::postgres(format!("entering database {}", ident(database))))
    }

    async fn leave(&mut self) -> Result<()> {
        Ok(())
    }

    /// Three-part names are T-SQL's alone: the database is entered first.
    async fn count_objects(&mut self, database: &str, flavour: Flavour) -> Option<u64> {
        self.enter(database).await.ok()?;
        let found = self.rows(&objects_sql(None, flavour)).await.ok()?;
        found.first().map(|r| u64(r, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entering_a_database_is_one_quoted_t_sql_statement() {
        assert_eq!(
            PgCatalog::enter_sql("my]db").as_deref(),
            Some("DO $dbferry$USE [my]]db]$dbferry$ LANGUAGE pltsql")
        );
        assert_eq!(PgCatalog::enter_sql("a$dbferry$b"), None);
    }
}
