//! Transport encryption: the instance's `tls` mode, its certificates, and
//! what both clients (mysql_async and [`crate::wire`]) make of them.
//!
//! Modes follow the stock clients' `--ssl-mode`: `off`, `preferred` (no
//! key: encrypted whenever the server offers TLS), `trust` (required, no
//! certificate check), `verify-ca` (the chain must lead to `tls_ca`, or to
//! the system roots) and `on` (`verify-ca`, and the certificate names the
//! host). Nothing falls back to plaintext unless the mode is `preferred`
//! and the server offers no TLS, which the session then reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mysql_async::{ClientIdentity, SslOpts};
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::{Error, Result};

/// Debian's bundle of the system's trusted roots.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

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
        let provider = Arc::new(ring::default_provider());
        let check = match self.mode {
            TlsMode::Off | TlsMode::Preferred | TlsMode::Trust => Check::Nothing,
            TlsMode::VerifyCa => Check::Chain,
            TlsMode::On => Check::ChainAndName,
        };
        let chain = match check {
            Check::Nothing => None,
            _ => {
                let roots = Arc::new(root_store(&self.roots_file())?);
                Some(
                    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                        .build()
                        .map_err(|e| Error::Invalid(format!("TLS roots: {e}")))?,
                )
            }
        };
        let verifier = Verifier {
            chain,
            check_name: check == Check::ChainAndName,
            provider: provider.clone(),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match &self.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(certificates(cert)?, private_key(key)?)
                .map_err(|e| Error::Invalid(format!("tls_cert/tls_key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
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
    ServerName::try_from(host.to_string()).map_err(|e| Error::Invalid(format!("host {host:?} as a TLS name: {e}")))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?
        .ok_or_else(|| Error::Invalid(format!("{} holds no PEM private key", path.display())))
}

fn root_store(path: &Path) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certificates(path)?);
    if added == 0 {
        return Err(Error::Invalid(format!(
            "{} holds no usable CA certificate",
            path.display()
        )));
    }
    Ok(store)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// Checks the chain (and the name, for `on`) with webpki; `trust` and
/// `preferred` accept any certificate but still check handshake signatures.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS connection was refused, as the contract names it.
pub use dbferry_plugin_abi::protocol::TlsRefusal as Refusal;

/// The rustls error behind an I/O error, if any.
pub fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(tls);
                }
            }
        }
        cur = err.source();
    }
    None
}

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
            tokio_rustls::rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected,
                presented: vec!["db.example".into()],
            })
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
