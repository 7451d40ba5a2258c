//! The Babelfish harness itself: two servers come up, T-SQL runs through
//! FreeTDS, and PostgreSQL's view of the same data hashes equal rows equally.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dbferry_testkit::Babelfish;

#[test]
fn two_servers_run_tsql_and_hash_rows_on_the_postgres_side() {
    let Some((a, b)) = Babelfish::for_test("testkit::two_servers_run_tsql_and_hash_rows_on_the_postgres_side") else {
        return;
    };
    assert_ne!(a.tds_port(), b.tds_port());
    assert_eq!(
        a.tsql_scalar("SELECT CAST(SERVERPROPERTY('babelfish') AS int)")
            .as_deref(),
        Some("1")
    );
    for server in [a, b] {
        server.drop_database("harness_t");
        server.tsql("CREATE DATABASE harness_t");
        server.tsql("USE harness_t; CREATE TABLE dbo.t (a int PRIMARY KEY, b nvarchar(10) NULL)");
        server.tsql("USE harness_t; INSERT INTO dbo.t VALUES (1, N'é'), (2, NULL)");
    }
    assert_eq!(a.row_hash("harness_t", "dbo", "t"), b.row_hash("harness_t", "dbo", "t"));
    assert!(a.row_hash("harness_t", "dbo", "t").starts_with("2:"));
    b.tsql("USE harness_t; UPDATE dbo.t SET b = N'e' WHERE a = 1");
    assert_ne!(a.row_hash("harness_t", "dbo", "t"), b.row_hash("harness_t", "dbo", "t"));
    let err = a.try_tsql("SELECT 1/0").unwrap_err();
    assert!(err.message().contains("division by zero"), "{err}");
    for server in [a, b] {
        server.drop_database("harness_t");
    }
}
