//! The rustls client configuration behind an instance's `tls` mode, for
//! every plugin connection that does its own TLS (the MySQL plugin's wire
//! reader, the SQL Server plugin's PostgreSQL loader): what is checked of
//! the server's certificate, against which roots, and the client identity
//! a server may ask for.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Debian's bundle of the system's trusted roots.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A configured file is missing, unreadable or holds nothing usable.
    #[error("{0}")]
    Invalid(String),
    /// rustls refused a configuration this module built.
    #[error("TLS: {0}")]
    Internal(String),
}

/// What is checked of a server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing (`preferred`, `trust`); handshake signatures still are.
    Nothing,
    /// The chain leads to the roots (`verify-ca`).
    Chain,
    /// The chain, and the certificate names the host (`on`).
    ChainAndName,
}

/// A client configuration that checks what `check` says against the CA
/// certificates in `roots` (PEM), presenting `identity` (certificate chain
/// and key, PEM) to servers that ask.
pub fn client_config(
    check: Check,
    roots: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = Arc::new(ring::default_provider());
    let chain = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndName => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(roots)?), provider.clone())
                .build()
                .map_err(|e| TlsConfigError::Invalid(format!("TLS roots: {e}")))?,
        ),
    };
    let verifier = Verifier {
        chain,
        check_name: check == Check::ChainAndName,
        provider: provider.clone(),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Internal(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| TlsConfigError::Invalid(format!("tls_cert/tls_key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The server name a certificate is checked against: `host` as given.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsConfigError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsConfigError::Invalid(format!("host {host:?} as a TLS name: {e}")))
}

/// The rustls error behind an error, if any, however deeply wrapped (an
/// I/O error's inner error included).
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

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem =
        std::fs::read(path).map_err(|e| TlsConfigError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsConfigError::Invalid(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let pem =
        std::fs::read(path).map_err(|e| TlsConfigError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsConfigError::Invalid(format!("{}: {e}", path.display())))?
        .ok_or_else(|| TlsConfigError::Invalid(format!("{} holds no PEM private key", path.display())))
}

fn root_store(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certificates(path)?);
    if added == 0 {
        return Err(TlsConfigError::Invalid(format!(
            "{} holds no usable CA certificate",
            path.display()
        )));
    }
    Ok(store)
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
    ) -> Result<ServerCertVerified, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
