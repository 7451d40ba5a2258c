//! Checksum digests against real servers, MariaDB and Oracle MySQL: a copy
//! of a table digests the same by key range and whole, whatever the order
//! its rows went in, and each kind of damage to the copy (a changed byte, a
//! missing or extra row, two rows that swapped values, a changed FLOAT bit,
//! NULL turned into '') changes the digest of exactly the range it is in.
//! Each damage is first checked to be there with plain SQL, so a digest
//! that misses it cannot pass for one that found nothing to find.

use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::Session;
use dbferry_plugin_abi::protocol::{
    Digest, DigestsRequest, KeyRange, KeyValue, RangeDigestsRequest, TableSchema, VerifyMode,
};
use dbferry_testkit::{on_both_flavours, Flavour, Server};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The source rows: ids 1-3, 5-9 (4 is free for an extra row).
const SOURCE: &str = "
    CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), f FLOAT, n VARCHAR(10) NULL, d DOUBLE, b VARBINARY(8))
        DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_bin;
    INSERT INTO t VALUES
        (1, 'one', 1.5, 'x', 0.25, 0x00ff), (2, 'two', -2, NULL, 1e-7, NULL), (3, 'a#', 3, '#b', 3, 0x01),
        (5, 'e1', 0.1, 'n5', 5, 0x05), (6, 'f1', 0.2, NULL, 6, 0x06), (7, '', 0, '', 0, ''),
        (8, 'h', 8, 'n8', 8, 0x08), (9, 'i', 9, 'n9', 9, 0x09);
    CREATE TABLE k (v VARCHAR(10)) DEFAULT CHARSET utf8mb4;
    INSERT INTO k VALUES ('a'), ('a'), ('b');
    CREATE TABLE m (id INT PRIMARY KEY, a VARCHAR(10) CHARACTER SET latin1, b VARCHAR(10) COLLATE utf8mb4_general_ci,
        c VARCHAR(10) COLLATE utf8mb4_bin NOT NULL) DEFAULT CHARSET utf8mb4;
    INSERT INTO m VALUES (1, 'café', 'café', 'x#'), (2, NULL, '', '#y');
    CREATE TABLE s (id INT PRIMARY KEY, p VARCHAR(10) NOT NULL, q VARCHAR(10) NOT NULL) DEFAULT CHARSET utf8mb4;
    INSERT INTO s VALUES (1, '', '#y'), (2, 'p', 'q');";

/// The ranges compared: (,3], (3,6], (6,].
fn ranges() -> Vec<KeyRange> {
    let bound = |v: i64| Some(vec![KeyValue::Int(v)]);
    let range = |lower, upper| KeyRange {
        columns: vec!["id".into()],
        lower,
        upper,
    };
    vec![range(None, bound(3)), range(bound(3), bound(6)), range(bound(6), None)]
}

fn session(server: &Server) -> Result<MysqlSession, Box<dyn std::error::Error>> {
    Ok(MysqlSession::connect(&server.session_config("checksum", 3))?)
}

fn range_digests(
    session: &MysqlSession,
    database: &str,
    table: &TableSchema,
) -> Result<Vec<Digest>, Box<dyn std::error::Error>> {
    Ok(session.range_digests(RangeDigestsRequest {
        database: database.into(),
        table: table.clone(),
        ranges: ranges(),
        mode: VerifyMode::Checksum,
        in_snapshot: false,
    })?)
}

fn whole_digest(
    session: &MysqlSession,
    database: &str,
    table: &TableSchema,
) -> Result<Digest, Box<dyn std::error::Error>> {
    let mut digests = session.table_digests(DigestsRequest {
        database: database.into(),
        tables: vec![table.clone()],
        mode: VerifyMode::Checksum,
        in_snapshot: false,
    })?;
    Ok(digests.pop().ok_or("no digest")?)
}

/// Copies `src` to `dst` with SQL, rows in reverse key order.
fn copy(server: &Server, dst: &str) {
    server.exec(&format!(
        "DROP DATABASE IF EXISTS {dst}; CREATE DATABASE {dst};
         CREATE TABLE {dst}.t LIKE src.t; INSERT INTO {dst}.t SELECT * FROM src.t ORDER BY id DESC;
         CREATE TABLE {dst}.k LIKE src.k; INSERT INTO {dst}.k SELECT * FROM src.k ORDER BY v DESC;
         CREATE TABLE {dst}.m LIKE src.m; INSERT INTO {dst}.m SELECT * FROM src.m ORDER BY id DESC;
         CREATE TABLE {dst}.s LIKE src.s; INSERT INTO {dst}.s SELECT * FROM src.s ORDER BY id DESC;"
    ));
}

fn scalar(server: &Server, sql: &str) -> Option<String> {
    server.scalar(sql)
}

on_both_flavours! {
    fn each_damage_changes_the_digest_of_its_range_and_only_that(flavour: Flavour) -> TestResult {
        let server = flavour.shared();
        server.exec(&format!("DROP DATABASE IF EXISTS src; CREATE DATABASE src; USE src; {SOURCE}"));
        let session = session(server)?;
        let tables = session.describe_database("src")?.tables;
        let t = tables.iter().find(|t| t.name == "t").ok_or("no t")?;
        let k = tables.iter().find(|t| t.name == "k").ok_or("no k")?;
        let source = range_digests(&session, "src", t)?;
        assert_eq!(source.iter().map(|d| d.rows).collect::<Vec<_>>(), [3, 2, 3]);
        let source_whole = whole_digest(&session, "src", t)?;
        let source_keyless = whole_digest(&session, "src", k)?;

        // A copy in another order digests the same.
        copy(server, "same");
        assert_eq!(range_digests(&session, "same", t)?, source);
        assert_eq!(whole_digest(&session, "same", t)?, source_whole);
        assert_eq!(whole_digest(&session, "same", k)?, source_keyless);

        // (name, damage, proof it is there, the damaged range)
        let damages: [(&str, &str, &str, usize); 8] = [
            ("a changed byte", "UPDATE t SET v = 'tvo' WHERE id = 2",
             "SELECT COUNT(*) FROM t WHERE v = 'tvo'", 0),
            ("a changed byte in a binary column", "UPDATE t SET b = 0x07 WHERE id = 8",
             "SELECT COUNT(*) FROM t WHERE b = 0x07", 2),
            ("a missing row", "DELETE FROM t WHERE id = 5", "SELECT 8 - COUNT(*) FROM t", 1),
            ("an extra row", "INSERT INTO t VALUES (4, 'd', 4, 'n4', 4, 0x04)",
             "SELECT COUNT(*) - 8 FROM t", 1),
            ("two rows that swapped values",
             "UPDATE t SET v = IF(id = 5, 'f1', 'e1') WHERE id IN (5, 6)",
             "SELECT COUNT(*) DIV 2 FROM t WHERE (id, v) IN ((5, 'f1'), (6, 'e1'))", 1),
            // The next float above 0.1f (0x3DCCCCCD -> 0x3DCCCCCE).
            ("a changed FLOAT bit", "UPDATE t SET f = 0.10000000894069672 WHERE id = 5",
             "SELECT COUNT(*) FROM t WHERE id = 5 AND f <> 0.10000000149011612", 1),
            ("a changed key, the row otherwise the same", "UPDATE t SET id = 4 WHERE id = 5",
             "SELECT COUNT(*) FROM t WHERE id = 4 AND v = 'e1'", 1),
            ("NULL turned into ''", "UPDATE t SET n = '' WHERE id = 6",
             "SELECT COUNT(*) FROM t WHERE id = 6 AND n = ''", 1),
        ];
        for (name, damage, proof, damaged) in damages {
            copy(server, "dst");
            server.exec_in("dst", damage);
            assert_eq!(scalar(server, &format!("USE dst; {proof}")).as_deref(), Some("1"), "{name}: not done");
            let target = range_digests(&session, "dst", t)?;
            for (index, (s, d)) in source.iter().zip(&target).enumerate() {
                if index == damaged {
                    assert_ne!(s, d, "{name} in range {index} was not caught");
                } else {
                    assert_eq!(s, d, "{name} changed range {index}, where it is not");
                }
            }
            assert_ne!(whole_digest(&session, "dst", t)?, source_whole, "{name}: the whole table");
        }

        // A keyless table: one duplicate traded for another, same count.
        copy(server, "dst");
        server.exec_in("dst", "DELETE FROM k WHERE v = 'a' LIMIT 1; INSERT INTO k VALUES ('b')");
        assert_eq!(scalar(server, "SELECT COUNT(*) FROM dst.k WHERE v = 'b'").as_deref(), Some("2"));
        let damaged = whole_digest(&session, "dst", k)?;
        assert_eq!(damaged.rows, source_keyless.rows);
        assert_ne!(damaged, source_keyless, "a traded duplicate was not caught");

        // Text columns of mixed character sets and collations digest (each
        // cast to its bytes), alike for a copy, and a changed byte shows.
        let m = tables.iter().find(|t| t.name == "m").ok_or("no m")?;
        let source_mixed = whole_digest(&session, "src", m)?;
        copy(server, "dst");
        assert_eq!(whole_digest(&session, "dst", m)?, source_mixed);
        server.exec_in("dst", "UPDATE m SET a = 'cafe' WHERE id = 1");
        assert_eq!(scalar(server, "SELECT a FROM dst.m WHERE id = 1").as_deref(), Some("cafe"));
        assert_ne!(whole_digest(&session, "dst", m)?, source_mixed, "a changed latin1 byte was not caught");
        copy(server, "dst");
        server.exec_in("dst", "UPDATE m SET b = '#', c = 'y' WHERE id = 2");
        assert_eq!(scalar(server, "SELECT CONCAT(b, '#', c) FROM dst.m WHERE id = 2").as_deref(), Some("##y"));
        assert_ne!(whole_digest(&session, "dst", m)?, source_mixed, "a moved separator was not caught");

        // Values that may hold the separator, none nullable: ('', '#y')
        // and ('#', 'y') join to the same text, and must not digest alike.
        let s = tables.iter().find(|t| t.name == "s").ok_or("no s")?;
        let source_strict = whole_digest(&session, "src", s)?;
        copy(server, "dst");
        assert_eq!(whole_digest(&session, "dst", s)?, source_strict);
        server.exec_in("dst", "UPDATE s SET p = '#', q = 'y' WHERE id = 1");
        assert_eq!(scalar(server, "SELECT CONCAT_WS('#', p, q) FROM dst.s WHERE id = 1").as_deref(), Some("##y"));
        assert_ne!(whole_digest(&session, "dst", s)?, source_strict, "a moved separator was not caught");
        Ok(())
    }
}

/// The same rows digest the same on MariaDB and on MySQL, so an import
/// from one flavour to the other verifies by checksum.
#[test]
fn identical_rows_digest_the_same_on_both_flavours() -> TestResult {
    let (mariadb, mysql) = (Flavour::MariaDb.shared(), Flavour::MySql.shared());
    for server in [mariadb, mysql] {
        server.exec(&format!(
            "DROP DATABASE IF EXISTS across; CREATE DATABASE across; USE across; {SOURCE}"
        ));
    }
    let (from_mariadb, from_mysql) = (session(mariadb)?, session(mysql)?);
    for (source, target) in [(&from_mariadb, &from_mysql), (&from_mysql, &from_mariadb)] {
        for table in source.describe_database("across")?.tables {
            if table.key.is_some() {
                let on_source = range_digests(source, "across", &table)?;
                assert_eq!(range_digests(target, "across", &table)?, on_source, "{}", table.name);
            }
            assert_eq!(
                whole_digest(source, "across", &table)?,
                whole_digest(target, "across", &table)?,
                "{}",
                table.name
            );
        }
    }
    Ok(())
}
