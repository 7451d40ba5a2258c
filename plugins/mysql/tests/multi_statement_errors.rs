//! Where mysql_async reports a failed statement of a multi-statement query,
//! against real MariaDB and MySQL servers (started by `dbferry-testkit`). Describe,
//! the DDL fan-out and group writes all name the failing statement on the
//! rule checked here: a later statement's error is kept until its result is
//! the current one, and comes out of the call that reads that result.

use dbferry_mysql::describe::create_statements;
use dbferry_testkit::{Server, ADMIN_USER};
use mysql_async::prelude::Queryable;
use mysql_async::Row;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn connect(server: &Server) -> mysql_async::Result<mysql_async::Conn> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(server.port())
        .user(Some(ADMIN_USER))
        .pass(Some(server.admin_password()));
    mysql_async::Conn::new(opts).await
}

dbferry_testkit::on_both_flavours! {
fn a_failed_statement_is_reported_when_its_own_result_is_read(flavour: Flavour) -> TestResult {
    let server = flavour.shared();
    server.exec("CREATE DATABASE mse; CREATE TABLE mse.t (a INT)");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        for statement in [
            "INSERT INTO mse.nope VALUES (1)",
            "SELECT * FROM mse.nope",
            "SHOW CREATE TABLE mse.nope",
        ] {
            let mut conn = connect(server).await?;
            let sql = format!("SELECT 0; DO 1; {statement}; DO 3");
            let mut result = conn.query_iter(sql.as_str()).await?;
            let reads: Vec<bool> = [
                result.collect::<Row>().await.is_ok(),
                result.collect::<Row>().await.is_ok(),
                result.collect::<Row>().await.is_ok(),
            ]
            .to_vec();
            assert_eq!(reads, [true, true, false], "{sql}");
        }

        // Describe names the table whose SHOW CREATE TABLE failed.
        let mut conn = connect(server).await?;
        let error = create_statements(&mut conn, "mse", &["t", "t", "gone", "t"])
            .await
            .err()
            .ok_or("a missing table must fail")?;
        assert!(error.to_string().contains("`mse`.`gone`"), "{error}");
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
}
