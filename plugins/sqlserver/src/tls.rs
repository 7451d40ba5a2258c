//! TLS for one instance: the `tls` mode in the MySQL engine's words, the
//! certificate trust it gives tiberius, and the encryption level settled
//! from what the server answers to a PRELOGIN ([`crate::prelogin`]), or
//! the contract's refusal when the two cannot agree.

use dbferry_plugin_abi::protocol::{TlsRefusal, TransportInfo};
use tiberius::{Config, EncryptionLevel};

use crate::error::{Error, Result};
use crate::prelogin::Offer;

/// TLS as the instance's config sets it, in the MySQL engine's words:
/// `tls = "off" | "trust" | "verify-ca" | "on"`, absent = preferred, and
/// `tls_ca` (a PEM file) for the two verifying modes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Only the login packet is encrypted (TDS always encrypts the login
    /// when the server can); its certificate is not checked, and every
    /// packet after the login crosses in clear.
    Off,
    /// Everything encrypted when the server offers it, the certificate not
    /// checked (MySQL's `preferred`). The default.
    Preferred,
    /// Everything encrypted; the certificate is accepted as presented
    /// (`TrustServerCertificate=true`).
    Trust,
    /// Everything encrypted; the certificate must chain to `tls_ca` (or the
    /// system roots). tiberius checks the host name too: it cannot check
    /// one without the other, so this is as strict as `On`.
    VerifyCa(Option<String>),
    /// Everything encrypted; the certificate must chain to `tls_ca` (or the
    /// system roots) and name the host.
    On(Option<String>),
}

impl Tls {
    /// Reads `options["tls"]` and `options["tls_ca"]`.
    pub fn from_options(options: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let ca = options
            .get("tls_ca")
            .or_else(|| options.get("tls_ca_file"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let mode = match options.get("tls").and_then(|v| v.as_str()) {
            None | Some("" | "preferred") => Tls::Preferred,
            Some("off") => Tls::Off,
            Some("trust") => Tls::Trust,
            Some("verify-ca") => Tls::VerifyCa(ca.clone()),
            Some("on") => Tls::On(ca.clone()),
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "tls = {other:?} is not one of \"off\", \"trust\", \"verify-ca\", \"on\" (absent: preferred)"
                )))
            }
        };
        if ca.is_some() && !matches!(mode, Tls::VerifyCa(_) | Tls::On(_)) {
            return Err(Error::Invalid(
                "tls_ca is only used with tls = \"verify-ca\" or \"on\"".into(),
            ));
        }
        // A client certificate the DBA configured must not go unsent unnoticed.
        if ["tls_cert", "tls_key"].iter().any(|key| options.contains_key(*key)) {
            return Err(Error::Invalid(
                "tls_cert/tls_key: the SQL Server engine cannot present a client certificate \
                 (tiberius logs in with SQL authentication only); remove them from this instance"
                    .into(),
            ));
        }
        Ok(mode)
    }
}

impl Tls {
    /// The mode's word, as configured.
    pub fn as_str(&self) -> &'static str {
        match self {
            Tls::Off => "off",
            Tls::Preferred => "preferred",
            Tls::Trust => "trust",
            Tls::VerifyCa(_) => "verify-ca",
            Tls::On(_) => "on",
        }
    }

    /// How the certificate is checked, in [`TransportInfo::verified`]'s
    /// words. tiberius checks the name whenever it checks the chain.
    fn verified(&self) -> &'static str {
        match self {
            Tls::VerifyCa(_) | Tls::On(_) => "ca-and-host",
            _ => "none",
        }
    }

    /// Sets which certificates tiberius trusts.
    pub fn trust(&self, config: &mut Config) -> Result<()> {
        match self {
            Tls::Off | Tls::Preferred | Tls::Trust => config.trust_cert(),
            Tls::VerifyCa(ca) | Tls::On(ca) => {
                if let Some(ca) = ca {
                    if !std::path::Path::new(ca).is_file() {
                        return Err(Error::Invalid(format!("tls_ca {ca:?} is not a readable file")));
                    }
                    config.trust_cert_ca(ca);
                }
            }
        }
        Ok(())
    }

    /// What to ask the server for in the PRELOGIN probe.
    pub fn asks(&self) -> Offer {
        match self {
            Tls::Off => Offer::Off,
            Tls::Preferred => Offer::On,
            _ => Offer::Required,
        }
    }

    /// The encryption level tiberius is to ask for, given the server's
    /// `answer` to [`Tls::asks`], or why this mode cannot log in there.
    /// tiberius left to itself would encrypt an `off` login fully where the
    /// server requires it, and try TLS on a server that offers none.
    pub fn settle(&self, answer: Offer) -> std::result::Result<Settled, (TlsRefusal, String)> {
        let plaintext = Settled {
            level: EncryptionLevel::NotSupported,
            encrypted: false,
        };
        match (self, answer) {
            (Tls::Off, Offer::Off) => Ok(Settled {
                level: EncryptionLevel::Off,
                encrypted: false,
            }),
            (Tls::Off, Offer::NotSupported) => Ok(plaintext),
            (Tls::Off, Offer::On | Offer::Required) => Err((
                TlsRefusal::Required,
                "tls = \"off\", but the server requires encryption (SQL Server's Force Encryption, \
                 Babelfish's babelfishpg_tds.tds_ssl_encrypt): use tls = \"trust\", \"verify-ca\" or \"on\""
                    .into(),
            )),
            (Tls::Preferred, Offer::On | Offer::Required) => Ok(Settled {
                level: EncryptionLevel::On,
                encrypted: true,
            }),
            (Tls::Preferred, Offer::Off | Offer::NotSupported) => Ok(plaintext),
            (_, Offer::On | Offer::Required) => Ok(Settled {
                level: EncryptionLevel::Required,
                encrypted: true,
            }),
            (_, Offer::Off | Offer::NotSupported) => Err((
                TlsRefusal::NotOffered,
                format!(
                    "tls = \"{}\" requires encryption, but the server offers none (it answered {answer:?} \
                     to a request for encryption)",
                    self.as_str()
                ),
            )),
        }
    }

    /// How this instance's connections travel once settled.
    pub fn transport(&self, settled: Settled) -> TransportInfo {
        TransportInfo {
            mode: self.as_str().into(),
            encrypted: settled.encrypted,
            tls_version: None,
            verified: if settled.encrypted { self.verified() } else { "none" }.into(),
        }
    }
}

/// The encryption every connection of a pool asks tiberius for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    /// What tiberius sends in its own PRELOGIN.
    pub level: EncryptionLevel,
    /// Whether everything after the login is encrypted (`Off` encrypts
    /// the login alone).
    pub encrypted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(tls: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        if let Some(tls) = tls {
            map.insert("tls".into(), tls.into());
        }
        map
    }

    #[test]
    fn tls_modes_parse() {
        assert_eq!(Tls::from_options(&options(None)).ok(), Some(Tls::Preferred));
        assert_eq!(Tls::from_options(&options(Some("off"))).ok(), Some(Tls::Off));
        assert_eq!(Tls::from_options(&options(Some("on"))).ok(), Some(Tls::On(None)));
        assert_eq!(
            Tls::from_options(&options(Some("verify-ca"))).ok(),
            Some(Tls::VerifyCa(None))
        );
        assert_eq!(Tls::from_options(&options(Some("trust"))).ok(), Some(Tls::Trust));
        assert!(Tls::from_options(&options(Some("maybe"))).is_err());
        let mut with_ca = options(Some("on"));
        with_ca.insert("tls_ca".into(), "/ca.pem".into());
        assert_eq!(Tls::from_options(&with_ca).ok(), Some(Tls::On(Some("/ca.pem".into()))));
        let mut stray_ca = options(Some("trust"));
        stray_ca.insert("tls_ca".into(), "/ca.pem".into());
        assert!(Tls::from_options(&stray_ca).is_err(), "tls_ca without a verifying mode");
        let mut client_cert = options(Some("on"));
        client_cert.insert("tls_cert".into(), "/client.pem".into());
        assert!(
            Tls::from_options(&client_cert).is_err(),
            "a client certificate cannot be sent"
        );
    }

    #[test]
    fn each_mode_is_kept_or_refused_by_what_the_server_answers() {
        use Offer::*;
        let outcome = |tls: Tls, answer| match tls.settle(answer) {
            Ok(settled) => Ok((settled.level, settled.encrypted)),
            Err((refusal, _)) => Err(refusal),
        };
        assert_eq!(outcome(Tls::Off, Off), Ok((EncryptionLevel::Off, false)));
        assert_eq!(
            outcome(Tls::Off, NotSupported),
            Ok((EncryptionLevel::NotSupported, false))
        );
        assert_eq!(outcome(Tls::Off, Required), Err(TlsRefusal::Required));
        assert_eq!(outcome(Tls::Preferred, On), Ok((EncryptionLevel::On, true)));
        assert_eq!(
            outcome(Tls::Preferred, NotSupported),
            Ok((EncryptionLevel::NotSupported, false))
        );
        assert_eq!(outcome(Tls::Trust, On), Ok((EncryptionLevel::Required, true)));
        assert_eq!(outcome(Tls::On(None), NotSupported), Err(TlsRefusal::NotOffered));
        assert_eq!(outcome(Tls::VerifyCa(None), Off), Err(TlsRefusal::NotOffered));
    }
}
