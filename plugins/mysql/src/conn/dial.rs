//! Logging in to one instance with TLS as its mode says: mysql_async's
//! options for each case, the `preferred` fallback to plaintext, telling a
//! server that requires TLS from a wrong password.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use dbferry_plugin_abi::protocol::SessionConfig;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::socket::{guard_connections_to, KEEPALIVE_IDLE};
use crate::error::{Error, Result};
use crate::group::InfileShelf;
use crate::tls::{Refusal, TlsMode, TlsSettings};

/// How long a new connection may take to log in.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Driver options for `config`. Engine options understood: `prefer_socket`
/// (bool, default false), `socket` (path); TLS comes from `tls`.
pub fn options(config: &SessionConfig, infiles: &InfileShelf, tls: &TlsSettings) -> Opts {
    let prefer_socket = config
        .options
        .get("prefer_socket")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let socket = config
        .options
        .get("socket")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    OptsBuilder::default()
        .ip_or_hostname(config.host.clone())
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(Some(config.password.clone()))
        .prefer_socket(prefer_socket)
        .socket(socket)
        // The client never limits packet size: one row may be 64 MiB or more;
        // only the server's own max_allowed_packet applies.
        .max_allowed_packet(Some(1 << 30))
        .stmt_cache_size(0)
        .tcp_nodelay(true)
        // mysql_async sets only the idle time (the kernel's probe interval
        // and count apply); its sockets are not reachable for more.
        .tcp_keepalive(Some(KEEPALIVE_IDLE))
        .local_infile_handler(Some(infiles.clone()))
        .ssl_opts(tls.ssl_opts())
        .into()
}

/// Opens mysql_async connections to one instance.
pub struct Dialer {
    opts: Opts,
    /// The same without TLS, for a `preferred` server that offers none.
    plain_opts: Opts,
    /// The same with unchecked TLS: tells a server that refuses plaintext
    /// logins (MariaDB says only "Access denied") from a wrong password.
    trust_opts: Opts,
    /// Set once a `preferred` server turned out to offer no TLS.
    plaintext: AtomicBool,
    tls: TlsSettings,
    /// The rustls configuration of wire readers; `None` for `off`.
    wire_tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    instance: String,
}

impl Dialer {
    /// A dialer for `config`, whose `LOAD DATA LOCAL` payloads come from `infiles`.
    pub fn new(config: &SessionConfig, infiles: &InfileShelf) -> Result<Self> {
        crate::tls::install_crypto_provider();
        let tls = TlsSettings::from_options(&config.options)?;
        let with_mode = |mode| options(config, infiles, &TlsSettings { mode, ..tls.clone() });
        Ok(Self {
            opts: options(config, infiles, &tls),
            plain_opts: with_mode(TlsMode::Off),
            trust_opts: with_mode(TlsMode::Trust),
            plaintext: AtomicBool::new(tls.mode == TlsMode::Off),
            wire_tls: match tls.mode {
                TlsMode::Off => None,
                _ => Some(tls.client_config()?),
            },
            tls,
            instance: config.instance_id.clone(),
        })
    }

    /// The instance's TLS settings.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// Whether connections go without TLS (mode `off`, or a `preferred`
    /// server that offers none).
    pub fn plaintext(&self) -> bool {
        self.plaintext.load(Relaxed)
    }

    /// The instance id, for messages.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// How a [`crate::wire::WireConn`] logs in to this instance; `None`
    /// when it goes through a Unix socket, which the wire client does not speak.
    pub fn wire_login(&self) -> Option<crate::wire::Login> {
        if self.opts.socket().is_some() || self.opts.prefer_socket() {
            return None;
        }
        Some(crate::wire::Login {
            host: self.opts.ip_or_hostname().to_string(),
            port: self.opts.tcp_port(),
            user: self.opts.user()?.to_string(),
            password: self.opts.pass().unwrap_or_default().to_string(),
            tls: if self.plaintext() { TlsMode::Off } else { self.tls.mode },
            tls_config: self.wire_tls.clone(),
            instance: self.instance.clone(),
        })
    }

    /// Logs in, with TLS as the mode says.
    pub async fn connect(&self) -> Result<Conn> {
        let opts = if self.plaintext() {
            self.plain_opts.clone()
        } else {
            self.opts.clone()
        };
        match self.connect_with(opts).await {
            Ok(conn) => Ok(conn),
            Err(Error::Tls {
                refusal: Refusal::NotOffered,
                ..
            }) if self.tls.mode == TlsMode::Preferred => {
                if !self.plaintext.swap(true, Relaxed) {
                    tracing::warn!(
                        instance = %self.instance,
                        "the server offers no TLS: connections are not encrypted (tls is preferred)"
                    );
                }
                self.connect_with(self.plain_opts.clone()).await
            }
            Err(e) if self.plaintext() && e.server_code() == Some(crate::error::code::ACCESS_DENIED) => {
                // MariaDB refuses a plaintext login under
                // require_secure_transport as "Access denied"; the same
                // login over TLS tells that apart from a wrong password.
                match self.connect_with(self.trust_opts.clone()).await {
                    Ok(conn) => {
                        drop(conn);
                        Err(Error::Tls {
                            instance: self.instance.clone(),
                            refusal: Refusal::Required,
                            message: format!(
                                "tls = \"{}\", but the server requires TLS: it refused the plaintext login ({e}) \
                                 and accepted the same login over TLS",
                                self.tls.mode.as_str()
                            ),
                        })
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn connect_with(&self, opts: Opts) -> Result<Conn> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
            Ok(Ok(conn)) => {
                guard_connections_to(self.opts.tcp_port());
                Ok(conn)
            }
            Ok(Err(e)) => Err(crate::error::connect_error(&self.instance, self.tls.mode, e)),
            Err(_) => Err(Error::Connect {
                instance: self.instance.clone(),
                message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                server_code: None,
            }),
        }
    }
}
