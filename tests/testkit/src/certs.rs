//! Certificates for TLS tests: a CA, a server certificate it signs for the
//! names a test chooses, and a second CA that signed nothing (the "wrong CA").

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::error::Error;

/// PEM files in a private directory, removed on drop.
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// A CA and a server certificate naming `names` (host names or IP
    /// addresses; an empty list gives a certificate without any).
    ///
    /// # Panics
    /// If the files cannot be made or written.
    pub fn make(names: &[&str]) -> Self {
        match Self::try_make(names) {
            Ok(certs) => certs,
            Err(e) => panic!("dbferry-testkit: cannot make test certificates: {e}"),
        }
    }

    fn try_make(names: &[&str]) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("dbferry-certs-")
            .tempdir()
            .map_err(|e| Error::io("creating a certificate directory", e))?;
        let fail = |e: rcgen::Error| Error::new(format!("rcgen: {e}"));
        let ca = |cn: &str| -> Result<(rcgen::Certificate, KeyPair), Error> {
            let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().map_err(fail)?;
            Ok((params.self_signed(&key).map_err(fail)?, key))
        };
        let (ca_cert, ca_key) = ca("dbferry test CA")?;
        let (wrong_ca, _) = ca("dbferry unrelated CA")?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).map_err(fail)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "dbferry test server");
        let key = KeyPair::generate().map_err(fail)?;
        let server = params.signed_by(&key, &ca_cert, &ca_key).map_err(fail)?;
        for (file, text) in [
            ("ca.pem", ca_cert.pem()),
            ("wrong-ca.pem", wrong_ca.pem()),
            ("server-cert.pem", server.pem()),
            ("server-key.pem", key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(file), text).map_err(|e| Error::io("writing a certificate", e))?;
        }
        Ok(Self { dir })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    /// A CA that signed nothing here.
    pub fn wrong_ca(&self) -> PathBuf {
        self.file("wrong-ca.pem")
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `mariadbd` options that serve this certificate.
    pub fn server_options(&self) -> Vec<String> {
        vec![
            format!("--ssl-ca={}", self.ca().display()),
            format!("--ssl-cert={}", self.file("server-cert.pem").display()),
            format!("--ssl-key={}", self.file("server-key.pem").display()),
        ]
    }
}
