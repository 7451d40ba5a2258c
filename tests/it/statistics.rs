//! Sizes that do not trust cached statistics, on both flavours.
//!
//! A table bulk-loaded after its statistics were taken reads as a few KiB
//! in `information_schema.TABLES`: MySQL caches those figures for
//! `information_schema_stats_expiry` seconds (a day by default), and on
//! both flavours InnoDB recalculates them in the background, when it gets
//! to it. Each test first shows that staleness with the plain client (the
//! precondition that makes it able to fail), then checks that dbferry plans
//! and counts the table at its true size.

use dbferry_testkit::{literal, Flavour, Instance, Job, Server};

use crate::common::{assert_same, create_source, pair_of, planned_chunks, unique, Setup, DST, SRC};

/// Rows of the freshly loaded table: some 25 MB in InnoDB.
const ROWS: u64 = 200_000;

/// `DATA_LENGTH + INDEX_LENGTH` of `db.t` as a session sees it by default:
/// from the statistics cache.
fn cached_size(server: &Server, db: &str) -> u64 {
    server
        .scalar(&format!(
            "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = 't'",
            literal(db)
        ))
        .and_then(|n| n.parse().ok())
        .expect("a table size")
}

/// Bytes of `db.t`'s tablespace file as the file system sees it: the true
/// size, independent of dbferry and of InnoDB's statistics, which a
/// background thread recalculates only when it gets to it (under CI load,
/// not within 90 s).
fn file_size(server: &Server, db: &str) -> u64 {
    let path = server.datadir().join(db).join("t.ibd");
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .len()
}

/// Creates `db` with a table `t` whose statistics are taken while it is
/// empty, then bulk-loads it; returns its true size (its file's), after
/// asserting the statistics still say tiny.
fn freshly_loaded(flavour: Flavour, source: &Server, target: &Server, db: &str) -> u64 {
    create_source(
        (source, target),
        db,
        "utf8mb4",
        "CREATE TABLE t (id BIGINT PRIMARY KEY, a VARCHAR(64) NOT NULL, b DOUBLE, KEY ka (a));",
    );
    let cached_empty = cached_size(source, db);
    source.exec_in(
        db,
        &format!(
            "INSERT INTO t SELECT seq, CONCAT(LEFT(SHA2(seq, 256), 40), 'x'), seq / 7 FROM {};",
            flavour.seq(ROWS)
        ),
    );
    let fresh = file_size(source, db);
    assert!(
        fresh > 8 << 20,
        "the tablespace of {db}.t should hold the loaded rows: {fresh} bytes"
    );
    // MySQL's cache still says what it said of the empty table; MariaDB's
    // background recalculation may have moved a page or two. Either way the
    // figure is far below the truth.
    let cached = cached_size(source, db);
    assert!(
        cached < 1 << 20 && (flavour == Flavour::MariaDb || cached == cached_empty),
        "precondition: the statistics of {db}.t should still say it is about empty ({cached_empty} bytes \
         before the load), they say {cached} bytes"
    );
    fresh
}

dbferry_testkit::on_both_flavours! {
    fn freshly_loaded_tables_are_split_into_chunks(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("fresh_split");
        freshly_loaded(flavour, p.source, p.target, &db);
        let setup = Setup::new(p.source, p.target);
        let out = setup.copy(&[&db], &[("chunk_bytes", "1048576"), ("parallelism", "4")]);
        out.assert_success();
        let chunks = planned_chunks(&out).expect("a planned event");
        assert!(
            chunks >= 4,
            "a 25 MB table with 1 MiB chunks must be split, it was planned as {chunks} chunk(s)\n{}",
            out.describe()
        );
        assert_eq!(assert_same(p.source, p.target, &db), ROWS);
    }

    fn storage_precheck_counts_freshly_loaded_tables_at_their_true_size(flavour: Flavour) {
        let p = pair_of(flavour);
        let db = unique("fresh_storage");
        let true_size = freshly_loaded(flavour, p.source, p.target, &db);
        // Room for everything the target holds now plus 4 MiB: enough for the
        // cached size, far too little for the true one.
        let uncached = match flavour {
            Flavour::MySql => "SET SESSION information_schema_stats_expiry = 0; ",
            Flavour::MariaDb => "",
        };
        let used: u64 = p
            .target
            .scalar(&format!(
                "{uncached}SELECT SUM(IFNULL(DATA_LENGTH, 0) + IFNULL(INDEX_LENGTH, 0)) FROM information_schema.TABLES"
            ))
            .and_then(|n| n.parse().ok())
            .expect("the target's used bytes");
        let gb = (used + (4 << 20)) as f64 / (1u64 << 30) as f64;
        let setup = Setup::with(
            Instance::mysql(SRC, p.source),
            Instance::mysql(DST, p.target).storage_gb(gb),
        );
        let before = p.target.objects(&db);
        let out = setup.run(&Job::mysql(DST, SRC, &[&db]));
        out.assert_rejected("InsufficientStorage");
        let message = out.message().unwrap_or_default();
        let incoming: u64 = message
            .split("the source databases ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the refusal names the source size: {message}"));
        assert!(
            incoming * 10 >= true_size * 9,
            "the source database counts {incoming} bytes, its table holds {true_size}: {message}"
        );
        assert_eq!(p.target.objects(&db), before, "nothing changed on the target");
    }
}
