//! TLS and caching_sha2_password on Oracle MySQL 9.7 as shipped: its own
//! auto-generated certificates, `require_secure_transport=ON`, and the
//! fast reader logging in with fast authentication, full authentication
//! over TLS, and full authentication with the server's RSA key. Encryption
//! is checked by the server (performance_schema.threads.CONNECTION_TYPE),
//! not by dbferry.

use std::time::Duration;

use dbferry_mysql::tls::{TlsMode, TlsSettings};
use dbferry_mysql::wire::{Login, WireConn};
use dbferry_mysql::MysqlSession;
use dbferry_plugin_abi::plugin::Session;
use dbferry_plugin_abi::protocol::{PluginError, SessionConfig};
use dbferry_testkit::{Flavour, Server, TestCerts, ADMIN_USER};

fn config(server: &Server, options: &[(&str, String)]) -> SessionConfig {
    SessionConfig {
        options: options.iter().map(|(k, v)| (k.to_string(), v.clone().into())).collect(),
        ..server.session_config("rm-mysql", 4)
    }
}

fn refusal(server: &Server, options: &[(&str, String)]) -> (String, String) {
    match MysqlSession::connect(&config(server, options)) {
        Ok(_) => panic!("{options:?} connected to a server it should refuse"),
        Err(e) => {
            let e = PluginError::from(e);
            (e.code.unwrap_or_default(), e.message)
        }
    }
}

#[test]
fn mysql_requiring_tls_is_read_encrypted_with_no_key_and_refused_where_it_cannot_be() {
    let server = Flavour::MySql.start_with(&["--require-secure-transport=ON", "--performance-schema=ON"]);
    // No key: preferred, so encrypted, and the fast reader logs in over TLS
    // with caching_sha2_password.
    let session = MysqlSession::connect(&config(&server, &[])).expect("no tls key");
    let transport = session.probe().expect("probe").transport.expect("transport");
    assert!(transport.encrypted, "{transport:?}");
    assert_eq!(transport.tls_version.as_deref(), Some("TLSv1.3"));
    let snapshot = session.begin_snapshot(2).expect("snapshot");
    assert_eq!(snapshot.warning, None);
    assert!(session.reads_over_wire(), "the fast reader runs on MySQL 9.7 over TLS");
    let types = server.query(&format!(
        "SELECT CONNECTION_TYPE FROM performance_schema.threads WHERE PROCESSLIST_USER = '{ADMIN_USER}'"
    ));
    assert!(types.len() >= 3, "{types:?}");
    assert!(types.iter().all(|r| r[0].as_deref() == Some("SSL/TLS")), "{types:?}");
    drop(session);

    let (code, message) = refusal(&server, &[("tls", "off".into())]);
    assert_eq!(code, "IncorrectDBInstanceTls.Required", "{message}");
    assert!(
        message.contains("rm-mysql") && message.contains("require_secure_transport"),
        "{message}"
    );

    // The auto-generated certificate chains to the datadir's CA but names
    // no host: `on` refuses it, and so does a CA that did not sign it.
    let ca = server.datadir().join("ca.pem").display().to_string();
    let (code, message) = refusal(&server, &[("tls", "on".into()), ("tls_ca", ca.clone())]);
    assert_eq!(code, "IncorrectDBInstanceTls.Unverified", "{message}");
    assert!(message.contains("names the host"), "{message}");
    // verify-ca checks the chain alone, so it takes the certificate, and
    // every connection it makes is encrypted.
    let verified = MysqlSession::connect(&config(&server, &[("tls", "verify-ca".into()), ("tls_ca", ca)]))
        .expect("verify-ca takes a chained certificate that names no host");
    let transport = verified.probe().expect("probe").transport.expect("transport");
    assert!(transport.encrypted, "{transport:?}");
    verified.begin_snapshot(2).expect("snapshot under verify-ca");
    assert!(verified.reads_over_wire(), "the fast reader runs under verify-ca");
    drop(verified);
    let other = TestCerts::make(&["127.0.0.1"]);
    let wrong = other.ca().display().to_string();
    let (code, message) = refusal(&server, &[("tls", "verify-ca".into()), ("tls_ca", wrong)]);
    assert_eq!(code, "IncorrectDBInstanceTls.Unverified", "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
    let trusted = MysqlSession::connect(&config(&server, &[("tls", "trust".into())])).expect("trust");
    assert!(trusted.probe().expect("probe").transport.is_some_and(|t| t.encrypted));
}

fn login(server: &Server, user: &str, password: &str, mode: TlsMode) -> Login {
    let settings = TlsSettings {
        mode,
        ca: None,
        identity: None,
    };
    Login {
        host: server.host().into(),
        port: server.port(),
        user: user.into(),
        password: password.into(),
        tls: mode,
        tls_config: (mode != TlsMode::Off).then(|| settings.client_config().expect("TLS config")),
        instance: "rm-mysql".into(),
    }
}

/// Logs in with the wire client and returns the session's `Ssl_version`
/// as the server reports it (empty on plaintext).
fn wire_ssl_version(login: &Login) -> Result<String, dbferry_mysql::error::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = WireConn::connect(login, Duration::from_secs(15)).await?;
        let rows = conn.all_rows("SHOW SESSION STATUS LIKE 'Ssl_version'").await?;
        let version = rows
            .first()
            .and_then(|r| r.get(1).cloned().flatten())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        assert_eq!(conn.encrypted(), !version.is_empty());
        Ok(version)
    })
}

#[test]
fn the_fast_reader_logs_in_with_caching_sha2_fast_full_over_tls_and_with_rsa() {
    let server = Flavour::MySql.shared();
    server.exec(
        "CREATE USER IF NOT EXISTS 'sha2'@'%' IDENTIFIED WITH caching_sha2_password BY 'sha2-pw'; \
         GRANT SELECT ON *.* TO 'sha2'@'%'",
    );
    let plugin = server.query("SELECT plugin FROM mysql.user WHERE user = 'sha2'");
    assert_eq!(plugin[0][0].as_deref(), Some("caching_sha2_password"));

    // FLUSH PRIVILEGES empties the server's cache, so the next login must
    // authenticate in full: without TLS only the RSA exchange can do that.
    server.exec("FLUSH PRIVILEGES");
    let plain = login(server, "sha2", "sha2-pw", TlsMode::Off);
    assert_eq!(wire_ssl_version(&plain).expect("full auth with the RSA key"), "");
    // Now cached: fast authentication, still plaintext.
    assert_eq!(wire_ssl_version(&plain).expect("fast auth"), "");

    server.exec("FLUSH PRIVILEGES");
    let tls = login(server, "sha2", "sha2-pw", TlsMode::Trust);
    let version = wire_ssl_version(&tls).expect("full auth over TLS");
    assert!(version.starts_with("TLSv1."), "{version}");
    assert!(wire_ssl_version(&tls)
        .expect("fast auth over TLS")
        .starts_with("TLSv1."));

    // A wrong password is refused on every path: the exchanges above
    // really authenticated.
    server.exec("FLUSH PRIVILEGES");
    for mode in [TlsMode::Off, TlsMode::Trust] {
        let wrong = login(server, "sha2", "not-the-pw", mode);
        let error = wire_ssl_version(&wrong).expect_err("wrong password");
        assert_eq!(error.server_code(), Some(1045), "{mode:?}: {error}");
    }
}
