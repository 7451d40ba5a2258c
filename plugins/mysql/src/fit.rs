//! What of a source database a target server cannot hold, asked at
//! precheck (`CheckTarget`) so that an import between different servers
//! (MySQL and MariaDB, or an older release) is refused with the whole list
//! before anything is created, instead of failing on the first table that
//! the target rejects, or worse, creating something else than the source
//! holds.
//!
//! What is asked of the target itself, so it is exact whatever the two
//! servers are: every character set and collation the schema names (MySQL's
//! default `utf8mb4_0900_ai_ci` is unknown to MariaDB 10.11, MariaDB's
//! `uca1400` ones to MySQL), and every table's storage engine.
//!
//! What is known per flavour, because no catalog lists it: column types
//! (MariaDB's `INET4`, `INET6`, `UUID`; `VECTOR` on servers without it), and
//! table features that only one flavour's DDL has (MariaDB's system
//! versioning and application-time periods and sequences; MySQL's
//! functional index key parts and spatial reference ids).
//!
//! Triggers and stored functions that the account could not create
//! ([`crate::creators`]) are in the same list.

use std::collections::BTreeMap;

use dbferry_plugin_abi::protocol::DatabaseSchema;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::{cell, ServerFacts};
use crate::detail::TableDetail;
use crate::error::{code, Context, Result};
use crate::quote::ident;

/// Most objects named per problem; the rest are counted.
const NAMED: usize = 8;

/// Everything of `schema` that the server of `conn` (described by `facts`)
/// cannot hold, one line per problem with the objects it concerns; empty
/// when it can hold all of it.
pub async fn unheld(conn: &mut Conn, facts: &ServerFacts, schema: &DatabaseSchema) -> Result<Vec<String>> {
    let database = crate::schema::database_detail(&schema.detail)?;
    let tables = schema
        .tables
        .iter()
        .map(|t| Ok((t.name.as_str(), TableDetail::from_json(&t.detail)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut problems = Problems::default();
    collations(conn, facts, &tables, &mut problems).await?;
    engines(conn, facts, &tables, &mut problems).await?;
    for (name, table) in &tables {
        features(facts, name, table, &mut problems);
    }
    if !facts.mariadb && !database.sequences.is_empty() {
        for sequence in &database.sequences {
            problems.add(
                format!("sequences do not exist on {}", server(facts)),
                format!("sequence {}", ident(&sequence.name)),
            );
        }
    }
    let mut lines = problems.lines();
    lines.extend(crate::creators::refused(conn, schema).await?);
    Ok(lines)
}

fn server(facts: &ServerFacts) -> String {
    let (a, b, c) = facts.numbers;
    format!("the target ({} {a}.{b}.{c})", facts.product())
}

/// Problems, each with the objects it concerns, in a stable order.
#[derive(Default)]
struct Problems(BTreeMap<String, Vec<String>>);

impl Problems {
    fn add(&mut self, problem: String, object: String) {
        let objects = self.0.entry(problem).or_default();
        if !objects.contains(&object) {
            objects.push(object);
        }
    }

    fn lines(self) -> Vec<String> {
        self.0
            .into_iter()
            .map(|(problem, objects)| {
                let mut named = objects.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
                if objects.len() > NAMED {
                    named.push_str(&format!(" and {} more", objects.len() - NAMED));
                }
                format!("{problem}: {named}")
            })
            .collect()
    }
}

/// The character sets and collations of the tables and their columns, each
/// asked of the target: a probe per distinct pair, because the catalogs
/// differ (MariaDB 10.10+ lists `uca1400` collations apart from their
/// character sets, and 11.4+ accepts MySQL's names as aliases that no
/// catalog row shows). Not the database's default (the target database
/// exists already), nor the connection collation a view or routine was
/// created under: where the target lacks it, the object is created under
/// its character set's default (see `schema::set_client`).
async fn collations(
    conn: &mut Conn,
    facts: &ServerFacts,
    tables: &[(&str, TableDetail)],
    problems: &mut Problems,
) -> Result<()> {
    let mut wanted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut want = |charset: &str, collation: &str, user: String| {
        if !charset.is_empty() && !collation.is_empty() {
            wanted
                .entry((charset.to_string(), collation.to_string()))
                .or_default()
                .push(user);
        }
    };
    for (name, table) in tables {
        if let Some((charset, collation)) = table_default(&table.create) {
            want(&charset, &collation, format!("table {}", ident(name)));
        }
        for column in &table.columns {
            if let (Some(charset), Some(collation)) = (&column.charset, &column.collation) {
                want(
                    charset,
                    collation,
                    format!("column {}.{}", ident(name), ident(&column.name)),
                );
            }
        }
    }
    for ((charset, collation), users) in wanted {
        let probe = format!(
            "SELECT CONVERT('' USING {}) COLLATE {}",
            ident(&charset),
            ident(&collation)
        );
        match conn.query_drop(probe.as_str()).await.ctx(|| format!("running {probe}")) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.server_code(),
                    Some(code::UNKNOWN_COLLATION | code::UNKNOWN_CHARACTER_SET | code::COLLATION_CHARSET_MISMATCH)
                ) =>
            {
                for user in users {
                    problems.add(
                        format!(
                            "character set {charset} with collation {collation} is unknown to {}",
                            server(facts)
                        ),
                        user,
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `(charset, collation)` of a table's default, from the table options
/// line of `SHOW CREATE TABLE` (`... DEFAULT CHARSET=x COLLATE=y`). Without
/// a `COLLATE=` the server printed the charset's default, which the column
/// and database checks cover.
fn table_default(create: &str) -> Option<(String, String)> {
    let options = create.lines().last()?;
    let after = |key: &str| {
        options.find(key).map(|at| {
            options[at + key.len()..]
                .split(|c: char| c.is_whitespace())
                .next()
                .unwrap_or_default()
                .to_string()
        })
    };
    Some((after(" CHARSET=")?, after(" COLLATE=")?))
}

/// The engines the tables use that the target does not offer.
async fn engines(
    conn: &mut Conn,
    facts: &ServerFacts,
    tables: &[(&str, TableDetail)],
    problems: &mut Problems,
) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let sql = "SELECT ENGINE FROM information_schema.ENGINES WHERE SUPPORT IN ('YES', 'DEFAULT')";
    let offered: Vec<Row> = conn.query(sql).await.ctx(|| format!("running {sql}"))?;
    let offered: Vec<String> = offered
        .iter()
        .map(|r| cell::string(r, 0).to_ascii_lowercase())
        .collect();
    for (name, table) in tables {
        if !table.engine.is_empty() && !offered.contains(&table.engine.to_ascii_lowercase()) {
            problems.add(
                format!("storage engine {} is not offered by {}", table.engine, server(facts)),
                format!("table {}", ident(name)),
            );
        }
    }
    Ok(())
}

/// Column types and table features of one flavour's DDL that the target
/// does not have.
fn features(facts: &ServerFacts, name: &str, table: &TableDetail, problems: &mut Problems) {
    let target = server(facts);
    for column in &table.columns {
        if let Some(why) = missing_type(facts, &column.data_type) {
            problems.add(
                format!(
                    "column type {} {why} on {target}",
                    column.data_type.to_ascii_uppercase()
                ),
                format!("column {}.{}", ident(name), ident(&column.name)),
            );
        }
    }
    for feature in foreign_features(facts, &table.create) {
        problems.add(
            format!("{feature} is not supported by {target}"),
            format!("table {}", ident(name)),
        );
    }
}

/// Why a column type does not exist on the target, if it does not.
fn missing_type(facts: &ServerFacts, data_type: &str) -> Option<&'static str> {
    let at_least = |version: (u16, u16, u16)| facts.numbers >= version;
    match data_type.to_ascii_lowercase().as_str() {
        "inet4" | "inet6" | "uuid" if !facts.mariadb => Some("is MariaDB's and does not exist"),
        "inet4" if !at_least((10, 10, 0)) => Some("does not exist before MariaDB 10.10"),
        "inet6" if !at_least((10, 5, 0)) => Some("does not exist before MariaDB 10.5"),
        "uuid" if !at_least((10, 7, 0)) => Some("does not exist before MariaDB 10.7"),
        "vector" if facts.mariadb && !at_least((11, 7, 0)) => Some("does not exist before MariaDB 11.7"),
        "vector" if !facts.mariadb && !at_least((9, 0, 0)) => Some("does not exist before MySQL 9.0"),
        _ => None,
    }
}

/// The features of `create` (`SHOW CREATE TABLE` of the source) that the
/// target cannot hold, or that dbferry cannot copy exactly.
fn foreign_features(facts: &ServerFacts, create: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    let upper = create.to_ascii_uppercase();
    let versioned = upper.contains("WITH SYSTEM VERSIONING") || upper.contains("PERIOD FOR SYSTEM_TIME");
    if facts.mariadb {
        for line in create.lines().skip(1).map(str::trim_start) {
            let key = ["KEY ", "UNIQUE KEY ", "INDEX ", "UNIQUE INDEX ", "PRIMARY KEY "]
                .iter()
                .any(|k| line.starts_with(k));
            // MySQL prints a functional key part as `((expr))`, also after
            // a plain part: `(`a`,(expr))`.
            if key && (line.contains("((") || line.contains(",(")) && !found.contains(&"a functional index key part") {
                found.push("a functional index key part");
            }
            if line.starts_with('`') && line.contains(" SRID ") && !found.contains(&"a spatial column with an SRID") {
                found.push("a spatial column with an SRID");
            }
        }
        if versioned {
            // Reading a versioned table gives its current rows: the
            // history would be lost.
            found.push("a copy of a system-versioned table's history (dbferry reads its current rows only)");
        }
    } else {
        if versioned {
            found.push("MariaDB's system versioning");
        }
        if create
            .lines()
            .any(|l| l.trim_start().starts_with("PERIOD FOR ") && !l.contains("SYSTEM_TIME"))
        {
            found.push("MariaDB's application-time period");
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(mariadb: bool, numbers: (u16, u16, u16)) -> ServerFacts {
        ServerFacts {
            version: String::new(),
            mariadb,
            numbers,
            max_allowed_packet: 0,
        }
    }

    #[test]
    fn a_table_default_is_read_from_its_options_line() {
        let create =
            "CREATE TABLE `t` (\n  `a` int\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci";
        assert_eq!(
            table_default(create),
            Some(("utf8mb4".into(), "utf8mb4_0900_ai_ci".into()))
        );
        assert_eq!(
            table_default("CREATE TABLE `t` (\n) ENGINE=InnoDB DEFAULT CHARSET=latin1"),
            None
        );
    }

    #[test]
    fn types_are_refused_where_the_target_lacks_them() {
        let mysql = facts(false, (9, 7, 0));
        let mariadb = facts(true, (10, 11, 6));
        assert!(missing_type(&mysql, "inet6").is_some());
        assert!(missing_type(&mysql, "uuid").is_some());
        assert!(missing_type(&mysql, "vector").is_none());
        assert!(missing_type(&mariadb, "vector").is_some());
        assert!(missing_type(&mariadb, "uuid").is_none());
        assert!(missing_type(&facts(true, (11, 8, 0)), "vector").is_none());
        assert!(missing_type(&mariadb, "int").is_none());
    }

    #[test]
    fn one_flavours_table_features_are_found_for_the_other() {
        let mysql_ddl = "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `p` point NOT NULL /*!80003 SRID 4326 */,\n  \
                         `n` varchar(9),\n  PRIMARY KEY (`id`),\n  KEY `f` ((lower(`n`))),\n  KEY `g` (`id`,(`n` + 1))\n\
                         ) ENGINE=InnoDB";
        assert_eq!(
            foreign_features(&facts(true, (10, 11, 6)), mysql_ddl),
            ["a spatial column with an SRID", "a functional index key part"]
        );
        let plain = "CREATE TABLE `t` (\n  `n` varchar(9),\n  KEY `k` (`n`(4))\n) ENGINE=InnoDB";
        assert!(foreign_features(&facts(true, (10, 11, 6)), plain).is_empty());
        let mariadb_ddl = "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `s` date,\n  `e` date,\n  \
                           PERIOD FOR `p` (`s`, `e`)\n) ENGINE=InnoDB WITH SYSTEM VERSIONING";
        assert_eq!(
            foreign_features(&facts(false, (9, 7, 0)), mariadb_ddl),
            ["MariaDB's system versioning", "MariaDB's application-time period"]
        );
        assert_eq!(foreign_features(&facts(true, (10, 11, 6)), mariadb_ddl).len(), 1);
    }

    #[test]
    fn long_lists_are_counted() {
        let mut problems = Problems::default();
        for i in 0..10 {
            problems.add("x".into(), format!("t{i}"));
        }
        assert_eq!(problems.lines(), ["x: t0, t1, t2, t3, t4, t5, t6, t7 and 2 more"]);
    }
}
