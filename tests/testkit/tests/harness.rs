//! The harness's own tests: real servers, in parallel.

use dbferry_testkit::{ConfigBuilder, Files, Flavour, Instance, Job, MariaDb, ObjectKind, Server};

#[test]
fn servers_start_in_parallel_and_are_independent() {
    let servers: Vec<Server> = std::thread::scope(|s| {
        let handles: Vec<_> = [Flavour::MariaDb, Flavour::MySql, Flavour::MySql]
            .into_iter()
            .map(|flavour| s.spawn(move || flavour.start()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("server thread")).collect()
    });
    let mut ports: Vec<u16> = servers.iter().map(Server::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "distinct ports");
    servers[1].exec("CREATE DATABASE only_here");
    assert!(servers[1].database_exists("only_here"));
    assert!(!servers[2].database_exists("only_here"));
    assert!(!servers[0].database_exists("only_here"));
    // Two MySQL servers from one template still have their own identity,
    // or their GTIDs would collide.
    assert_ne!(
        servers[1].scalar("SELECT @@server_uuid"),
        servers[2].scalar("SELECT @@server_uuid")
    );
}

dbferry_testkit::on_both_flavours! {
    fn a_dropped_server_is_gone_with_its_datadir(flavour: Flavour) {
        let server = flavour.start();
        let socket = server.socket().to_path_buf();
        let port = server.port();
        assert!(socket.exists());
        drop(server);
        assert!(!socket.exists(), "the directory is removed");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the server is gone"
        );
    }

    fn a_server_has_the_flavours_shipped_defaults(flavour: Flavour) {
        let server = flavour.shared();
        assert_eq!(server.flavour(), flavour);
        let vars = server.query("SELECT @@local_infile, @@max_allowed_packet, @@log_bin, @@version");
        let version = vars[0][3].clone().unwrap_or_default();
        match flavour {
            Flavour::MariaDb => {
                assert_eq!(vars[0][..3], [Some("1".into()), Some("268435456".into()), Some("0".into())]);
                assert!(version.contains("MariaDB"), "{version}");
            }
            Flavour::MySql => {
                assert_eq!(vars[0][..3], [Some("1".into()), Some("268435456".into()), Some("1".into())]);
                assert!(version.starts_with("9."), "MySQL 9.x, not {version}");
                let mysql = server.query(
                    "SELECT @@gtid_mode, @@enforce_gtid_consistency, @@binlog_format, plugin FROM mysql.user \
                     WHERE user = 'dbferry_admin'",
                );
                assert_eq!(
                    mysql[0],
                    ["ON", "ON", "ROW", "caching_sha2_password"].map(|v| Some(v.to_string()))
                );
            }
        }
        // The admin account works over TCP with a password.
        let out = std::process::Command::new(flavour.client_binary())
            .args(["--no-defaults", "-h127.0.0.1", "--batch", "--skip-column-names"])
            .arg(format!("-P{}", server.port()))
            .arg(format!("-u{}", dbferry_testkit::ADMIN_USER))
            .arg(format!("-p{}", server.admin_password()))
            .args(["-e", "SELECT CURRENT_USER()"])
            .output()
            .expect("the flavour's client");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(dbferry_testkit::ADMIN_USER));
    }

    fn query_keeps_nulls_empty_strings_and_special_characters_apart(flavour: Flavour) {
        let db = flavour.shared();
        let rows = db.query("SELECT NULL, '', 'a\\tb', 'x\\ny', '\\\\N', 'é😀'");
        assert_eq!(
            rows,
            vec![vec![
                None,
                Some(String::new()),
                Some("a\tb".into()),
                Some("x\ny".into()),
                Some("\\N".into()),
                Some("é😀".into())
            ]]
        );
        assert!(db.try_exec("SELEKT 1").is_err(), "SQL errors are reported");
    }

    fn seq_yields_one_to_n_on_either_flavour(flavour: Flavour) {
        let db = flavour.shared();
        db.exec("CREATE DATABASE seq_test");
        for n in [1, 10, 1234] {
            let got = db.query(&format!(
                "USE seq_test; SELECT COUNT(*), MIN(seq), MAX(seq), SUM(seq) FROM {}",
                flavour.seq(n)
            ));
            let expected = [n, 1, n, n * (n + 1) / 2].map(|v| Some(v.to_string()));
            assert_eq!(got[0], expected, "seq({n})");
        }
    }

    fn row_hash_and_checksum_see_every_difference(flavour: Flavour) {
        let db = flavour.shared();
        db.exec(
            "CREATE DATABASE h; USE h;
             CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10), d DOUBLE, hidden INT INVISIBLE DEFAULT 7);
             CREATE TABLE b LIKE a;
             INSERT INTO a (id, v, d) VALUES (1, NULL, 0.1), (2, '', 0e0), (3, 'NULL', 1e308);
             INSERT INTO b (id, v, d) SELECT id, v, d FROM a ORDER BY id DESC;",
        );
        assert_eq!(db.row_hash("h", "a"), db.row_hash("h", "b"), "order does not matter");
        assert_eq!(db.checksum_table("h", "a"), db.checksum_table("h", "b"));
        assert!(db.row_hash("h", "a").starts_with("3:"));
        for change in [
            "UPDATE b SET v = '' WHERE id = 1",                  // NULL -> ''
            "UPDATE b SET v = NULL WHERE id = 3",                // 'NULL' -> NULL
            "UPDATE b SET d = 0.10000000000000002 WHERE id = 1", // the last bit of a double
            "UPDATE b SET hidden = 8 WHERE id = 1",              // an invisible column
        ] {
            db.exec("USE h; DELETE FROM b; INSERT INTO b (id, v, d, hidden) SELECT id, v, d, hidden FROM a;");
            assert_eq!(db.row_hash("h", "a"), db.row_hash("h", "b"));
            db.exec(&format!("USE h; {change}"));
            assert_ne!(
                db.row_hash("h", "a"),
                db.row_hash("h", "b"),
                "row_hash must see: {change}"
            );
        }
        assert_eq!(
            db.objects("h"),
            vec![
                (ObjectKind::Table, "a".to_string()),
                (ObjectKind::Table, "b".to_string())
            ]
        );
        assert!(db.show_create("h", ObjectKind::Table, "a").contains("INVISIBLE"));
    }
}

#[test]
fn users_and_config_files() {
    let db = MariaDb::start();
    db.create_user("reader", "pw'1", &["SELECT ON *.*"]);
    let grants = db.query("SHOW GRANTS FOR 'reader'@'%'");
    assert!(
        grants
            .iter()
            .flatten()
            .flatten()
            .any(|g| g.contains("GRANT SELECT ON *.*")),
        "{grants:?}"
    );

    let files = Files::new();
    let config = ConfigBuilder::new()
        .instance(Instance::mysql("rm-src", &db))
        .instance(Instance::mysql("rm-dst", &db).storage_gb(0.5).lock_mode("ManualLock"))
        .write(&files);
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(
        text.contains("storage_gb = 0.5") && text.contains("storage_gb = 100"),
        "{text}"
    );
    assert!(!text.contains(db.admin_password()), "no inline password");
    let secret = files.path().join("secrets/rm-src");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret).expect("secret").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let job = Job::mysql("rm-dst", "rm-src", &["a\"b"])
        .option("parallelism", "4")
        .render();
    assert!(job.contains(r#"db_info = "{\"DBNames\":[\"a\\\"b\"]}""#), "{job}");
    assert!(job.contains("[options]\nparallelism = 4"), "{job}");
}
