//! TLS end to end with the real binary on Oracle MySQL 9.7 as shipped
//! (auto-generated certificates): an import into a server that requires
//! TLS works with no `tls` key and says how its connections travelled, and
//! `tls = "on"` refuses a server it cannot verify before changing anything.

use dbferry_testkit::{Flavour, Instance, Job, ObjectKind};

use crate::common::{count, state, unique, Setup, DST, SRC};

#[test]
fn an_import_into_mysql_requiring_tls_needs_no_key_and_on_refuses_what_it_cannot_verify() {
    let source = Flavour::MySql.shared();
    let target = Flavour::MySql.start_with(&["--require-secure-transport=ON"]);
    let db = unique("tls");
    let create = format!("CREATE DATABASE {}", dbferry_testkit::ident(&db));
    source.exec(&create);
    target.exec(&create);
    source.exec_in(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    );

    // The auto-generated certificate chains to the datadir's CA but names
    // no host: `on` refuses it at precheck, and the target is unchanged.
    let ca = target.datadir().join("ca.pem");
    let strict = Setup::with(
        Instance::mysql(SRC, source),
        Instance::mysql(DST, &target)
            .extra("tls", "\"on\"")
            .extra("tls_ca", &format!("\"{}\"", ca.display())),
    );
    let before = state(&target, &db);
    let refused = strict.run(&Job::mysql(DST, SRC, &[&db]));
    refused.assert_rejected("IncorrectDBInstanceTls.Unverified");
    let message = refused
        .result
        .as_ref()
        .and_then(|r| r["Message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(DST) && message.contains("names the host"),
        "{}",
        refused.describe()
    );
    assert_eq!(state(&target, &db), before, "a refused import changes nothing");
    assert_eq!(before, Some(Vec::<(ObjectKind, String)>::new()));

    // No key: preferred, which the server's require_secure_transport accepts.
    let plain = Setup::with(Instance::mysql(SRC, source), Instance::mysql(DST, &target));
    let outcome = plain.run(&Job::mysql(DST, SRC, &[&db]));
    outcome.assert_success();
    assert_eq!(count(&target, &db, "t"), 3);
    let result = outcome.result.as_ref().expect("result");
    let transport = result["Transport"].as_array().expect("Transport in the result");
    assert_eq!(transport.len(), 2, "{}", outcome.describe());
    for t in transport {
        assert_eq!(t["Mode"], "preferred", "{t}");
        assert_eq!(t["Encrypted"], true, "{t}");
        assert_eq!(t["TlsVersion"], "TLSv1.3", "{t}");
        assert_eq!(t["Verified"], "none", "{t}");
    }
    assert_eq!(transport[1]["Instance"], DST);
    assert_eq!(transport[1]["Role"], "target");
}
