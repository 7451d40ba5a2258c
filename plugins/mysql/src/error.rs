//! The plugin's errors and how they cross the boundary.

use dbferry_plugin_abi::protocol::{ErrorKind, PluginError};

/// Server error codes the plugin reacts to.
pub mod code {
    /// ER_DBACCESS_DENIED_ERROR.
    pub const DB_ACCESS_DENIED: u16 = 1044;
    /// ER_ACCESS_DENIED_ERROR.
    pub const ACCESS_DENIED: u16 = 1045;
    /// ER_ACCESS_DENIED_NO_PASSWORD_ERROR.
    pub const ACCESS_DENIED_NO_PASSWORD: u16 = 1698;
    /// ER_TABLE_EXISTS_ERROR.
    pub const TABLE_EXISTS: u16 = 1050;
    /// ER_DUP_KEYNAME.
    pub const DUP_KEYNAME: u16 = 1061;
    /// ER_BAD_DB_ERROR.
    pub const BAD_DB: u16 = 1049;
    /// ER_NO_SUCH_TABLE.
    pub const NO_SUCH_TABLE: u16 = 1146;
    /// ER_TABLEACCESS_DENIED_ERROR.
    pub const TABLE_ACCESS_DENIED: u16 = 1142;
    /// ER_SPECIFIC_ACCESS_DENIED_ERROR.
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    /// ER_PROCACCESS_DENIED_ERROR.
    pub const PROC_ACCESS_DENIED: u16 = 1370;
    /// ER_NO_SUCH_USER (definer missing).
    pub const NO_SUCH_USER: u16 = 1449;
    /// ER_BINLOG_CREATE_ROUTINE_NEED_SUPER.
    pub const ROUTINE_NEED_SUPER: u16 = 1419;
    /// ER_KILL_DENIED_ERROR / ER_SPECIFIC_ACCESS_DENIED on MySQL 8 (SET_USER_ID).
    pub const SET_USER_DENIED: u16 = 1095;
    /// MySQL 8: Access denied; you need (at least one of) the SUPER or SET_USER_ID privilege.
    pub const NEED_SET_USER_ID: u16 = 3530;
    /// ER_UNKNOWN_CHARACTER_SET.
    pub const UNKNOWN_CHARACTER_SET: u16 = 1115;
    /// ER_COLLATION_CHARSET_MISMATCH.
    pub const COLLATION_CHARSET_MISMATCH: u16 = 1253;
    /// ER_UNKNOWN_COLLATION.
    pub const UNKNOWN_COLLATION: u16 = 1273;
    /// ER_NO_SUCH_THREAD: the session named by `KILL` no longer exists.
    pub const NO_SUCH_THREAD: u16 = 1094;
}

/// What went wrong inside the plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect or log in.
    #[error("cannot connect to {instance}: {message}")]
    Connect {
        /// The instance id.
        instance: String,
        /// Why.
        message: String,
        /// The server's error code, when the server refused.
        server_code: Option<u16>,
    },
    /// A TLS connection was refused: the certificate, or TLS on one side only.
    #[error("instance {instance}: {message}")]
    Tls {
        /// The instance id.
        instance: String,
        /// Which refusal.
        refusal: crate::tls::Refusal,
        /// Expected and found.
        message: String,
    },
    /// A statement failed.
    #[error("{context}: {source}")]
    Sql {
        /// What the plugin was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// A statement failed on a [`crate::wire`] connection.
    #[error("{context}: {source}")]
    Wire {
        /// What the plugin was doing.
        context: String,
        /// The server's error.
        #[source]
        source: crate::wire::ServerError,
    },
    /// The target refused or would have altered data.
    #[error("{0}")]
    Data(String),
    /// A target object already exists.
    #[error("{0}")]
    Conflict(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Not possible with this server.
    #[error("{0}")]
    Unsupported(String),
    /// The request made no sense.
    #[error("{0}")]
    Invalid(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// A result with the plugin's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The server error code, when the server raised the error.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            Error::Sql {
                source: mysql_async::Error::Server(e),
                ..
            } => Some(e.code),
            Error::Wire { source, .. } => Some(source.code),
            Error::Connect { server_code, .. } => *server_code,
            _ => None,
        }
    }

    /// Whether the server refused for lack of a privilege.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self.server_code(),
            Some(
                code::DB_ACCESS_DENIED
                    | code::ACCESS_DENIED
                    | code::TABLE_ACCESS_DENIED
                    | code::SPECIFIC_ACCESS_DENIED
                    | code::PROC_ACCESS_DENIED
                    | code::ROUTINE_NEED_SUPER
                    | code::NEED_SET_USER_ID
            )
        )
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Error::Connect { .. } | Error::Tls { .. } => ErrorKind::Connect,
            Error::Data(_) => ErrorKind::Data,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Invalid(_) => ErrorKind::InvalidRequest,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Sql {
                source: mysql_async::Error::Io(_),
                ..
            } => ErrorKind::Connect,
            Error::Sql { .. } | Error::Wire { .. } => match self.server_code() {
                _ if self.is_access_denied() => ErrorKind::Access,
                Some(code::BAD_DB | code::NO_SUCH_TABLE) => ErrorKind::NotFound,
                Some(code::TABLE_EXISTS) => ErrorKind::Conflict,
                // Out of range, truncated, incorrect value, too long.
                Some(1264 | 1265 | 1292 | 1366 | 1406 | 1411 | 1416 | 4025 | 3140) => ErrorKind::Data,
                _ => ErrorKind::Query,
            },
        }
    }

    /// Says what the plugin was doing when a [`crate::wire`] call failed.
    pub fn during(self, context: impl FnOnce() -> String) -> Self {
        match self {
            Error::Wire { source, .. } => Error::Wire {
                context: context(),
                source,
            },
            Error::Internal(message) => Error::Internal(format!("{}: {message}", context())),
            other => other,
        }
    }
}

impl From<Error> for PluginError {
    fn from(error: Error) -> Self {
        let kind = error.kind();
        let mut out = PluginError::new(kind, error.to_string());
        match &error {
            Error::Conflict(_) => out = out.with_code("InvalidDBName.Exists"),
            Error::Tls { refusal, .. } => out = out.with_code(refusal.code()),
            Error::Connect {
                instance,
                message,
                server_code: Some(code::ACCESS_DENIED | code::DB_ACCESS_DENIED | code::ACCESS_DENIED_NO_PASSWORD),
            } => {
                out = PluginError::new(
                    ErrorKind::Access,
                    format!(
                        "instance {instance} refused the login of the configured account: {message} \
                         (check the user and password, and that the account may connect from this host)"
                    ),
                )
                .with_code(ACCESS_DENIED_CODE)
            }
            Error::Sql { .. } | Error::Wire { .. } if error.is_access_denied() => {
                out = out.with_code(MISSING_PRIVILEGE_CODE)
            }
            _ => {}
        }
        out
    }
}

/// The contract code of a refused login.
pub const ACCESS_DENIED_CODE: &str = "IncorrectDBInstanceAccount.AccessDenied";
/// The contract code of a statement refused for lack of a privilege.
pub const MISSING_PRIVILEGE_CODE: &str = "IncorrectDBInstanceAccount.MissingPrivilege";

/// ER_SECURE_TRANSPORT_REQUIRED on MySQL (3159) and MariaDB (4036).
const SECURE_TRANSPORT_REQUIRED: [u16; 2] = [3159, 4036];

/// A failed login as the plugin reports it: the TLS refusals by name,
/// anything else as [`Error::Connect`].
pub fn connect_error(instance: &str, mode: crate::tls::TlsMode, e: mysql_async::Error) -> Error {
    use crate::tls::Refusal;
    let tls = |refusal: Refusal, message: String| Error::Tls {
        instance: instance.to_string(),
        refusal,
        message,
    };
    match &e {
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            return tls(
                Refusal::NotOffered,
                format!(
                    "tls = \"{}\" requires TLS, but the server does not offer it",
                    mode.as_str()
                ),
            )
        }
        mysql_async::Error::Server(s) if SECURE_TRANSPORT_REQUIRED.contains(&s.code) => {
            return tls(
                Refusal::Required,
                format!(
                    "tls = \"{}\", but the server requires TLS (require_secure_transport): {}",
                    mode.as_str(),
                    s.message
                ),
            )
        }
        _ => {}
    }
    if let Some(refused) = crate::tls::rustls_error(&e).and_then(|t| certificate_refusal(mode, t)) {
        return tls(Refusal::Unverified, refused);
    }
    if let mysql_async::Error::Driver(mysql_async::DriverError::UnknownAuthPlugin { name }) = &e {
        // MySQL 8+/9 answers some refused logins (a wrong password whose
        // account is not in caching_sha2_password's cache) by switching to
        // sha256_password, which the driver does not speak: that is a
        // refused login far more often than an account on that plugin.
        return Error::Connect {
            instance: instance.to_string(),
            message: format!(
                "the server switched the login to the {name} authentication plugin, which dbferry does not speak; \
                 MySQL does so when it refuses the password or the account (or for an account created WITH {name})"
            ),
            server_code: Some(code::ACCESS_DENIED),
        };
    }
    Error::Connect {
        instance: instance.to_string(),
        message: e.to_string(),
        server_code: match &e {
            mysql_async::Error::Server(s) => Some(s.code),
            _ => None,
        },
    }
}

/// Says what was expected of the certificate and what was found.
pub fn certificate_refusal(mode: crate::tls::TlsMode, e: &tokio_rustls::rustls::Error) -> Option<String> {
    use tokio_rustls::rustls::{CertificateError, Error as TlsError};
    let TlsError::InvalidCertificate(cert) = e else {
        return None;
    };
    let expected = match mode {
        crate::tls::TlsMode::On => "chains to the trusted CA and names the host",
        _ => "chains to the trusted CA",
    };
    let mut message = format!(
        "tls = \"{}\" expects a server certificate that {expected}, but the server's was refused: {cert}",
        mode.as_str()
    );
    // Under verify-ca mysql_async is meant to skip the name check
    // (tls::VERIFY_CA_SERVER_NAME); a name refusal there means the TLS
    // library's wording moved under it.
    if mode == crate::tls::TlsMode::VerifyCa
        && matches!(
            cert,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    {
        message.push_str(
            " (the chain verified, but mysql_async still checked the host name, see \
             blackbeam/mysql_async#404 and dbferry_mysql::tls::VERIFY_CA_SERVER_NAME: \
             use tls = \"trust\" until this dbferry build is fixed)",
        );
    }
    Some(message)
}

/// Adds context to driver errors.
pub trait Context<T> {
    /// Wraps the driver error with what the plugin was doing.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, mysql_async::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sql {
            context: context(),
            source,
        })
    }
}

impl From<dbferry_plugin_sdk::range::KeyArityError> for Error {
    fn from(e: dbferry_plugin_sdk::range::KeyArityError) -> Self {
        Error::Invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_carry_the_contract_code() {
        let e: PluginError = Error::Conflict("table `t` exists".into()).into();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.code.as_deref(), Some("InvalidDBName.Exists"));
        let e: PluginError = Error::Data("bad".into()).into();
        assert_eq!(e.kind, ErrorKind::Data);
        assert_eq!(e.code, None);
    }
}
