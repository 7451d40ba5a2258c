//! Finding a T-SQL table in PostgreSQL's catalogue, for `COPY` through a
//! Babelfish server's PostgreSQL port: its relation and its copied columns
//! as PostgreSQL names and types them. The writer ([`super::writer`])
//! copies into it; the reader ([`super::reader`]) copies out of it.

use tokio_postgres::Client;

use super::chain;
use crate::detail::TableDetail;
use crate::error::{Error, Result};
use crate::types::Transport;

/// The session temp table a chunk with binary columns is copied into.
const STAGE: &str = "dbferry_copy_stage";

/// One copied column of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgColumn {
    /// Its name, quoted.
    pub name: String,
    /// Its type as PostgreSQL spells it (`format_type`).
    pub ty: String,
    /// Binary (`varbinary`, `binary`, `image`): Babelfish's input function
    /// takes a text's own bytes, not hex, so such a column is copied as
    /// `bytea` into a staging table and cast on the server.
    pub bytes: bool,
}

/// A table as `COPY` meets it: the relation and its copied columns, as
/// PostgreSQL names them (quoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTable {
    /// `"schema"."table"`.
    pub relation: String,
    /// The copied columns, in the batch's order.
    pub columns: Vec<PgColumn>,
}

impl PgTable {
    /// Whether rows go through a staging table first (see [`PgColumn::bytes`]).
    pub fn staged(&self) -> bool {
        self.columns.iter().any(|c| c.bytes)
    }

    fn names(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The staging table, dropped at commit: the target's own types, but
    /// `bytea` for binary columns.
    pub fn stage_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, if c.bytes { "bytea" } else { c.ty.as_str() }))
            .collect();
        format!("CREATE TEMP TABLE {STAGE} ({}) ON COMMIT DROP", columns.join(", "))
    }

    /// The `COPY` that reads the table out, binary columns as `bytea`, in
    /// the text the target's [`Self::copy_sql`] takes. `binary` has no cast
    /// to `bytea` of its own; all three binary types cast to
    /// `bbf_varbinary` as they are, and that to `bytea`.
    pub fn copy_out_sql(&self) -> String {
        let values = self.values(|c| format!("{}::sys.bbf_varbinary::bytea", c.name));
        format!("COPY (SELECT {values} FROM {}) TO STDOUT", self.relation)
    }

    /// The copied columns, each binary one as `cast` writes it.
    fn values(&self, cast: impl Fn(&PgColumn) -> String) -> String {
        self.columns
            .iter()
            .map(|c| if c.bytes { cast(c) } else { c.name.clone() })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `COPY` statement, into the staging table when [`Self::staged`].
    pub fn copy_sql(&self) -> String {
        let into = if self.staged() { STAGE } else { &self.relation };
        format!("COPY {into} ({}) FROM STDIN", self.names())
    }

    /// Moves the staged rows into the table, identity values as they are.
    pub fn move_sql(&self) -> String {
        let values = self.values(|c| format!("{}::sys.bbf_varbinary::{}", c.name, c.ty));
        format!(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {values} FROM {STAGE}",
            self.relation,
            self.names(),
        )
    }
}

/// The oid of `detail`'s table of `database`: T-SQL's `OBJECT_ID`
/// (Babelfish's object ids are oids), asked through the PostgreSQL port,
/// where `sys.object_id` takes a three-part name and costs no T-SQL parse
/// on a new TDS connection.
pub async fn oid(client: &Client, database: &str, detail: &TableDetail) -> Result<i64> {
    let name = detail.three_part(database);
    let id: Option<i32> = client
        .query_one("SELECT sys.object_id($1::text)", &[&name])
        .await
        .map_err(finding(detail))?
        .try_get(0)
        .map_err(finding(detail))?;
    let Some(id) = id else {
        return Err(Error::NotFound(format!("{name} does not exist")));
    };
    // T-SQL shows oids above 2^31 as negative ints.
    Ok(i64::from(id) & 0xffff_ffff)
}

/// The relation of oid `oid` (`detail`'s table), quoted: `"schema"."table"`.
pub async fn relation(client: &Client, oid: i64, detail: &TableDetail) -> Result<String> {
    client
        .query_one(
            &format!(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = {oid}"
            ),
            &[],
        )
        .await
        .map_err(finding(detail))?
        .try_get::<_, String>(0)
        .map_err(finding(detail))
}

fn finding(detail: &TableDetail) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| Error::Data(format!("finding {} in PostgreSQL: {}", detail.two_part(), chain(&e)))
}

/// Finds `detail`'s table of `database` in PostgreSQL's catalogue: its oid
/// ([`oid`]), its columns by position. `None` when a column's name differs
/// from T-SQL's beyond case (PostgreSQL shortens names over 63 bytes), or
/// the columns do not line up: the chunk then goes over TDS.
pub async fn resolve(client: &Client, database: &str, detail: &TableDetail) -> Result<Option<PgTable>> {
    let oid = oid(client, database, detail).await?;
    let relation = relation(client, oid, detail).await?;
    let pg = finding(detail);
    let attributes: Vec<(String, String)> = client
        .query(
            &format!(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
                 WHERE attrelid = {oid} AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            ),
            &[],
        )
        .await
        .map_err(&pg)?
        .iter()
        .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
        .collect::<std::result::Result<_, tokio_postgres::Error>>()
        .map_err(&pg)?;
    if attributes.len() != detail.columns.len() {
        return Ok(None);
    }
    let mut columns = Vec::new();
    for (column, (attribute, ty)) in detail.columns.iter().zip(&attributes) {
        if column.name.to_lowercase() != attribute.to_lowercase() {
            return Ok(None);
        }
        if column.copied() {
            columns.push(PgColumn {
                name: quote_ident(attribute),
                ty: ty.clone(),
                bytes: matches!(column.transport(), Transport::Bytes { .. }),
            });
        }
    }
    Ok(Some(PgTable { relation, columns }))
}

/// A PostgreSQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, ty: &str, bytes: bool) -> PgColumn {
        PgColumn {
            name: quote_ident(name),
            ty: ty.into(),
            bytes,
        }
    }

    #[test]
    fn the_copy_names_its_columns() {
        let target = PgTable {
            relation: "\"d_dbo\".\"t\"".into(),
            columns: vec![
                column("id", "integer", false),
                column("a\"b", "sys.\"varchar\"(20)", false),
            ],
        };
        assert!(!target.staged());
        assert_eq!(
            target.copy_sql(),
            "COPY \"d_dbo\".\"t\" (\"id\", \"a\"\"b\") FROM STDIN"
        );
    }

    #[test]
    fn binary_columns_are_staged_as_bytea_and_cast_by_the_server() {
        let target = PgTable {
            relation: "\"d_dbo\".\"t\"".into(),
            columns: vec![column("id", "integer", false), column("b", "sys.\"binary\"(4)", true)],
        };
        assert!(target.staged());
        assert_eq!(
            target.stage_sql(),
            "CREATE TEMP TABLE dbferry_copy_stage (\"id\" integer, \"b\" bytea) ON COMMIT DROP"
        );
        assert_eq!(target.copy_sql(), "COPY dbferry_copy_stage (\"id\", \"b\") FROM STDIN");
        assert_eq!(
            target.copy_out_sql(),
            "COPY (SELECT \"id\", \"b\"::sys.bbf_varbinary::bytea FROM \"d_dbo\".\"t\") TO STDOUT"
        );
        assert_eq!(
            target.move_sql(),
            "INSERT INTO \"d_dbo\".\"t\" (\"id\", \"b\") OVERRIDING SYSTEM VALUE \
             SELECT \"id\", \"b\"::sys.bbf_varbinary::sys.\"binary\"(4) FROM dbferry_copy_stage"
        );
    }
}
