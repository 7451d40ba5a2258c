//! TLS on real MariaDB servers serving certificates made here: every mode
//! connects as it promises, and every refusal names what was expected and
//! found. Encryption is checked on the server's side, independently of
//! dbferry: performance_schema.threads says, per connection, whether it
//! came over SSL/TLS or plain TCP/IP.

use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::Session;
use dbferry_plugin_abi::protocol::{PluginError, SessionConfig, TransportInfo};
use dbferry_testkit::{MariaDb, TestCerts, ADMIN_USER};

/// Engine options, as the daemon passes an instance's `tls*` keys.
type Options<'a> = &'a [(&'a str, String)];

fn config(server: &MariaDb, options: &[(&str, String)]) -> SessionConfig {
    SessionConfig {
        options: options.iter().map(|(k, v)| (k.to_string(), v.clone().into())).collect(),
        ..server.session_config("rm-tls", 4)
    }
}

fn tls_server(certs: &TestCerts, extra: &[&str]) -> MariaDb {
    let mut options = certs.server_options();
    options.push("--performance-schema=ON".into());
    options.extend(extra.iter().map(|o| o.to_string()));
    MariaDb::start_with(&options.iter().map(String::as_str).collect::<Vec<_>>())
}

/// How the server sees the admin account's connections: (TLS, plaintext).
fn connection_types(server: &MariaDb) -> (usize, usize) {
    let rows = server.query(&format!(
        "SELECT CONNECTION_TYPE FROM performance_schema.threads WHERE PROCESSLIST_USER = '{ADMIN_USER}'"
    ));
    let tls = rows.iter().filter(|r| r[0].as_deref() == Some("SSL/TLS")).count();
    (tls, rows.len() - tls)
}

/// Connects, probes and opens a snapshot of two readers; returns the
/// transport, whether the wire reader serves the snapshot, and the
/// server's count of (TLS, plaintext) connections while all are open.
fn session(server: &MariaDb, options: &[(&str, String)]) -> Result<(TransportInfo, bool, (usize, usize)), PluginError> {
    let session = MysqlSession::connect(&config(server, options))?;
    let transport = session
        .probe()?
        .transport
        .expect("the MySQL plugin reports its transport");
    let snapshot = session.begin_snapshot(2)?;
    assert_eq!(snapshot.warning, None, "the fast reader runs over TLS");
    let seen = connection_types(server);
    Ok((transport, session.reads_over_wire(), seen))
}

fn refusal(server: &MariaDb, options: &[(&str, String)]) -> (String, String) {
    match MysqlSession::connect(&config(server, options)) {
        Ok(_) => panic!("{options:?} connected to a server it should refuse"),
        Err(e) => {
            let e = PluginError::from(e);
            (e.code.unwrap_or_default(), e.message)
        }
    }
}

#[test]
fn every_mode_encrypts_every_connection_and_reports_how() {
    let certs = TestCerts::make(&["127.0.0.1"]);
    let server = tls_server(&certs, &[]);
    let ca = certs.ca().display().to_string();
    let modes: [(Options<'_>, &str, &str); 4] = [
        (&[], "preferred", "none"),
        (&[("tls", "trust".into())], "trust", "none"),
        (
            &[("tls", "verify-ca".into()), ("tls_ca", ca.clone())],
            "verify-ca",
            "ca",
        ),
        (&[("tls", "on".into()), ("tls_ca", ca.clone())], "on", "ca-and-host"),
    ];
    for (options, mode, verified) in modes {
        let (transport, wire, (tls, plain)) = session(&server, options).unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(transport.mode, mode);
        assert!(transport.encrypted, "{mode}: {transport:?}");
        assert!(
            transport
                .tls_version
                .as_deref()
                .is_some_and(|v| v.starts_with("TLSv1.")),
            "{transport:?}"
        );
        assert_eq!(transport.verified, verified);
        assert!(wire, "{mode}: the wire reader serves the snapshot over TLS");
        // A control connection and two snapshot readers at least, none plain.
        assert!(
            tls >= 3 && plain == 0,
            "{mode}: server saw {tls} TLS and {plain} plaintext connections"
        );
    }
    let (transport, wire, (tls, plain)) = session(&server, &[("tls", "off".into())]).expect("off");
    assert!(!transport.encrypted && transport.tls_version.is_none(), "{transport:?}");
    assert!(wire);
    assert!(
        tls == 0 && plain >= 3,
        "off: server saw {tls} TLS and {plain} plaintext connections"
    );
}

#[test]
fn a_certificate_that_does_not_verify_is_refused_by_name() {
    let certs = TestCerts::make(&["127.0.0.1"]);
    let server = tls_server(&certs, &[]);
    let wrong = certs.wrong_ca().display().to_string();
    for mode in ["verify-ca", "on"] {
        let (code, message) = refusal(&server, &[("tls", mode.into()), ("tls_ca", wrong.clone())]);
        assert_eq!(code, "IncorrectDBInstanceTls.Unverified", "{message}");
        assert!(
            message.contains("rm-tls") && message.contains("chains to the trusted CA"),
            "{message}"
        );
        assert!(message.contains("UnknownIssuer"), "{message}");
    }
    // The system roots do not know a private CA either.
    let (code, _) = refusal(&server, &[("tls", "verify-ca".into())]);
    assert_eq!(code, "IncorrectDBInstanceTls.Unverified");
}

/// Starts a server presenting `certs`' certificate and checks that `on`
/// refuses it (returning the refusal's message) while `verify-ca` checks
/// the chain alone, on every connection: mysql_async's pools as well as the
/// wire readers, all encrypted in the server's own view.
fn on_refuses_and_verify_ca_takes(certs: &TestCerts) -> (MariaDb, String) {
    let server = tls_server(certs, &[]);
    let ca = certs.ca().display().to_string();
    let (code, message) = refusal(&server, &[("tls", "on".into()), ("tls_ca", ca.clone())]);
    assert_eq!(code, "IncorrectDBInstanceTls.Unverified", "{message}");
    let (transport, wire, (tls, plain)) =
        session(&server, &[("tls", "verify-ca".into()), ("tls_ca", ca)]).expect("verify-ca takes the chain");
    assert!(transport.encrypted && transport.verified == "ca", "{transport:?}");
    assert!(wire, "the wire reader serves the snapshot");
    assert!(
        tls >= 3 && plain == 0,
        "server saw {tls} TLS and {plain} plaintext connections"
    );
    (server, message)
}

#[test]
fn a_certificate_for_another_host_is_refused_by_on_and_taken_by_verify_ca() {
    let certs = TestCerts::make(&["db.example"]);
    let (server, message) = on_refuses_and_verify_ca_takes(&certs);
    assert!(
        message.contains("names the host") && message.contains("127.0.0.1"),
        "{message}"
    );
    // ...and still refuses a chain that leads elsewhere.
    let wrong = certs.wrong_ca().display().to_string();
    let (code, message) = refusal(&server, &[("tls", "verify-ca".into()), ("tls_ca", wrong)]);
    assert_eq!(code, "IncorrectDBInstanceTls.Unverified", "{message}");
    let (transport, _, _) = session(&server, &[("tls", "trust".into())]).expect("trust takes any certificate");
    assert!(transport.encrypted);
}

#[test]
fn a_certificate_naming_no_host_is_taken_by_verify_ca_and_refused_by_on() {
    // No subjectAltName at all, like MySQL's auto-generated certificate:
    // nothing for a name check to match, so only the chain can be checked.
    on_refuses_and_verify_ca_takes(&TestCerts::make(&[]));
}

#[test]
fn a_server_without_tls_is_refused_where_tls_is_required_and_plaintext_where_preferred() {
    let server = MariaDb::start_with(&["--performance-schema=ON"]);
    for mode in ["trust", "verify-ca", "on"] {
        let (code, message) = refusal(&server, &[("tls", mode.into())]);
        assert_eq!(code, "IncorrectDBInstanceTls.NotOffered", "{mode}: {message}");
        assert!(message.contains("does not offer"), "{message}");
    }
    let (transport, wire, (tls, _)) = session(&server, &[]).expect("preferred");
    assert!(!transport.encrypted && transport.mode == "preferred", "{transport:?}");
    assert!(wire && tls == 0);
}

#[test]
fn a_server_that_requires_tls_refuses_off_and_takes_no_key() {
    let certs = TestCerts::make(&["127.0.0.1"]);
    let server = tls_server(&certs, &["--require-secure-transport=ON"]);
    let (code, message) = refusal(&server, &[("tls", "off".into())]);
    assert_eq!(code, "IncorrectDBInstanceTls.Required", "{message}");
    assert!(message.contains("requires TLS"), "{message}");
    let (transport, wire, (_, plain)) = session(&server, &[]).expect("no key: preferred");
    assert!(transport.encrypted && wire && plain == 0);
}

#[test]
fn a_fast_reader_that_cannot_be_used_is_named_in_the_snapshot_warning() {
    let server = MariaDb::shared();
    // A Unix socket rules the wire client out.
    let mut config = config(server, &[("socket", server.socket().display().to_string())]);
    config.options.insert("prefer_socket".into(), true.into());
    let session = MysqlSession::connect(&config).expect("connect");
    let snapshot = session.begin_snapshot(2).expect("snapshot");
    assert!(!session.reads_over_wire());
    let warning = snapshot.warning.expect("the result names the slower reader");
    assert!(warning.contains("fast reader is not used on rm-tls"), "{warning}");
}
