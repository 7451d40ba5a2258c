//! `dbferry run` of SQL Server imports between two Babelfish servers.

use super::{assert_same, job, relations, seed, servers, setup, unique_db};

#[test]
fn run_copies_a_renamed_database_exactly() {
    let Some((a, b, _turn)) = servers("run_copies_a_renamed_database_exactly") else {
        return;
    };
    let (src, dst) = (unique_db("bf_run_src"), unique_db("bf_run_renamed"));
    seed(a, &src, 30_000);
    // Values over 4 MiB travel in pieces, through the host (batches that
    // carry pieces and no row). SQL Server tables are never split (one
    // snapshot per table), so the table is one chunk.
    a.tsql(&format!(
        "USE [{src}]; CREATE TABLE dbo.docs (id int NOT NULL PRIMARY KEY, body nvarchar(max) NULL, blob varbinary(max) NULL)"
    ));
    a.pg(&format!(
        "INSERT INTO \"{schema}\".docs SELECT g, repeat('Zoë 日本 😀 ', 300000 * (g % 2)), \
         decode(repeat(lpad(to_hex(g), 2, '0') || '00ff', 1500000 * (g % 3)), 'hex')::sys.bbf_varbinary \
         FROM generate_series(1, 4) g",
        schema = a.pg_schema(&src, "dbo")
    ));
    b.drop_database(&dst);
    b.drop_database(&src);
    let setup = setup(a, b);
    let outcome = setup.run(
        &job(&src, &dst)
            .option("verify", "\"checksum\"")
            .option("parallelism", "2")
            .option("chunk_bytes", "1048576"),
    );
    outcome.assert_success();
    assert_eq!(outcome.rows(), Some(30_007), "{}", outcome.describe());
    assert_eq!(assert_same(a, &src, b, &dst), 30_007);
    assert!(
        !b.database_exists(&src),
        "the source name was not created on the target"
    );
    let tables = outcome
        .result
        .as_ref()
        .and_then(|r| r["Tables"].as_array().cloned())
        .unwrap_or_default();
    assert!(
        tables.iter().all(|t| t["verified"] == "checksum"),
        "every table verified by checksum\n{}",
        outcome.describe()
    );
}

#[test]
fn an_existing_destination_is_refused_unless_empty() {
    let Some((a, b, _turn)) = servers("an_existing_destination_is_refused_unless_empty") else {
        return;
    };
    let (src, dst) = (unique_db("bf_exists_src"), unique_db("bf_exists_dst"));
    seed(a, &src, 100);
    b.drop_database(&dst);
    b.tsql(&format!("CREATE DATABASE [{dst}]"));
    b.tsql(&format!(
        "USE [{dst}]; CREATE TABLE dbo.mine (id int PRIMARY KEY); INSERT INTO dbo.mine VALUES (7)"
    ));
    let before = (relations(b, &dst), b.row_hash(&dst, "dbo", "mine"));
    let setup = setup(a, b);
    for existing in ["\"fail\"", "\"drop\""] {
        let refused = setup.run(&job(&src, &dst).option("existing_tables", existing));
        refused.assert_rejected("InvalidDBName.Exists");
        assert!(
            refused.message().is_some_and(|m| m.contains(&dst)),
            "the message names the destination\n{}",
            refused.describe()
        );
        assert_eq!(
            (relations(b, &dst), b.row_hash(&dst, "dbo", "mine")),
            before,
            "a refused import leaves the destination as it was"
        );
    }

    // An existing but empty destination is taken (CONTRACT rule 6: "absent or empty").
    let empty = unique_db("bf_exists_empty");
    b.drop_database(&empty);
    b.tsql(&format!("CREATE DATABASE [{empty}]"));
    let outcome = setup.run(&job(&src, &empty));
    outcome.assert_success();
    assert_eq!(assert_same(a, &src, b, &empty), 103);
}
