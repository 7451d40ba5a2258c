//! A target that lets only SUPER create triggers and stored functions
//! (MySQL 9.7 as shipped: binary log on, log_bin_trust_function_creators
//! OFF) is refused at precheck, naming each such object and the setting,
//! when the target account lacks SUPER; nothing changes on the target.

use dbferry_testkit::{Flavour, Instance, Job};

use crate::common::{create_source, pair_of, unique, Setup, DST, SRC};

/// The grants of a cloud instance's account, as issue 20 lists them.
const CLOUD_GRANTS: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, \
     CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER, EVENT, LOCK TABLES, EXECUTE, PROCESS, \
     REPLICATION CLIENT, REPLICATION SLAVE ON *.*";

#[test]
fn mysql_a_trigger_the_target_account_cannot_create_is_refused_before_anything_changes() {
    let p = pair_of(Flavour::MySql);
    assert_eq!(
        p.target
            .scalar("SELECT @@log_bin AND NOT @@log_bin_trust_function_creators")
            .as_deref(),
        Some("1"),
        "precondition: the binary log is on, log_bin_trust_function_creators OFF"
    );
    let db = unique("creators");
    create_source(
        (p.source, p.target),
        &db,
        "utf8mb4",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT);
         INSERT INTO t VALUES (1, 1), (2, 2);
         CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.v = IFNULL(NEW.v, 0);",
    );
    let (source_user, target_user) = (unique("cloud_src"), unique("cloud_dst"));
    p.source.create_user(&source_user, "Cloud-pw-1", &[CLOUD_GRANTS]);
    p.target.create_user(&target_user, "Cloud-pw-1", &[CLOUD_GRANTS]);
    let setup = Setup::with(
        Instance::mysql(SRC, p.source).login(&source_user, "Cloud-pw-1"),
        Instance::mysql(DST, p.target).login(&target_user, "Cloud-pw-1"),
    );
    let before = p.target.objects(&db);
    let out = setup.run(&Job::mysql(DST, SRC, &[&db]));
    out.assert_rejected("IncorrectDBInstanceType");
    let message = out.message().unwrap_or_default();
    for needle in ["trigger t_bi", "SUPER", "log_bin_trust_function_creators", "1419"] {
        assert!(message.contains(needle), "the refusal names {needle}: {message}");
    }
    assert!(before.is_empty());
    assert_eq!(p.target.objects(&db), before, "nothing changed on the target");

    // The same import as root (SUPER) is not refused.
    Setup::new(p.source, p.target)
        .run(&Job::mysql(DST, SRC, &[&db]))
        .assert_success();
    assert!(
        p.target.objects(&db).len() >= 2,
        "the table and its trigger were copied"
    );
}
