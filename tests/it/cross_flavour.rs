//! Across flavours (MariaDB and MySQL 9.7, in both directions): a database
//! both can hold copies exactly; one that the target cannot hold is refused
//! at precheck with the whole list of what and why, and nothing is created.
//! The same holds for what dbferry cannot copy exactly between servers of
//! one flavour.

use dbferry_testkit::{literal, Flavour, Server};

use crate::common::{create_source, cross_pair, pair_of, unique, Setup};

/// Runs a copy of `db` from `from`'s source to `to`'s target that must be refused at
/// precheck, checks that the target database is untouched, and returns the
/// refusal's message.
fn refused(from: Flavour, to: Flavour, db: &str, script: &str) -> String {
    let p = if from == to {
        *pair_of(from)
    } else {
        cross_pair(from, to)
    };
    create_source((p.source, p.target), db, "utf8mb4", script);
    let before = p.target.objects(db);
    let outcome = Setup::new(p.source, p.target).copy(&[db], &[]);
    outcome.assert_rejected("IncorrectDBInstanceType");
    assert_eq!(p.target.objects(db), before, "nothing is created on the target");
    outcome.message().unwrap_or_default().to_string()
}

fn assert_names(message: &str, expected: &[&str]) {
    for part in expected {
        assert!(message.contains(part), "the refusal names {part:?}: {message}");
    }
}

/// MySQL's default collation, VECTOR, spatial reference ids and functional
/// index key parts do not exist on MariaDB 10.11.
#[test]
fn mysql_to_mariadb_refuses_what_mariadb_cannot_hold() {
    let db = unique("cross_to_mariadb");
    let message = refused(
        Flavour::MySql,
        Flavour::MariaDb,
        &db,
        "CREATE TABLE defaults (id INT PRIMARY KEY, name VARCHAR(20)) COLLATE utf8mb4_0900_ai_ci;
         CREATE TABLE embeddings (id INT PRIMARY KEY, v VECTOR(3)) COLLATE utf8mb4_unicode_ci;
         CREATE TABLE places (id INT PRIMARY KEY, p POINT NOT NULL SRID 4326) COLLATE utf8mb4_unicode_ci;
         CREATE TABLE lookups (id INT PRIMARY KEY, name VARCHAR(20), KEY lower_name ((LOWER(name))))
           COLLATE utf8mb4_unicode_ci;
         CREATE TABLE portable (id INT PRIMARY KEY, name VARCHAR(20)) COLLATE utf8mb4_unicode_ci;",
    );
    assert_names(
        &message,
        &[
            "utf8mb4_0900_ai_ci",
            "`defaults`",
            "column type VECTOR",
            "`embeddings`.`v`",
            "SRID",
            "`places`",
            "functional index key part",
            "`lookups`",
        ],
    );
    assert!(
        !message.contains("`portable`"),
        "a table MariaDB can hold is not named: {message}"
    );
}

/// MariaDB's INET6, UUID and uca1400 collations, Aria, sequences and
/// system-versioned tables do not exist on MySQL.
#[test]
fn mariadb_to_mysql_refuses_what_mysql_cannot_hold() {
    let db = unique("cross_to_mysql");
    let message = refused(
        Flavour::MariaDb,
        Flavour::MySql,
        &db,
        "CREATE TABLE hosts (id INT PRIMARY KEY, addr INET6, tag UUID);
         CREATE TABLE names (id INT PRIMARY KEY, name VARCHAR(20) COLLATE utf8mb4_uca1400_ai_ci);
         CREATE TABLE cache (id INT PRIMARY KEY) ENGINE = Aria;
         CREATE TABLE history (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING;
         CREATE SEQUENCE ticket;
         CREATE TABLE portable (id INT PRIMARY KEY, name VARCHAR(20));",
    );
    assert_names(
        &message,
        &[
            "column type INET6",
            "`hosts`.`addr`",
            "column type UUID",
            "`hosts`.`tag`",
            "utf8mb4_uca1400_ai_ci",
            "`names`.`name`",
            "storage engine Aria",
            "`cache`",
            "system versioning",
            "`history`",
            "sequence `ticket`",
        ],
    );
    assert!(
        !message.contains("`portable`"),
        "a table MySQL can hold is not named: {message}"
    );
}

/// A system-versioned table was once left out of the copy with a warning,
/// and the import reported a success. Its history cannot be read as rows,
/// so it is refused by name, also between MariaDB servers.
#[test]
fn a_system_versioned_table_is_refused_not_left_out() {
    let db = unique("versioned");
    let message = refused(
        Flavour::MariaDb,
        Flavour::MariaDb,
        &db,
        "CREATE TABLE history (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING;
         INSERT INTO history VALUES (1, 1); UPDATE history SET v = 2;
         CREATE TABLE portable (id INT PRIMARY KEY);",
    );
    assert_names(&message, &["system-versioned", "`history`"]);
    assert!(!message.contains("`portable`"), "{message}");
}

/// A database both flavours can hold the same way.
fn portable_sql() -> String {
    r#"
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';
CREATE TABLE portable (
  id INT NOT NULL PRIMARY KEY,
  big BIGINT UNSIGNED,
  name VARCHAR(40) COLLATE utf8mb4_unicode_ci,
  amount DECIMAL(12,3),
  at DATETIME(6),
  day DATE,
  raw VARBINARY(16),
  KEY k_name (name)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO portable VALUES
  (1, 18446744073709551615, 'naïve 😀', -123456789.125, '2024-02-29 12:34:56.123456', '1000-01-01', X'00FF5C'),
  (2, 0, '', 0, NULL, NULL, ''),
  (3, NULL, NULL, NULL, '9999-12-31 23:59:59.999999', '9999-12-31', NULL);
"#
    .to_string()
}

/// Columns as both flavours describe them alike (MariaDB prints display
/// widths MySQL 8+ dropped, so COLUMN_TYPE is not compared).
fn portable_columns(server: &Server, db: &str) -> Vec<Vec<Option<String>>> {
    server.query(&format!(
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME, \
         NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, CHARACTER_MAXIMUM_LENGTH \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME, ORDINAL_POSITION",
        literal(db)
    ))
}

/// Across flavours, in both directions, a database both can hold the same
/// way copies exactly: the same rows (an ordered hash of each value's bytes,
/// computed by each server) and the same columns, types and collations.
#[test]
fn a_portable_database_copies_exactly_across_flavours_in_both_directions() {
    for (from, to) in [(Flavour::MariaDb, Flavour::MySql), (Flavour::MySql, Flavour::MariaDb)] {
        let p = cross_pair(from, to);
        let db = unique("fid_cross");
        create_source(
            (p.source, p.target),
            &db,
            "utf8mb4 COLLATE utf8mb4_unicode_ci",
            &portable_sql(),
        );
        let outcome = Setup::new(p.source, p.target).copy(&[&db], &[("verify", "\"count\"")]);
        outcome.assert_success();
        assert_eq!(outcome.rows(), Some(3), "{from:?} -> {to:?}\n{}", outcome.describe());
        assert_eq!(
            p.source.row_hash(&db, "portable"),
            p.target.row_hash(&db, "portable"),
            "{from:?} -> {to:?}: the same rows"
        );
        assert_eq!(
            portable_columns(p.source, &db),
            portable_columns(p.target, &db),
            "{from:?} -> {to:?}: the same columns"
        );
    }
}
