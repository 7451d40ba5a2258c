//! SQL through the flavour's own command-line client (`mariadb` or MySQL's
//! `mysql`): independent of dbferry.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::Error;
use crate::server::Server;

/// A result set: rows of columns; `None` is SQL NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// Quotes an identifier with backticks (doubling any backtick inside).
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal, safe under any `sql_mode` (backslashes and
/// quotes are escaped by doubling or as `\\`, and NO_BACKSLASH_ESCAPES is
/// handled by using a hex literal for anything with a backslash).
pub fn literal(value: &str) -> String {
    if value.contains('\\') {
        let hex: String = value.bytes().map(|b| format!("{b:02X}")).collect();
        return format!("CONVERT(X'{hex}' USING utf8mb4)");
    }
    format!("'{}'", value.replace('\'', "''"))
}

/// Kinds of objects [`Server::show_create`] knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// `SHOW CREATE TABLE`.
    Table,
    /// `SHOW CREATE VIEW`.
    View,
    /// `SHOW CREATE PROCEDURE`.
    Procedure,
    /// `SHOW CREATE FUNCTION`.
    Function,
    /// `SHOW CREATE TRIGGER`.
    Trigger,
    /// `SHOW CREATE EVENT`.
    Event,
    /// `SHOW CREATE SEQUENCE` (MariaDB).
    Sequence,
}

impl ObjectKind {
    /// The SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            ObjectKind::Table => "TABLE",
            ObjectKind::View => "VIEW",
            ObjectKind::Procedure => "PROCEDURE",
            ObjectKind::Function => "FUNCTION",
            ObjectKind::Trigger => "TRIGGER",
            ObjectKind::Event => "EVENT",
            ObjectKind::Sequence => "SEQUENCE",
        }
    }

    /// The column of `SHOW CREATE <kind>` that holds the statement.
    fn statement_column(self) -> usize {
        match self {
            ObjectKind::Table | ObjectKind::View | ObjectKind::Sequence => 1,
            ObjectKind::Procedure | ObjectKind::Function | ObjectKind::Trigger => 2,
            ObjectKind::Event => 3,
        }
    }
}

/// Undoes the client's `--batch` escaping (`\\`, `\t`, `\n`, `\0`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('Z') => out.push('\u{1a}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn parse(output: &str) -> Rows {
    output
        .lines()
        .map(|line| {
            line.split('\t')
                .map(|field| if field == "NULL" { None } else { Some(unescape(field)) })
                .collect()
        })
        .collect()
}

impl Server {
    fn client(&self, database: Option<&str>) -> Command {
        let mut command = Command::new(self.flavour().client_binary());
        command
            .arg("--no-defaults")
            .arg("--protocol=socket")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--user=root")
            .arg("--default-character-set=utf8mb4")
            .arg("--max-allowed-packet=1G")
            .arg("--batch")
            .arg("--skip-column-names");
        if let Some(db) = database {
            command.arg(format!("--database={db}"));
        }
        command
    }

    fn run_client(&self, database: Option<&str>, sql: &str) -> Result<String, Error> {
        let mut child = self
            .client(database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::io(
                    format!(
                        "spawning `{}` (is the {} client installed? run `make deps`)",
                        self.flavour().client_binary().display(),
                        self.flavour()
                    ),
                    e,
                )
            })?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::new("the client's stdin is not piped"))?;
        let script = sql.to_string();
        let feeder = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("running the {} client", self.flavour()), e))?;
        let fed = feeder.join().map_err(|_| Error::new("the stdin feeder panicked"))?;
        if !out.status.success() {
            let shown: String = sql.chars().take(2000).collect();
            return Err(Error::new(format!(
                "SQL failed on {} port {} ({}): {}\n--- SQL ---\n{shown}",
                self.flavour(),
                self.port(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        fed.map_err(|e| Error::io("writing SQL to the client", e))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a script (one or more `;`-separated statements) as root.
    pub fn try_exec(&self, sql: &str) -> Result<(), Error> {
        self.run_client(None, sql).map(|_| ())
    }

    /// Runs a script as root.
    ///
    /// # Panics
    /// If a statement fails; the message has the server's error and the SQL.
    pub fn exec(&self, sql: &str) {
        if let Err(error) = self.try_exec(sql) {
            panic!("{error}");
        }
    }

    /// Runs a script with `database` as the default database.
    ///
    /// # Panics
    /// If a statement fails.
    pub fn exec_in(&self, database: &str, sql: &str) {
        if let Err(error) = self.run_client(Some(database), sql) {
            panic!("{error}");
        }
    }

    /// Runs a query and returns its rows. SQL NULL is `None`. The client
    /// prints NULL and the string `'NULL'` alike, so a query that must tell
    /// them apart selects `ISNULL(x)` or `HEX(x)` too. Tabs, newlines and
    /// backslashes inside values survive; non-UTF-8 bytes are replaced, so
    /// binary values are best selected through `HEX()`.
    pub fn try_query(&self, sql: &str) -> Result<Rows, Error> {
        self.run_client(None, sql).map(|out| parse(&out))
    }

    /// Runs a query and returns its rows (see [`Server::try_query`]).
    ///
    /// # Panics
    /// If the query fails.
    pub fn query(&self, sql: &str) -> Rows {
        match self.try_query(sql) {
            Ok(rows) => rows,
            Err(error) => panic!("{error}"),
        }
    }

    /// The first column of the first row, `None` for no row or NULL.
    ///
    /// # Panics
    /// If the query fails.
    pub fn scalar(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
    }

    /// `CHECKSUM TABLE db.table EXTENDED`: the server's checksum of every
    /// row image.
    ///
    /// # Panics
    /// If the statement fails or returns no checksum.
    pub fn checksum_table(&self, db: &str, table: &str) -> String {
        let rows = self.query(&format!("CHECKSUM TABLE {}.{} EXTENDED", ident(db), ident(table)));
        match rows.first().and_then(|r| r.get(1)).cloned().flatten() {
            Some(sum) => sum,
            None => panic!("CHECKSUM TABLE {db}.{table} returned no checksum: {rows:?}"),
        }
    }

    /// The table's columns in order, invisible and generated ones included.
    ///
    /// # Panics
    /// If the query fails.
    pub fn columns(&self, db: &str, table: &str) -> Vec<String> {
        self.query(&format!(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} \
             ORDER BY ORDINAL_POSITION",
            literal(db),
            literal(table)
        ))
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect()
    }

    /// An order-independent content hash computed by the server:
    /// `"<rows>:<sha256>"`, where the hash covers the sorted SHA-256s of every row,
    /// each over the exact bytes (`HEX(CAST(col AS BINARY))`) of every
    /// column, invisible and generated columns included, plus a NULL flag
    /// per column. Two tables with the same multiset of rows hash alike,
    /// whatever their physical order or key; NULL, `''` and `'NULL'` differ.
    /// Temporal values are read with `time_zone = '+00:00'`. SHA-256, because
    /// MySQL 9.6+ has no built-in `MD5()`.
    ///
    /// # Panics
    /// If the table has no columns or the query fails.
    pub fn row_hash(&self, db: &str, table: &str) -> String {
        let columns = self.columns(db, table);
        assert!(
            !columns.is_empty(),
            "row_hash: {db}.{table} has no columns (does it exist?)"
        );
        let values: Vec<String> = columns
            .iter()
            .map(|c| format!("HEX(CAST({} AS BINARY))", ident(c)))
            .chain(columns.iter().map(|c| format!("ISNULL({})", ident(c))))
            .collect();
        let sql = format!(
            "SET SESSION group_concat_max_len = 4294967295; SET SESSION time_zone = '+00:00';\n\
             SELECT COUNT(*), IFNULL(SHA2(GROUP_CONCAT(h ORDER BY h SEPARATOR ''), 256), 'empty') FROM \
             (SELECT SHA2(CONCAT_WS('|', {}), 256) AS h FROM {}.{}) AS hashed",
            values.join(", "),
            ident(db),
            ident(table)
        );
        let rows = self.query(&sql);
        match rows.first() {
            Some(row) if row.len() == 2 => format!(
                "{}:{}",
                row[0].clone().unwrap_or_default(),
                row[1].clone().unwrap_or_default()
            ),
            _ => panic!("row_hash of {db}.{table}: unexpected result {rows:?}"),
        }
    }

    /// The statement of `SHOW CREATE <kind> db.name`.
    ///
    /// # Panics
    /// If the object does not exist.
    pub fn show_create(&self, db: &str, kind: ObjectKind, name: &str) -> String {
        let rows = self.query(&format!("SHOW CREATE {} {}.{}", kind.keyword(), ident(db), ident(name)));
        match rows
            .first()
            .and_then(|r| r.get(kind.statement_column()))
            .cloned()
            .flatten()
        {
            Some(statement) => statement,
            None => panic!("SHOW CREATE {} {db}.{name} returned {rows:?}", kind.keyword()),
        }
    }

    /// Every object of `db` with its kind, sorted: base tables, views,
    /// procedures, functions, triggers, events and sequences.
    ///
    /// # Panics
    /// If a query fails.
    pub fn objects(&self, db: &str) -> Vec<(ObjectKind, String)> {
        let db = literal(db);
        let sql = format!(
            "SELECT 'TABLE', TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db} AND TABLE_TYPE = 'BASE TABLE'\n\
             UNION ALL SELECT 'VIEW', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {db}\n\
             UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db}\n\
             UNION ALL SELECT 'TRIGGER', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db}\n\
             UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db}\n\
             UNION ALL SELECT 'SEQUENCE', TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db} AND TABLE_TYPE = 'SEQUENCE'"
        );
        let mut objects: Vec<(ObjectKind, String)> = self
            .query(&sql)
            .into_iter()
            .filter_map(|row| {
                let kind = match row.first()?.as_deref()? {
                    "TABLE" => ObjectKind::Table,
                    "VIEW" => ObjectKind::View,
                    "PROCEDURE" => ObjectKind::Procedure,
                    "FUNCTION" => ObjectKind::Function,
                    "TRIGGER" => ObjectKind::Trigger,
                    "EVENT" => ObjectKind::Event,
                    "SEQUENCE" => ObjectKind::Sequence,
                    _ => return None,
                };
                Some((kind, row.get(1)?.clone()?))
            })
            .collect();
        objects.sort();
        objects
    }

    /// The base tables of `db`, sorted.
    ///
    /// # Panics
    /// If the query fails.
    pub fn tables(&self, db: &str) -> Vec<String> {
        self.objects(db)
            .into_iter()
            .filter(|(k, _)| *k == ObjectKind::Table)
            .map(|(_, n)| n)
            .collect()
    }

    /// Whether database `db` exists.
    ///
    /// # Panics
    /// If the query fails.
    pub fn database_exists(&self, db: &str) -> bool {
        self.scalar(&format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            literal(db)
        ))
        .as_deref()
            == Some("1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_output_is_unescaped_and_null_recognised() {
        let rows = parse("a\\tb\tNULL\t\\\\N\n\t\\n\n");
        assert_eq!(
            rows,
            vec![
                vec![Some("a\tb".into()), None, Some("\\N".into())],
                vec![Some(String::new()), Some("\n".into())],
            ]
        );
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "CONVERT(X'615C62' USING utf8mb4)");
    }
}
