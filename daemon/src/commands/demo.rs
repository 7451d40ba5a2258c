//! `dbferry demo`: the quickstart behind `make demo`.
//!
//! Starts two throwaway MariaDB servers, fills a sample `shop` database of
//! varied types on the first, migrates it to the second with progress shown,
//! checks the copy with the server's own `CHECKSUM TABLE`, and cleans up.

use std::path::PathBuf;

use dbferry_testkit::{ConfigBuilder, Files, Instance, Job, MariaDb};

use super::run;

const DATABASE: &str = "shop";

fn sample_schema(rows: u64) -> String {
    let customers = (rows / 3).max(1);
    let orders = rows / 2;
    let items = rows - customers - orders;
    format!(
        r#"
CREATE TABLE customers (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) CHARACTER SET utf8mb4 NOT NULL,
  email VARCHAR(190) NOT NULL,
  country CHAR(2) NOT NULL,
  balance DECIMAL(12,2) NOT NULL DEFAULT 0,
  created DATETIME(6) NOT NULL,
  note TEXT NULL,
  UNIQUE KEY uk_email (email),
  KEY idx_country (country)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='sample customers';
INSERT INTO customers (name, email, country, balance, created, note)
  SELECT CONCAT('Customer ', seq, IF(seq % 7 = 0, ' 🚢', '')), CONCAT('c', seq, '@example.com'),
         ELT(1 + seq % 5, 'DE', 'FR', 'JP', 'US', 'BR'), (seq * 37 % 100000) / 100,
         TIMESTAMP('2020-01-01') + INTERVAL seq MINUTE + INTERVAL (seq % 1000000) MICROSECOND,
         IF(seq % 3 = 0, NULL, REPEAT('note ', seq % 20))
  FROM seq_1_to_{customers};
CREATE TABLE orders (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id INT UNSIGNED NOT NULL,
  status ENUM('new','paid','shipped','returned') NOT NULL,
  total DECIMAL(10,2) NOT NULL,
  placed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  payload JSON NULL,
  KEY idx_customer (customer_id),
  CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB;
INSERT INTO orders SELECT seq * 10, 1 + seq % {customers}, ELT(1 + seq % 4, 'new','paid','shipped','returned'),
  (seq % 50000) / 100, TIMESTAMP('2023-06-01') + INTERVAL seq SECOND,
  IF(seq % 5 = 0, NULL, JSON_OBJECT('sku', CONCAT('SKU-', seq % 997), 'gift', seq % 2 = 0))
  FROM seq_1_to_{orders};
CREATE TABLE order_lines (
  order_ref VARCHAR(20) NOT NULL,
  line SMALLINT NOT NULL,
  quantity INT NOT NULL,
  price DOUBLE NOT NULL,
  picture BLOB NULL,
  PRIMARY KEY (order_ref, line)
) ENGINE=InnoDB;
INSERT INTO order_lines SELECT CONCAT('ORD-', seq DIV 3), seq % 3, seq % 9 + 1, seq / 7.0,
  IF(seq % 11 = 0, UNHEX(MD5(seq)), NULL) FROM seq_1_to_{items};
CREATE TABLE audit_log (happened DATETIME NOT NULL, message VARCHAR(255) NOT NULL) ENGINE=InnoDB;
INSERT INTO audit_log SELECT TIMESTAMP('2024-01-01') + INTERVAL seq HOUR, CONCAT('event ', seq, '\t\\N') FROM seq_1_to_1000;
CREATE VIEW big_spenders AS SELECT customer_id, SUM(total) AS spent FROM orders GROUP BY customer_id HAVING spent > 1000;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit_log VALUES (NOW(), CONCAT('order ', NEW.id));
CREATE PROCEDURE customer_count(OUT n INT) SELECT COUNT(*) INTO n FROM customers;
"#
    )
}

fn demo_inner(rows: u64) -> Result<i32, String> {
    let bin = std::env::current_exe().map_err(|e| format!("cannot find the dbferry binary: {e}"))?;
    let plugin_dir = bin.parent().map(PathBuf::from).unwrap_or_default();
    println!("Starting two throwaway MariaDB servers...");
    let source = MariaDb::try_start(&[]).map_err(|e| e.to_string())?;
    let target = MariaDb::try_start(&[]).map_err(|e| e.to_string())?;
    println!(
        "  source: 127.0.0.1:{}  target: 127.0.0.1:{}",
        source.port(),
        target.port()
    );

    println!(
        "Creating the sample database `{DATABASE}` ({rows} rows across customers, orders, order_lines, audit_log)..."
    );
    source
        .try_exec(&format!("CREATE DATABASE {DATABASE}"))
        .map_err(|e| e.to_string())?;
    source
        .try_exec(&format!("USE {DATABASE};\n{}", sample_schema(rows)))
        .map_err(|e| e.to_string())?;
    // The MySQL rule: the database must exist on both instances.
    target
        .try_exec(&format!("CREATE DATABASE {DATABASE}"))
        .map_err(|e| e.to_string())?;

    let files = Files::new();
    let config = ConfigBuilder::new()
        .plugin_dir(&plugin_dir)
        // The throwaway servers listen on loopback without TLS: say so,
        // rather than have every session warn that `preferred` found none.
        .instance(Instance::mysql("rm-demo-source", &source).extra("tls", "\"off\""))
        .instance(Instance::mysql("rm-demo-target", &target).extra("tls", "\"off\""))
        .try_render(&files)
        .and_then(|text| files.try_write("dbferry.toml", &text))
        .map_err(|e| e.to_string())?;
    let job_text = Job::mysql("rm-demo-target", "rm-demo-source", &[DATABASE])
        .option("parallelism", "4")
        .option("verify", "\"checksum\"")
        .render();
    let job = files.try_write("job.toml", &job_text).map_err(|e| e.to_string())?;
    println!("\nThe job file ({}):\n{job_text}", job.display());
    println!("Running: dbferry run --config {} {}\n", config.display(), job.display());
    let code = run::run(&config, &job, false);

    println!("\nIndependent check with the servers' own CHECKSUM TABLE:");
    let mut all_equal = true;
    for table in ["customers", "orders", "order_lines", "audit_log"] {
        let query = format!("CHECKSUM TABLE {DATABASE}.{table}");
        let sum = |db: &MariaDb| {
            db.try_query(&query)
                .ok()
                .and_then(|r| r.first().and_then(|row| row.get(1).cloned().flatten()))
        };
        let (a, b) = (sum(&source), sum(&target));
        let same = a.is_some() && a == b;
        all_equal &= same;
        println!(
            "  {table:<12} source {:<12} target {:<12} {}",
            a.unwrap_or_default(),
            b.unwrap_or_default(),
            if same { "equal" } else { "DIFFERENT" }
        );
    }
    println!("\nCleaning up the throwaway servers.");
    Ok(if code == 0 && !all_equal { 3 } else { code })
}

/// Runs the demo; returns the exit code.
pub fn demo(rows: u64) -> i32 {
    match demo_inner(rows) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("demo failed: {message}");
            eprintln!("(the demo needs Debian's mariadb-server; `make demo` installs it)");
            1
        }
    }
}
