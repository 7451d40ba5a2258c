//! Fidelity: every case of issue 2 §4 "Fidelity" and "Tables", copied with
//! `dbferry run --json` from the shared source to the shared target, then
//! compared independently of dbferry: `CHECKSUM TABLE` and a server-computed
//! ordered row hash for every table, `SHOW CREATE` for every object (tables
//! unnormalised: AUTO_INCREMENT, partitions, comments, charsets must match),
//! and the final JSON object (`Status` Success, `Rows` = rows copied).
//!
//! Assumptions and findings:
//! - MySQL rule: every database exists, empty, on the target before the run;
//!   the tests create it with the source's default charset.
//! - Objects are created on the source as root@localhost; the target has
//!   that account too and dbferry's login has every privilege, so DEFINERs
//!   must be kept verbatim.
//! - MariaDB 10.11 stores a FLOAT/DOUBLE -0 as +0 (verified: `-0e0`,
//!   `CAST('-0' AS DOUBLE)` and LOAD DATA of `-0` all read back as 0 with
//!   `ATAN2(x,-1) = +pi`), so the -0 rows are copied but can only prove that
//!   what the source holds arrives.
//! - MariaDB identifiers cannot hold characters outside the BMP (emoji), so
//!   the unicode identifiers use BMP characters; emoji appear in data.
//! - A table is split into chunks only above dbferry's chunk size (32 MiB);
//!   the chunking test makes a table of about 60 MB and reads the
//!   `planned` event's `chunks`.

use dbferry_testkit::{ident, Flavour};

use crate::common::{assert_same, create_source, pair_of, planned_chunks, unique, Pair, Setup};

/// Copies `dbs` (already created on both sides by the caller) with
/// `options`, asserts success and identity, and that `Rows` equals the rows
/// compared. Unless `options` say otherwise, dbferry verifies by checksum,
/// so that its digest meets every type of the corpus.
fn copy_and_compare(pair: &Pair, dbs: &[&str], options: &[(&str, &str)]) -> dbferry_testkit::Outcome {
    let setup = Setup::new(pair.source, pair.target);
    let mut options = options.to_vec();
    if !options.iter().any(|(key, _)| *key == "verify") {
        options.push(("verify", "\"checksum\""));
    }
    let outcome = setup.copy(dbs, &options);
    outcome.assert_success();
    let mut rows = 0;
    for db in dbs {
        rows += assert_same(pair.source, pair.target, db);
    }
    assert_eq!(
        outcome.rows(),
        Some(rows),
        "JSON Rows must count every copied row\n{}",
        outcome.describe()
    );
    outcome
}

fn nines(n: usize) -> String {
    "9".repeat(n)
}

/// Integers at their limits, DECIMAL(65,30), FLOAT/DOUBLE extremes, BIT(64).
pub fn numeric_sql() -> String {
    let d65 = format!("{}.{}", nines(35), nines(30));
    let tiny = format!("0.{}1", "0".repeat(29));
    format!(
        r#"
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';
CREATE TABLE ints (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
  mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED, z INT(8) UNSIGNED ZEROFILL, bo BOOLEAN
);
INSERT INTO ints VALUES
 (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0, 0),
 (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615, 99999999, 1),
 (3, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, -1, 128, -1, 32768, -1, 8388608, -1, 2147483648, -1, 9223372036854775808, 12345, -1),
 (-2147483648, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 127),
 (2147483647, -127, 254, -32767, 65534, -8388607, 16777214, -2147483647, 4294967294, -9223372036854775807, 18446744073709551614, 1, -128);

CREATE TABLE decs (
  id INT PRIMARY KEY,
  d65 DECIMAL(65,30), d65u DECIMAL(65,30) UNSIGNED, d10 DECIMAL(10,0), d52 DECIMAL(5,2), d650 DECIMAL(65,0)
);
INSERT INTO decs VALUES
 (1, '{d65}', '{d65}', 9999999999, 999.99, '{n65}'),
 (2, '-{d65}', 0, -9999999999, -999.99, '-{n65}'),
 (3, '{tiny}', '{tiny}', 0, 0.01, 0),
 (4, NULL, NULL, NULL, NULL, NULL),
 (5, '-{tiny}', 1, 1, -0.01, 1),
 (6, '12345678901234567890.123456789012345678901234567890', '0.5', -1, 0, '-1');

CREATE TABLE floats (
  id INT PRIMARY KEY, f FLOAT, d DOUBLE, f72 FLOAT(7,2), d83 DOUBLE(8,3), fu FLOAT UNSIGNED
);
INSERT INTO floats VALUES
 (1, 3.40282e38, 1.7976931348623157e308, 99999.99, 99999.999, 3.40282e38),
 (2, -3.40282e38, -1.7976931348623157e308, -99999.99, -99999.999, 0),
 (3, 1.17549e-38, 2.2250738585072014e-308, 0.01, 0.001, 1.17549e-38),
 (4, 1.4013e-45, 4.9406564584124654e-324, -0.01, -0.001, 1.4013e-45),
 (5, -0e0, -0e0, -0.0, -0.0, 0),
 (6, 0.1, 0.1, 0.1, 0.1, 0.1),
 (7, 1e-10, 3.141592653589793, 3.14, 2.718, 16777216),
 (8, NULL, NULL, NULL, NULL, NULL),
 (9, 16777217, 9007199254740993, 12345.67, 12345.678, 123.456),
 (10, -1.5e-7, 1e300, -1.5, -1.5, 1e-7);

CREATE TABLE bits (id INT PRIMARY KEY, b1 BIT(1), b7 BIT(7), b8 BIT(8), b63 BIT(63), b64 BIT(64));
INSERT INTO bits VALUES
 (1, b'0', b'0', b'0', b'0', b'0'),
 (2, b'1', b'1111111', b'11111111', 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF),
 (3, NULL, NULL, NULL, NULL, NULL),
 (4, b'1', b'1010101', b'10100101', 1, b'1000000000000000000000000000000000000000000000000000000000000001'),
 (5, 0, 9, 0x0A, 0x5C, 0x5C4E0A0900);
"#,
        n65 = nines(65)
    )
}

/// DATE, DATETIME(6), TIMESTAMP(6), TIME (negative, >24h), YEAR, zero dates.
pub fn temporal_sql() -> String {
    r#"
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';
SET SESSION time_zone = '+00:00';
CREATE TABLE temporal (
  id INT PRIMARY KEY,
  d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, t TIME(6), y YEAR,
  dt0 DATETIME, t0 TIME, ts0 TIMESTAMP NULL DEFAULT NULL, t3 TIME(3), dt3 DATETIME(3)
);
INSERT INTO temporal VALUES
 (1, '1000-01-01', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '-838:59:59.999999', 1901,
     '1000-01-01 00:00:00', '-838:59:59', '1970-01-01 00:00:01', '-838:59:59.999', '1000-01-01 00:00:00.001'),
 (2, '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '838:59:59.999999', 2155,
     '9999-12-31 23:59:59', '838:59:59', '2038-01-19 03:14:07', '838:59:59.999', '9999-12-31 23:59:59.999'),
 (3, '0000-00-00', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00.000000', '00:00:00', 0,
     '0000-00-00 00:00:00', '00:00:00', '0000-00-00 00:00:00', '00:00:00', '0000-00-00 00:00:00'),
 (4, '2024-02-29', '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56.123456', '-00:00:00.000001', 2024,
     '2024-02-29 12:34:56', '100:00:00', '2024-03-31 02:30:00', '24:00:00.5', '2024-10-27 02:30:00.5'),
 (5, '2000-01-00', '2000-00-01 10:00:00.5', '2001-09-09 01:46:40.000001', '-24:00:01', 1970,
     '2000-00-00 00:00:00', '-1:02:03', '1999-12-31 23:59:59', '-0:00:00.001', '0000-01-01 00:00:00'),
 (6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE ts_defaults (
  id INT PRIMARY KEY,
  created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  dt DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00'
);
INSERT INTO ts_defaults VALUES (1, '2020-01-01 00:00:00.5', '2020-01-02 00:00:00.25', '0000-00-00 00:00:00'),
                               (2, '2021-06-30 23:59:59.999999', '2021-07-01 00:00:00', '2021-07-01 00:00:00');
"#
    .to_string()
}

fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    if digits.is_empty() {
        "''".into()
    } else {
        format!("X'{digits}'")
    }
}

/// Text in utf8mb4 (emoji), latin1, binary collations; binary strings with
/// arbitrary bytes; NULL vs '' vs 'NULL'.
pub fn strings_sql() -> String {
    let nasty = "a\tb\nc\rd\\e\\Nf\0g";
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let texts = [
        "😀🎉 naïve café ñ 中文 𝄞",
        nasty,
        "\\N",
        "NULL",
        "",
        "trailing spaces   ",
        "'quoted' \"double\" `tick`",
        "\u{0}",
        "line1\nline2\n",
        "\\",
    ];
    let mut sql = String::from(
        r#"
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';
CREATE TABLE texts (
  id INT PRIMARY KEY,
  c CHAR(40), vc VARCHAR(255), tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT,
  vbin VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
  asc_col VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin,
  u3 VARCHAR(255) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE latin (
  id INT PRIMARY KEY,
  l1 VARCHAR(100) CHARACTER SET latin1 COLLATE latin1_swedish_ci,
  l1bin VARCHAR(100) CHARACTER SET latin1 COLLATE latin1_bin,
  l1text TEXT CHARACTER SET latin1
) DEFAULT CHARSET=latin1;
CREATE TABLE bins (
  id INT PRIMARY KEY, b BINARY(64), vb VARBINARY(300), tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB
);
CREATE TABLE nulls (
  id INT PRIMARY KEY, v VARCHAR(10), t TEXT, b VARBINARY(10), c CHAR(4)
);
INSERT INTO nulls VALUES (1, NULL, NULL, NULL, NULL), (2, '', '', '', ''), (3, 'NULL', 'NULL', 'NULL', 'NULL'),
                         (4, '\\N', '\\N', '\\N', '\\N'), (5, 'null', 'Null', X'00', ' ');
"#,
    );
    for (n, text) in texts.iter().enumerate() {
        let t = hex(text.as_bytes());
        let ascii = if text.is_ascii() { t.clone() } else { "NULL".into() };
        let bmp = if text.chars().all(|c| (c as u32) < 0x10000) {
            t.clone()
        } else {
            "NULL".into()
        };
        sql.push_str(&format!(
            "INSERT INTO texts VALUES ({id}, CONVERT({t} USING utf8mb4), CONVERT({t} USING utf8mb4), CONVERT({t} USING utf8mb4), \
             CONVERT({t} USING utf8mb4), CONVERT({t} USING utf8mb4), CONVERT({t} USING utf8mb4), CONVERT({t} USING utf8mb4), \
             CONVERT({ascii} USING ascii), CONVERT({bmp} USING utf8mb3));\n",
            id = n + 1
        ));
        sql.push_str(&format!(
            "INSERT INTO bins VALUES ({id}, {t}, {t}, {t}, {t}, {t}, {t});\n",
            id = n + 1
        ));
    }
    sql.push_str("INSERT INTO texts (id) VALUES (100);\n");
    sql.push_str(&format!(
        "INSERT INTO bins VALUES (100, NULL, NULL, NULL, NULL, NULL, NULL), (101, X'0000000000000000', {all}, {all255}, {all}, {all}, {all}),\n\
         (102, X'FF', X'', X'', X'', X'', X'');\n",
        all = hex(&all_bytes),
        all255 = hex(&all_bytes[1..])
    ));
    sql.push_str(
        "INSERT INTO latin VALUES (1, 'Ærøskøbing ÿ £ ©', 'ÀÉÎÕÜ àéîõü', 'ß ñ ¿¡ « »'), (2, '', 'Z', NULL), (3, NULL, NULL, 'NULL'),\n\
         (4, CONCAT('tab', CHAR(9), 'nl', CHAR(10), 'bs', CHAR(92), CHAR(92), 'N'), 'a', 'b');\n",
    );
    sql
}

/// JSON, ENUM/SET, spatial, generated (stored and virtual) and invisible columns.
pub fn misc_sql() -> String {
    r#"
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';
CREATE TABLE docs (
  id INT PRIMARY KEY,
  j JSON,
  e ENUM('a','b','c d','', 'ü') DEFAULT 'b',
  s SET('x','y','z','w w'),
  gstored BIGINT AS (id * 2) STORED,
  gvirt VARCHAR(64) AS (CONCAT('v-', id, '-', IFNULL(e, 'null'))) VIRTUAL,
  hidden INT INVISIBLE DEFAULT 42,
  hidden_text VARCHAR(20) INVISIBLE NULL,
  KEY k_gvirt (gvirt)
);
INSERT INTO docs (id, j, e, s, hidden, hidden_text) VALUES
 (1, '{"a": [1, 2.5, "x\\ty", null, true], "b": {"c": "😀", "d": "\\\\N"}}', 'a', 'x,z', 7, 'h'),
 (2, '[]', 'c d', '', -1, ''),
 (3, NULL, NULL, NULL, NULL, NULL),
 (4, '"just a string"', '', 'x,y,z,w w', 0, 'NULL'),
 (5, '{"big": 12345678901234567890, "f": 1.5e300, "neg": -0.0}', 'ü', 'y', DEFAULT, DEFAULT);
INSERT INTO docs (id) VALUES (6);

CREATE TABLE shapes (
  id INT PRIMARY KEY,
  g GEOMETRY, p POINT, ls LINESTRING, poly POLYGON,
  mp MULTIPOINT, mls MULTILINESTRING, mpoly MULTIPOLYGON, gc GEOMETRYCOLLECTION,
  pnn POINT NOT NULL,
  SPATIAL KEY sp_pnn (pnn)
);
INSERT INTO shapes VALUES
 (1, ST_GeomFromText('POINT(1 2)'), POINT(1.5, -2.25), ST_GeomFromText('LINESTRING(0 0,1 1,2 0)'),
  ST_GeomFromText('POLYGON((0 0,4 0,4 4,0 4,0 0),(1 1,2 1,2 2,1 1))'),
  ST_GeomFromText('MULTIPOINT(1 1,2 2)'), ST_GeomFromText('MULTILINESTRING((0 0,1 1),(2 2,3 3))'),
  ST_GeomFromText('MULTIPOLYGON(((0 0,1 0,1 1,0 0)),((5 5,6 5,6 6,5 5)))'),
  ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1),LINESTRING(0 0,1 1))'), POINT(0, 0)),
 (2, ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'), POINT(-180, 90), NULL, NULL, NULL, NULL, NULL, NULL, POINT(1e300, -1e-300)),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ST_GeomFromText('GEOMETRYCOLLECTION EMPTY'), POINT(3.141592653589793, 2.718281828459045));

CREATE TABLE only_generated_key (
  a INT NOT NULL, b INT NOT NULL,
  s INT AS (a + b) STORED,
  v INT AS (a - b) VIRTUAL,
  UNIQUE KEY u_s (s)
);
INSERT INTO only_generated_key (a, b) VALUES (1, 2), (10, 20), (-5, 5);
"#
    .to_string()
}

/// Table shapes: empty, int PK, composite VARCHAR PK, only a unique key, no
/// key, partitions, AUTO_INCREMENT, comments, per-table charsets, engines
/// (Aria on MariaDB only), secondary/fulltext/descending/prefix indexes,
/// defaults, checks.
pub fn shapes_sql(flavour: Flavour) -> String {
    let aria = match flavour {
        Flavour::MariaDb => {
            "CREATE TABLE aria_t (id INT PRIMARY KEY, v TEXT) ENGINE=Aria;\nINSERT INTO aria_t VALUES (1, 'aria');"
        }
        Flavour::MySql => "",
    };
    format!(
        r#"
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';
CREATE TABLE empty_pk (id INT PRIMARY KEY, v VARCHAR(10));
CREATE TABLE empty_nokey (a INT, b TEXT);

CREATE TABLE int_pk (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  v VARCHAR(100) NOT NULL DEFAULT 'x' COMMENT 'column comment with ''quotes''',
  body TEXT,
  n INT DEFAULT NULL,
  u VARCHAR(36) DEFAULT (uuid()),
  created DATETIME DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  KEY idx_v (v),
  KEY idx_v_prefix_n (v(5), n DESC),
  FULLTEXT KEY ft_body (body),
  CONSTRAINT chk_n CHECK (n IS NULL OR n >= 0)
) ENGINE=InnoDB COMMENT='table comment with ''quotes'' and ünïcode' ROW_FORMAT=DYNAMIC;
INSERT INTO int_pk (v, body, n, u, created)
  SELECT CONCAT('v', seq), CONCAT('the quick brown fox ', seq), seq, CONCAT('u', seq), '2024-01-01 00:00:00'
  FROM {seq1000};
DELETE FROM int_pk WHERE id > 990;
ALTER TABLE int_pk AUTO_INCREMENT = 5000;

CREATE TABLE ai_gap (id INT AUTO_INCREMENT PRIMARY KEY, x INT);
INSERT INTO ai_gap (x) VALUES (1), (2), (3);
DELETE FROM ai_gap WHERE id = 3;

CREATE TABLE composite_varchar_pk (
  region VARCHAR(20) NOT NULL,
  code VARCHAR(40) NOT NULL,
  n INT NOT NULL,
  payload VARCHAR(200),
  PRIMARY KEY (region, code)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO composite_varchar_pk
  SELECT ELT(1 + seq % 5, 'eu', 'us', 'ÄÖÜ', '', 'zz top'), CONCAT('c-', LPAD(seq, 6, '0'), IF(seq % 7 = 0, ' ü', '')), seq, REPEAT('p', seq % 50)
  FROM {seq3000};

CREATE TABLE unique_only (
  id INT NOT NULL,
  email VARCHAR(100) NOT NULL,
  note VARCHAR(20),
  UNIQUE KEY u_email (email)
);
INSERT INTO unique_only SELECT seq, CONCAT('user', seq, '@example.com'), IF(seq % 3 = 0, NULL, 'n') FROM {seq500};

CREATE TABLE nullable_unique (x INT NULL, y VARCHAR(10), UNIQUE KEY u_x (x));
INSERT INTO nullable_unique VALUES (NULL, 'a'), (NULL, 'a'), (1, 'b'), (2, NULL);

CREATE TABLE no_key (a INT, b TEXT, c DOUBLE);
INSERT INTO no_key VALUES (1, 'dup', 0.5), (1, 'dup', 0.5), (1, 'dup', 0.5), (NULL, NULL, NULL), (2, '', -1), (2, 'Dup', 0.5);

CREATE TABLE part_range (
  id INT NOT NULL, y INT NOT NULL, v VARCHAR(10),
  PRIMARY KEY (id, y)
) PARTITION BY RANGE (y) (
  PARTITION p2019 VALUES LESS THAN (2020) COMMENT 'old',
  PARTITION p2020 VALUES LESS THAN (2021),
  PARTITION pmax VALUES LESS THAN MAXVALUE
);
INSERT INTO part_range SELECT seq, 2018 + seq % 5, CONCAT('r', seq) FROM {seq400};

CREATE TABLE part_hash (id INT PRIMARY KEY, v INT) PARTITION BY HASH (id) PARTITIONS 4;
INSERT INTO part_hash SELECT seq, seq * 3 FROM {seq300};

CREATE TABLE part_list_key (id INT NOT NULL, k CHAR(2) NOT NULL, PRIMARY KEY (id, k))
  PARTITION BY LIST COLUMNS (k) (PARTITION pa VALUES IN ('a', 'b'), PARTITION pz VALUES IN ('y', 'z'));
INSERT INTO part_list_key VALUES (1, 'a'), (2, 'b'), (3, 'z'), (4, 'y');

CREATE TABLE part_sub (id INT NOT NULL, d DATE NOT NULL, PRIMARY KEY (id, d))
  PARTITION BY RANGE (YEAR(d)) SUBPARTITION BY HASH (id) SUBPARTITIONS 2
  (PARTITION p0 VALUES LESS THAN (2000), PARTITION p1 VALUES LESS THAN MAXVALUE);
INSERT INTO part_sub VALUES (1, '1999-01-01'), (2, '2005-05-05'), (3, '1990-12-31');

CREATE TABLE latin_german (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_german2_ci;
INSERT INTO latin_german VALUES (1, 'Müller'), (2, 'Mueller'), (3, 'Straße');

CREATE TABLE ucs (id INT PRIMARY KEY, name VARCHAR(50)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin ROW_FORMAT=COMPACT;
INSERT INTO ucs VALUES (1, 'a'), (2, 'A'), (3, 'á');

CREATE TABLE myisam_t (id INT PRIMARY KEY, v VARCHAR(10), KEY (v)) ENGINE=MyISAM;
INSERT INTO myisam_t VALUES (1, 'm'), (2, NULL);

{aria}
"#,
        seq1000 = flavour.seq(1000),
        seq3000 = flavour.seq(3000),
        seq500 = flavour.seq(500),
        seq400 = flavour.seq(400),
        seq300 = flavour.seq(300),
    )
}

/// Views on views, a view on a function, procedures, functions, triggers,
/// events and foreign keys (including a self reference and a cycle-free
/// chain that must load with foreign_key_checks off).
pub fn objects_sql() -> String {
    r#"
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, KEY idx_name (name));
CREATE TABLE child (
  id INT PRIMARY KEY,
  parent_id INT,
  note VARCHAR(40),
  KEY idx_parent (parent_id),
  CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE ON UPDATE SET NULL
);
CREATE TABLE tree (
  id INT PRIMARY KEY, up INT NULL,
  CONSTRAINT fk_tree_up FOREIGN KEY (up) REFERENCES tree (id)
);
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100));
INSERT INTO parent VALUES (1, 'one'), (2, 'two'), (3, 'three');
INSERT INTO child VALUES (10, 1, 'a'), (11, 1, 'b'), (12, 2, NULL), (13, NULL, 'orphan');
INSERT INTO tree VALUES (1, NULL), (2, 1), (3, 2), (4, 1);
INSERT INTO audit (what) VALUES ('seed');

CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC COMMENT 'doubles' RETURN x * 2;
DELIMITER $$
CREATE PROCEDURE count_children(IN p INT, OUT n INT)
  READS SQL DATA
BEGIN
  -- a comment inside the body
  SELECT COUNT(*) INTO n FROM child WHERE parent_id = p;
END$$
CREATE FUNCTION label(p INT) RETURNS VARCHAR(60) CHARSET utf8mb4 READS SQL DATA
BEGIN
  DECLARE r VARCHAR(60);
  SELECT CONCAT(name, ':', twice(id)) INTO r FROM parent WHERE id = p;
  RETURN r;
END$$
DELIMITER ;

CREATE VIEW v_base AS SELECT id, name FROM parent WHERE id > 1;
CREATE VIEW v_on_view AS SELECT id FROM v_base WHERE id < 3;
CREATE VIEW v_fn AS SELECT id, twice(id) AS t, label(id) AS l FROM parent;
CREATE ALGORITHM=MERGE SQL SECURITY INVOKER VIEW a_first_by_name AS SELECT v.id, c.note FROM v_on_view v JOIN child c ON c.parent_id = v.id
  WITH CASCADED CHECK OPTION;
CREATE VIEW v_join AS SELECT p.name, COUNT(c.id) AS children FROM parent p LEFT JOIN child c ON c.parent_id = p.id GROUP BY p.name;

-- Triggers change data: created before the load, they would change the copy.
CREATE TRIGGER parent_bi BEFORE INSERT ON parent FOR EACH ROW SET NEW.name = CONCAT(NEW.name, '!');
CREATE TRIGGER child_ai AFTER INSERT ON child FOR EACH ROW INSERT INTO audit (what) VALUES (CONCAT('child ', NEW.id));
DELIMITER $$
CREATE TRIGGER child_bu BEFORE UPDATE ON child FOR EACH ROW
BEGIN
  IF NEW.note IS NULL THEN SET NEW.note = 'none'; END IF;
END$$
DELIMITER ;
CREATE TRIGGER child_ai_second AFTER INSERT ON child FOR EACH ROW FOLLOWS child_ai UPDATE audit SET what = what WHERE id = 0;
INSERT INTO parent VALUES (4, 'four');
INSERT INTO child VALUES (14, 4, 'after triggers');

CREATE EVENT ev_cleanup ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE COMMENT 'nightly'
  DO DELETE FROM audit WHERE id < 0;
CREATE EVENT ev_once ON SCHEDULE AT '2035-06-01 12:00:00' ON COMPLETION PRESERVE DISABLE DO INSERT INTO audit (what) VALUES ('once');
"#
    .to_string()
}

/// Identifiers that are reserved words, unicode, or hold backticks, dots
/// and spaces — tables, columns, keys, a view, a trigger and a routine.
pub fn identifiers_sql() -> String {
    r#"
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';
CREATE TABLE `select` (`from` INT PRIMARY KEY, `group` VARCHAR(10), `order` INT, `key` INT, KEY `index` (`order`));
INSERT INTO `select` VALUES (1, 'g', 3, 4), (2, NULL, NULL, NULL);
CREATE TABLE `名前 テーブル` (`ключ` INT PRIMARY KEY, `çolümn` VARCHAR(20), `空 白` INT);
INSERT INTO `名前 テーブル` VALUES (1, 'ü', 2), (3, '名', NULL);
CREATE TABLE `a.b` (`col.with.dots` INT PRIMARY KEY, `x` INT);
INSERT INTO `a.b` VALUES (1, 1), (2, 4);
CREATE TABLE `tick``tock` (`col``tick` VARCHAR(10) NOT NULL, `with space` INT NOT NULL, PRIMARY KEY (`col``tick`, `with space`));
INSERT INTO `tick``tock` VALUES ('a`b', 1), ('', 2), ('c', 3);
CREATE TABLE ` with  spaces` (`trailing` INT);
INSERT INTO ` with  spaces` VALUES (1), (1);
CREATE TABLE `123numeric` (`1col` INT PRIMARY KEY);
INSERT INTO `123numeric` VALUES (7);
CREATE VIEW `view.of select` AS SELECT `from`, `group` AS `the group` FROM `select`;
CREATE TRIGGER `trigger ``x``.y` BEFORE INSERT ON `a.b` FOR EACH ROW SET NEW.`x` = NEW.`x` + 0;
CREATE FUNCTION `fn.name with space`(`in` INT) RETURNS INT DETERMINISTIC RETURN `in` + 1;
CREATE PROCEDURE `call`() SELECT 1;
"#
    .to_string()
}

fn all_bytes_hex() -> String {
    (0..=255u8).map(|b| format!("{b:02X}")).collect()
}

/// A table of about 60 MB (200k rows), so dbferry splits it into chunks.
fn large_table_sql(flavour: Flavour, rows: u64) -> String {
    let seq = flavour.seq(rows);
    format!(
        "CREATE TABLE large (
           id INT UNSIGNED PRIMARY KEY,
           k VARCHAR(20) NOT NULL,
           pad VARCHAR(300) NOT NULL,
           n DOUBLE,
           KEY idx_k (k)
         );
         INSERT INTO large SELECT seq, CONCAT('k', seq % 1000), REPEAT(CHAR(65 + seq % 26), 250 + seq % 40), seq / 7
           FROM {seq};
         CREATE TABLE small (id INT PRIMARY KEY, v VARCHAR(10));
         INSERT INTO small VALUES (1, 'x'), (2, NULL);
         ANALYZE TABLE large;"
    )
}

dbferry_testkit::on_both_flavours! {
fn integers_decimals_floats_and_bits_at_their_limits(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_num");
    create_source((p.source, p.target), &db, "utf8mb4", &numeric_sql());
    copy_and_compare(p, &[&db], &[]);
    // Spot checks that the corpus holds what it claims (independent of dbferry).
    let bu = p
        .target
        .scalar(&format!("SELECT bu FROM {}.ints WHERE id = 2", ident(&db)));
    assert_eq!(bu.as_deref(), Some("18446744073709551615"));
    let d = p
        .target
        .scalar(&format!("SELECT d65 FROM {}.decs WHERE id = 1", ident(&db)));
    assert_eq!(d, Some(format!("{}.{}", nines(35), nines(30))));
    let b64 = p
        .target
        .scalar(&format!("SELECT HEX(b64) FROM {}.bits WHERE id = 2", ident(&db)));
    assert_eq!(b64.as_deref(), Some("FFFFFFFFFFFFFFFF"));
    let dbl = p.target.scalar(&format!(
        "SELECT d = 1.7976931348623157e308 FROM {}.floats WHERE id = 1",
        ident(&db)
    ));
    assert_eq!(dbl.as_deref(), Some("1"));
}

fn temporal_types_negative_and_long_times_and_zero_dates(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_time");
    create_source((p.source, p.target), &db, "utf8mb4", &temporal_sql());
    copy_and_compare(p, &[&db], &[]);
    let zero = p.target.query(&format!(
        "SELECT CAST(d AS CHAR), CAST(dt AS CHAR), CAST(t AS CHAR) FROM {}.temporal WHERE id IN (1, 3) ORDER BY id",
        ident(&db)
    ));
    // MySQL's TIME(6) stops at -838:59:59.000000 (MariaDB's at .999999),
    // so the source already holds the clamped value there.
    let lowest = match flavour {
        Flavour::MariaDb => "-838:59:59.999999",
        Flavour::MySql => "-838:59:59.000000",
    };
    assert_eq!(zero[0][2].as_deref(), Some(lowest));
    assert_eq!(zero[1][0].as_deref(), Some("0000-00-00"));
    assert_eq!(zero[1][1].as_deref(), Some("0000-00-00 00:00:00.000000"));
}

fn strings_in_every_charset_and_binary_bytes_keep_null_empty_and_null_text_apart(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_text");
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4 COLLATE utf8mb4_general_ci",
        &strings_sql(),
    );
    copy_and_compare(p, &[&db], &[]);
    let kinds = p.target.query(&format!(
        "SELECT id, ISNULL(v), HEX(v) FROM {}.nulls ORDER BY id",
        ident(&db)
    ));
    assert_eq!(kinds[0][1].as_deref(), Some("1"), "NULL stays NULL");
    assert_eq!(
        (kinds[1][1].as_deref(), kinds[1][2].as_deref()),
        (Some("0"), Some("")),
        "'' stays ''"
    );
    assert_eq!(kinds[2][2].as_deref(), Some("4E554C4C"), "'NULL' stays the string");
    assert_eq!(kinds[3][2].as_deref(), Some("5C4E"), "the two characters \\N stay");
    let all = p.target.scalar(&format!(
        "SELECT lb = X'{}' FROM {}.bins WHERE id = 101",
        all_bytes_hex(),
        ident(&db)
    ));
    assert_eq!(all.as_deref(), Some("1"), "all 256 byte values survive");
}

fn json_enum_set_spatial_generated_and_invisible_columns(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_misc");
    create_source((p.source, p.target), &db, "utf8mb4", &misc_sql());
    copy_and_compare(p, &[&db], &[]);
    let hidden = p.target.query(&format!(
        "SELECT id, hidden, hidden_text, gstored, gvirt FROM {}.docs WHERE id IN (1, 6) ORDER BY id",
        ident(&db)
    ));
    assert_eq!(hidden[0][1].as_deref(), Some("7"), "invisible columns are copied");
    assert_eq!(hidden[1][1].as_deref(), Some("42"));
    assert_eq!(hidden[0][3].as_deref(), Some("2"), "stored generated column recomputed");
    assert_eq!(hidden[0][4].as_deref(), Some("v-1-a"));
    let create = p.target.show_create(&db, dbferry_testkit::ObjectKind::Table, "docs");
    assert!(
        create.contains("INVISIBLE") && create.contains("STORED") && create.contains("VIRTUAL"),
        "{create}"
    );
}

fn table_shapes_keys_partitions_auto_increment_comments_and_charsets(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_shapes");
    create_source((p.source, p.target), &db, "utf8mb4", &shapes_sql(flavour));
    copy_and_compare(p, &[&db], &[("parallelism", "4")]);
    let create = p.target.show_create(&db, dbferry_testkit::ObjectKind::Table, "int_pk");
    assert!(
        create.contains("AUTO_INCREMENT=5000"),
        "AUTO_INCREMENT value kept: {create}"
    );
    assert!(create.contains("FULLTEXT KEY `ft_body`"), "{create}");
    let create = p
        .target
        .show_create(&db, dbferry_testkit::ObjectKind::Table, "part_range");
    assert!(create.contains("PARTITION BY RANGE"), "{create}");
    let dups = p
        .target
        .scalar(&format!("SELECT COUNT(*) FROM {}.no_key WHERE a = 1", ident(&db)));
    assert_eq!(
        dups.as_deref(),
        Some("3"),
        "identical rows of a keyless table are all kept"
    );
}

fn views_routines_triggers_events_and_foreign_keys(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_objects");
    create_source((p.source, p.target), &db, "utf8mb4", &objects_sql());
    copy_and_compare(p, &[&db], &[]);
    // Triggers did not fire during the load: names keep exactly one '!'.
    let names = p.target.scalar(&format!(
        "SELECT GROUP_CONCAT(name ORDER BY id) FROM {}.parent",
        ident(&db)
    ));
    assert_eq!(names.as_deref(), Some("one,two,three,four!"));
    // The objects work on the target.
    let via_views = p
        .target
        .scalar(&format!("SELECT COUNT(*) FROM {}.a_first_by_name", ident(&db)));
    assert_eq!(via_views.as_deref(), Some("1"));
    let label = p.target.scalar(&format!("SELECT {}.label(2)", ident(&db)));
    assert_eq!(label.as_deref(), Some("two:4"));
    let fk = p.target.scalar(&format!(
        "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = {}",
        dbferry_testkit::literal(&db)
    ));
    assert_eq!(fk.as_deref(), Some("2"), "both foreign keys exist on the target");
}

fn identifiers_that_are_reserved_unicode_or_hold_backticks_dots_and_spaces(flavour: Flavour) {
    let p = pair_of(flavour);
    // The database name itself is awkward too.
    let db = format!("{} odd`db.ü", unique("fid_ids"));
    create_source((p.source, p.target), &db, "utf8mb4", &identifiers_sql());
    copy_and_compare(p, &[&db], &[]);
}

fn a_64_mib_blob_row_passes(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_blob");
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4",
        "CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT);
         INSERT INTO big VALUES (1, REPEAT(X'005C4E0A', 16777216), 'small'), (2, X'00', NULL), (3, NULL, REPEAT('é', 1000));",
    );
    let len = p
        .source
        .scalar(&format!("SELECT LENGTH(b) FROM {}.big WHERE id = 1", ident(&db)));
    assert_eq!(len.as_deref(), Some("67108864"));
    copy_and_compare(p, &[&db], &[]);
}

fn a_large_table_is_split_into_chunks_and_verified_by_checksum(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_large");
    create_source((p.source, p.target), &db, "utf8mb4", &large_table_sql(flavour, 200_000));
    let outcome = copy_and_compare(p, &[&db], &[("parallelism", "4"), ("verify", "\"checksum\"")]);
    assert_eq!(outcome.rows(), Some(200_002));
    let chunks = planned_chunks(&outcome);
    assert!(
        chunks.is_some_and(|c| c > 2),
        "the 60 MB table must be split into several chunks (planned event: {chunks:?})\n{}",
        outcome.describe()
    );
    if let Some(tables) = outcome
        .result
        .as_ref()
        .and_then(|r| r.get("Tables"))
        .and_then(|t| t.as_array())
    {
        assert!(
            tables
                .iter()
                .all(|t| t.get("verified").and_then(|v| v.as_str()) == Some("checksum")),
            "every table verified by checksum: {tables:?}"
        );
    }
}

fn parallelism_1_and_4_give_the_same_exact_copy(flavour: Flavour) {
    let p = pair_of(flavour);
    let one = unique("fid_par1");
    let four = unique("fid_par4");
    for db in [&one, &four] {
        create_source(
            (p.source, p.target),
            db,
            "utf8mb4",
            &format!("{}{}", large_table_sql(flavour, 20_000), shapes_sql(flavour)),
        );
    }
    copy_and_compare(p, &[&one], &[("parallelism", "1"), ("verify", "\"checksum\"")]);
    copy_and_compare(p, &[&four], &[("parallelism", "4"), ("verify", "\"count\"")]);
    assert_eq!(
        p.target.row_hash(&one, "large"),
        p.target.row_hash(&four, "large"),
        "both copies hold the same rows"
    );
}

fn several_databases_in_one_import(flavour: Flavour) {
    let p = pair_of(flavour);
    let a = unique("fid_multi_a");
    let b = unique("fid_multi_b");
    create_source(
        (p.source, p.target),
        &a,
        "latin1",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(5)); INSERT INTO t VALUES (1,'ä');",
    );
    create_source(
        (p.source, p.target),
        &b,
        "utf8mb4",
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1),(2);",
    );
    copy_and_compare(p, &[&a, &b], &[]);
}

/// The corpus SQL itself must run on the flavour (checked without dbferry,
/// so a mistake in the corpus is not blamed on the copy).
fn the_corpus_is_valid_sql(flavour: Flavour) {
    let server = pair_of(flavour).source;
    for (n, sql) in [
        numeric_sql(),
        temporal_sql(),
        strings_sql(),
        misc_sql(),
        shapes_sql(flavour),
        objects_sql(),
        identifiers_sql(),
    ]
    .iter()
    .enumerate()
    {
        let db = unique(&format!("corpus_{n}"));
        server.exec(&format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"));
        server.exec_in(&db, sql);
        assert!(!server.objects(&db).is_empty());
    }
}

/// The comparison itself is not vacuous: after an exact copy, one changed
/// value, one changed AUTO_INCREMENT, one changed comment or one missing
/// trigger on the target each make it fail.
fn the_comparison_detects_every_kind_of_difference(flavour: Flavour) {
    let p = pair_of(flavour);
    let db = unique("fid_selftest");
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4",
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10)) COMMENT 'c';
         INSERT INTO t (v) VALUES ('a'), (NULL), ('');
         CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.v = NEW.v;",
    );
    copy_and_compare(p, &[&db], &[]);
    let q = ident(&db);
    for (change, undo) in [
        (
            format!("UPDATE {q}.t SET v = 'NULL' WHERE id = 2"),
            format!("UPDATE {q}.t SET v = NULL WHERE id = 2"),
        ),
        (
            format!("ALTER TABLE {q}.t AUTO_INCREMENT = 100"),
            format!("ALTER TABLE {q}.t AUTO_INCREMENT = 4"),
        ),
        (
            format!("ALTER TABLE {q}.t COMMENT 'd'"),
            format!("ALTER TABLE {q}.t COMMENT 'c'"),
        ),
        (
            format!("DROP TRIGGER {q}.t_bi"),
            format!("USE {q}; CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.v = NEW.v"),
        ),
    ] {
        p.target.exec(&change);
        let caught = std::panic::catch_unwind(|| assert_same(p.source, p.target, &db));
        assert!(caught.is_err(), "the comparison must notice: {change}");
        p.target.exec(&undo);
        assert_same(p.source, p.target, &db);
    }
}
}

/// MariaDB sequences (a MariaDB-only object): plain, descending and
/// cycled, cached, exhausted, and a table whose defaults call NEXTVAL.
pub fn sequences_sql() -> String {
    r#"
CREATE SEQUENCE s_plain START WITH 100 INCREMENT BY 5 NOCACHE;
CREATE SEQUENCE s_cycle START WITH 10 MINVALUE -10 MAXVALUE 10 INCREMENT BY -3 NOCACHE CYCLE;
CREATE SEQUENCE s_cached START WITH 1 CACHE 10;
CREATE SEQUENCE s_done MAXVALUE 2 NOCACHE ENGINE=Aria;
CREATE SEQUENCE `seq with space` COMMENT 'odd name';
CREATE TABLE uses_seq (
  id BIGINT NOT NULL DEFAULT NEXTVAL(s_plain) PRIMARY KEY,
  c BIGINT DEFAULT (NEXTVAL(s_cycle) * 2),
  v VARCHAR(10)
);
INSERT INTO uses_seq (v) VALUES ('a'), ('b'), ('c');
DO NEXTVAL(s_cycle), NEXTVAL(s_cycle), NEXTVAL(s_cycle), NEXTVAL(s_cycle);
DO NEXTVAL(s_cached);
DO NEXTVAL(s_done), NEXTVAL(s_done);
"#
    .to_string()
}

/// Sequences arrive with their definition and where they stand: SHOW CREATE
/// SEQUENCE and each sequence's row are identical, NEXTVAL then gives the
/// same number on both sides, a table whose default calls NEXTVAL takes
/// rows on the target, and the result lists the sequences it created.
#[test]
fn sequences_arrive_where_the_source_stands_and_their_defaults_work_on_mariadb() {
    let p = pair_of(Flavour::MariaDb);
    let db = unique("fid_seq");
    create_source((p.source, p.target), &db, "utf8mb4", &sequences_sql());
    let q = ident(&db);
    // Where the cached sequence stands on disk, before NEXTVAL moves it.
    let cached_next = p
        .source
        .scalar(&format!("SELECT next_not_cached_value FROM {q}.s_cached"));
    let outcome = copy_and_compare(p, &[&db], &[]);
    let created: Vec<String> = outcome
        .result
        .as_ref()
        .and_then(|r| r.get("Created"))
        .and_then(|c| c.as_array())
        .map(|c| c.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    for name in ["s_plain", "s_cycle", "s_cached", "s_done", "seq with space"] {
        assert!(
            created.contains(&format!("{db}.sequence:{name}")),
            "the result lists sequence {name}: {created:?}"
        );
    }
    // The uncached sequences go on from the same value on both sides.
    for seq in ["s_plain", "s_cycle"] {
        let next = |s: &dbferry_testkit::Server| s.scalar(&format!("SELECT NEXTVAL({q}.{seq})"));
        let (a, b) = (next(p.source), next(p.target));
        assert!(a.is_some(), "{seq} gives a value");
        assert_eq!(a, b, "NEXTVAL({seq}) is the same on both sides");
    }
    // A cached sequence goes on past everything the source may have handed
    // out: where the source itself goes on after a restart.
    let target_next = p.target.scalar(&format!("SELECT NEXTVAL({q}.s_cached)"));
    assert_eq!(target_next, cached_next, "s_cached continues at next_not_cached_value");
    // An exhausted sequence stays exhausted.
    let done = p.target.try_query(&format!("SELECT NEXTVAL({q}.s_done)"));
    assert!(done.is_err(), "s_done has run out on the target too: {done:?}");
    // The defaults work on the target, with the same numbers as the source.
    for server in [p.source, p.target] {
        server.exec(&format!("INSERT INTO {q}.uses_seq (v) VALUES ('new')"));
    }
    let row = |s: &dbferry_testkit::Server| s.query(&format!("SELECT id, c FROM {q}.uses_seq WHERE v = 'new'"));
    assert_eq!(row(p.source), row(p.target), "the NEXTVAL defaults give the same row");
}

/// Objects a MySQL 8.4/9.x database can hold that MariaDB lacks or spells
/// differently: utf8mb4_0900 collations (and ENUM/SET in a table whose
/// collation is not the charset's default), functional, multi-valued and
/// invisible indexes, enforced and unenforced CHECKs, SRID geometry,
/// expression defaults, generated columns, a generated invisible primary
/// key, events.
pub fn mysql_only_sql() -> String {
    r#"
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION';
CREATE TABLE c0900 (
  id INT PRIMARY KEY,
  ai VARCHAR(20) COLLATE utf8mb4_0900_ai_ci,
  as_cs VARCHAR(20) COLLATE utf8mb4_0900_as_cs,
  bin VARCHAR(20) COLLATE utf8mb4_0900_bin,
  ja VARCHAR(20) COLLATE utf8mb4_ja_0900_as_cs,
  e ENUM('x','y','ü') NOT NULL DEFAULT 'y',
  s SET('p','q') DEFAULT NULL,
  KEY k_ai (ai)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO c0900 VALUES (1, 'Straße', 'ABC', 'abc', 'カタカナ', 'ü', 'p,q'), (2, 'strasse', 'abc', 'ABC', 'かたかな', 'x', NULL);

CREATE TABLE functional (
  id INT PRIMARY KEY,
  first VARCHAR(30), last VARCHAR(30),
  doc JSON,
  shown INT,
  gone INT INVISIBLE DEFAULT 7,
  full_name VARCHAR(61) AS (CONCAT(first, ' ', last)) VIRTUAL,
  n_tags INT AS (JSON_LENGTH(doc->'$.tags')) STORED,
  created DATETIME(3) DEFAULT (NOW(3)),
  token BINARY(16) DEFAULT (UUID_TO_BIN(UUID())),
  price DECIMAL(10,2) DEFAULT (ROUND(RAND() * 100, 2)),
  KEY k_lower ((LOWER(last))),
  KEY k_expr ((shown + 1) DESC, first),
  KEY k_tags ((CAST(doc->'$.tags' AS CHAR(20) ARRAY))),
  KEY k_invisible (shown) INVISIBLE,
  CONSTRAINT chk_shown CHECK (shown >= 0),
  CONSTRAINT chk_lax CHECK (shown < 1000) NOT ENFORCED
);
INSERT INTO functional (id, first, last, doc, shown, gone, created, token, price) VALUES
  (1, 'Ada', 'Lovelace', '{"tags": ["math", "code"]}', 1, 9, '2024-01-01 00:00:00.125', UUID_TO_BIN('6ccd780c-baba-1026-9564-5b8c656024db'), 12.5),
  (2, 'Alan', 'Turing', '{"tags": []}', 2000, 0, '2024-01-02 00:00:00', NULL, NULL);

CREATE TABLE places (
  id INT PRIMARY KEY,
  p POINT NOT NULL SRID 4326,
  g GEOMETRY SRID 0,
  SPATIAL KEY sp_p (p)
);
INSERT INTO places VALUES (1, ST_GeomFromText('POINT(48.85 2.35)', 4326), ST_GeomFromText('LINESTRING(0 0,1 1)')),
                          (2, ST_GeomFromText('POINT(-33.87 151.21)', 4326), NULL);

SET SESSION sql_generate_invisible_primary_key = ON;
CREATE TABLE gipk (v VARCHAR(10));
SET SESSION sql_generate_invisible_primary_key = OFF;
INSERT INTO gipk (v) VALUES ('a'), ('b');

CREATE TABLE tagged (id INT PRIMARY KEY, body TEXT, FULLTEXT KEY ft_ngram (body) WITH PARSER ngram);
INSERT INTO tagged VALUES (1, '数据库迁移'), (2, 'database migration');

CREATE EVENT ev_mysql ON SCHEDULE EVERY 1 HOUR STARTS '2031-01-01 00:00:00' DISABLE ON SLAVE
  COMMENT 'disabled on replica' DO DELETE FROM gipk WHERE v IS NULL;
"#
    .to_string()
}

/// MySQL-only objects come out with SHOW CREATE identical (table by table,
/// event by event) and the same rows, invisible columns and the generated
/// invisible primary key included.
#[test]
fn mysql_only_objects_keep_show_create_identical_on_mysql() {
    let p = pair_of(Flavour::MySql);
    let db = unique("fid_mysql_only");
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4 COLLATE utf8mb4_0900_ai_ci",
        &mysql_only_sql(),
    );
    copy_and_compare(p, &[&db], &[("verify", "\"checksum\"")]);
    let q = ident(&db);
    let create = p.target.show_create(&db, dbferry_testkit::ObjectKind::Table, "gipk");
    assert!(
        create.contains("my_row_id"),
        "the generated invisible key arrives: {create}"
    );
    let hidden = p
        .target
        .scalar(&format!("SELECT GROUP_CONCAT(gone ORDER BY id) FROM {q}.functional"));
    assert_eq!(hidden.as_deref(), Some("9,0"), "invisible column values are copied");
    let srid = p
        .target
        .scalar(&format!("SELECT ST_SRID(p) FROM {q}.places WHERE id = 1"));
    assert_eq!(srid.as_deref(), Some("4326"));
    let uses_tags = p.target.scalar(&format!(
        "SELECT COUNT(*) FROM {q}.functional WHERE 'code' MEMBER OF (doc->'$.tags')"
    ));
    assert_eq!(uses_tags.as_deref(), Some("1"));
}
