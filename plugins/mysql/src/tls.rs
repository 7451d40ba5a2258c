//! Transport encryption: the instance's `tls` mode, its certificates, and
//! what both clients (mysql_async and [`crate::wire`]) make of them.
//!
//! Modes follow the stock clients' `--ssl-mode`: `off`, `preferred` (no
//! key: encrypted whenever the server offers TLS), `trust` (required, no
//! certificate check), `verify-ca` (the chain must lead to `tls_ca`, or to
//! the system roots) and `on` (`verify-ca`, and the certificate names the
//! host). Nothing falls back to plaintext unless the mode is `preferred`
//! and the server offers no TLS, which the session then reports.

use std::path::PathBuf;
use std::sync::Arc;

use dbferry_plugin_sdk::tls::{self as sdk_tls, Check, TlsConfigError};
use mysql_async::{ClientIdentity, SslOpts};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;

use crate::error::{Error, Result};

/// Debian's bundle of the system's trusted roots.
pub use dbferry_plugin_sdk::tls::SYSTEM_ROOTS;

/// The server name mysql_async checks certificates against under
/// `verify-ca`. mysql_async 0.37.1 skips the name check only when rustls's
/// error text says `NotValidForName` (blackbeam/mysql_async#404), which
/// rustls 0.23's name-carrying error no longer does, except by quoting the
/// name it expected. So the name it expects says it. webpki checks the
/// chain before the name, so the chain is still checked in full, and a
/// rustls whose error text changes again fails closed (the test below
/// notices first).
pub const VERIFY_CA_SERVER_NAME: &str = "NotValidForName.verify-ca.dbferry.invalid";

/// How a connection is encrypted and what is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext.
    Off,
    /// Encrypted when the server offers TLS, unchecked; plaintext otherwise.
    Preferred,
    /// Encrypted, certificate not checked.
    Trust,
    /// Encrypted, chain checked against the CA.
    VerifyCa,
    /// Encrypted, chain and host name checked.
    On,
}

impl TlsMode {
    /// The words the config accepts.
    pub const NAMES: [&'static str; 5] = ["off", "preferred", "trust", "verify-ca", "on"];

    /// Reads a mode word.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "off" => TlsMode::Off,
            "preferred" => TlsMode::Preferred,
            "trust" => TlsMode::Trust,
            "verify-ca" => TlsMode::VerifyCa,
            "on" => TlsMode::On,
            _ => return None,
        })
    }

    /// The config word.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether a connection without TLS is refused.
    pub fn required(self) -> bool {
        matches!(self, TlsMode::Trust | TlsMode::VerifyCa | TlsMode::On)
    }

    /// How the server was verified, for the import's result.
    pub fn verification(self) -> &'static str {
        match self {
            TlsMode::Off | TlsMode::Preferred | TlsMode::Trust => "none",
            TlsMode::VerifyCa => "ca",
            TlsMode::On => "ca-and-host",
        }
    }
}

/// The instance's TLS settings, from the session's options (`tls`,
/// `tls_ca`, `tls_cert`, `tls_key`), which the daemon validated.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// The mode.
    pub mode: TlsMode,
    /// Trusted roots (PEM); the system's when absent.
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM) and key, for servers that ask for one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// Reads the options; absent `tls` means `preferred`.
    pub fn from_options(options: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let text = |key: &str| options.get(key).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        let mode = match text("tls") {
            None => TlsMode::Preferred,
            Some(word) => TlsMode::parse(word).ok_or_else(|| {
                Error::Invalid(format!(
                    "tls = {word:?} is not one of {}",
                    TlsMode::NAMES.map(|n| format!("{n:?}")).join(", ")
                ))
            })?,
        };
        let identity = match (text("tls_cert"), text("tls_key")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => return Err(Error::Invalid("tls_cert and tls_key go together".into())),
        };
        Ok(Self {
            mode,
            ca: text("tls_ca").map(PathBuf::from),
            identity,
        })
    }

    fn roots_file(&self) -> PathBuf {
        self.ca.clone().unwrap_or_else(|| PathBuf::from(SYSTEM_ROOTS))
    }

    /// mysql_async's options for a connection that asks for TLS; `None`
    /// for `off`. `Preferred` asks too; the pool retries without on a
    /// server that offers none.
    pub fn ssl_opts(&self) -> Option<SslOpts> {
        let mut opts = SslOpts::default()
            .with_root_certs(vec![self.roots_file().into()])
            .with_disable_built_in_roots(true)
            .with_client_identity(
                self.identity
                    .as_ref()
                    .map(|(cert, key)| ClientIdentity::new(cert.clone().into(), key.clone().into())),
            );
        match self.mode {
            TlsMode::Off => return None,
            TlsMode::Preferred | TlsMode::Trust => opts = opts.with_danger_accept_invalid_certs(true),
            TlsMode::VerifyCa => {
                opts = opts
                    .with_danger_skip_domain_validation(true)
                    .with_danger_tls_hostname_override(Some(VERIFY_CA_SERVER_NAME))
            }
            TlsMode::On => {}
        }
        Some(opts)
    }

    /// The rustls configuration of [`crate::wire`] connections.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let check = match self.mode {
            TlsMode::Off | TlsMode::Preferred | TlsMode::Trust => Check::Nothing,
            TlsMode::VerifyCa => Check::Chain,
            TlsMode::On => Check::ChainAndName,
        };
        let identity = self
            .identity
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        sdk_tls::client_config(check, &self.roots_file(), identity).map_err(|e| match e {
            TlsConfigError::Invalid(m) => Error::Invalid(m),
            TlsConfigError::Internal(m) => Error::Internal(format!("TLS: {m}")),
        })
    }
}

/// Makes ring rustls's process-wide provider, which mysql_async's
/// `ClientConfig::builder()` needs. rustls picks one by itself only when
/// exactly one of its providers is compiled in, and another crate of the
/// workspace (tiberius) brings aws-lc-rs.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already, which serves as well.
        let _ = ring::default_provider().install_default();
    });
}

/// The server name a certificate is checked against: `host` as given.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    sdk_tls::server_name(host).map_err(|e| Error::Invalid(e.to_string()))
}

/// Why a TLS connection was refused, as the contract names it.
pub use dbferry_plugin_abi::protocol::TlsRefusal as Refusal;

/// The rustls error behind an I/O error, if any.
pub use dbferry_plugin_sdk::tls::rustls_error;

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect()
    }

    #[test]
    fn no_key_is_preferred_and_every_word_reads() {
        let none = TlsSettings::from_options(&options(&[])).map(|s| s.mode).ok();
        assert_eq!(none, Some(TlsMode::Preferred));
        for word in TlsMode::NAMES {
            let mode = TlsSettings::from_options(&options(&[("tls", word)]))
                .map(|s| s.mode)
                .ok();
            assert_eq!(mode.map(TlsMode::as_str), Some(word));
        }
        assert!(TlsSettings::from_options(&options(&[("tls", "maybe")])).is_err());
        assert!(TlsSettings::from_options(&options(&[("tls_cert", "/c")])).is_err());
    }

    /// What mysql_async's verify-ca check reads: rustls's refusal of a
    /// certificate that chains but does not name [`VERIFY_CA_SERVER_NAME`].
    #[test]
    fn the_verify_ca_name_puts_not_valid_for_name_in_rustls_refusal() {
        let expected = ServerName::try_from(VERIFY_CA_SERVER_NAME).map(|n| n.to_owned());
        let refusal = expected.map(|expected| {
            tokio_rustls::rustls::Error::InvalidCertificate(
                tokio_rustls::rustls::CertificateError::NotValidForNameContext {
                    expected,
                    presented: vec!["db.example".into()],
                },
            )
            .to_string()
        });
        assert!(
            refusal.as_ref().is_ok_and(|text| text.contains("NotValidForName")),
            "{refusal:?}"
        );
    }

    #[test]
    fn only_off_and_preferred_allow_plaintext() {
        let required: Vec<_> = TlsMode::NAMES
            .iter()
            .filter_map(|w| TlsMode::parse(w))
            .filter(|m| m.required())
            .map(TlsMode::as_str)
            .collect();
        assert_eq!(required, ["trust", "verify-ca", "on"]);
        let off = TlsSettings::from_options(&options(&[("tls", "off")])).map(|s| s.ssl_opts().is_none());
        assert_eq!(off.ok(), Some(true));
    }
}
