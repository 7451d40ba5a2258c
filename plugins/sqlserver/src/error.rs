//! The plugin's errors and how they cross the boundary.

use dbferry_plugin_abi::protocol::{ErrorKind, PluginError};

/// SQL Server error numbers the plugin reacts to.
pub mod code {
    /// Login failed for user.
    pub const LOGIN_FAILED: u32 = 18456;
    /// Cannot open database requested by the login.
    pub const CANNOT_OPEN_DB: u32 = 4060;
    /// Permission denied on an object.
    pub const PERMISSION_DENIED: u32 = 229;
    /// Permission denied in a database (CREATE TABLE and so on).
    pub const PERMISSION_DENIED_DB: u32 = 262;
    /// CREATE DATABASE permission denied.
    pub const CREATE_DB_DENIED: u32 = 1807;
    /// The server principal is not able to access the database.
    pub const NO_DB_ACCESS: u32 = 916;
    /// Database does not exist.
    pub const NO_SUCH_DB: u32 = 911;
    /// Invalid object name.
    pub const NO_SUCH_OBJECT: u32 = 208;
    /// There is already an object named ... in the database.
    pub const OBJECT_EXISTS: u32 = 2714;
    /// Database already exists.
    pub const DB_EXISTS: u32 = 1801;
    /// Violation of PRIMARY KEY / UNIQUE constraint.
    pub const DUPLICATE_KEY: u32 = 2627;
    /// Cannot insert duplicate key row (unique index).
    pub const DUPLICATE_ROW: u32 = 2601;
    /// Cannot insert NULL.
    pub const NULL_VIOLATION: u32 = 515;
    /// String or binary data would be truncated.
    pub const TRUNCATION: u32 = 8152;
    /// String or binary data would be truncated (2019+ message).
    pub const TRUNCATION_2019: u32 = 2628;
    /// Arithmetic overflow.
    pub const OVERFLOW: u32 = 8115;
    /// Conversion failed.
    pub const CONVERSION: u32 = 245;
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
    },
    /// The `tls` mode and the server disagree: a certificate that does not
    /// verify, no TLS where the mode requires it, or TLS required where the
    /// mode is `off`. The contract's `IncorrectDBInstanceTls.*`.
    #[error("cannot connect to {instance}: {message}")]
    Tls {
        /// The instance id.
        instance: String,
        /// Which of the contract's refusals.
        refusal: dbferry_plugin_abi::protocol::TlsRefusal,
        /// What was expected and what was found.
        message: String,
    },
    /// The server refused the configured login (wrong password, unknown
    /// or disabled login): the contract's
    /// `IncorrectDBInstanceAccount.AccessDenied`, as on MySQL.
    #[error(
        "instance {instance} refused the login of the configured account: {message} \
         (check the user and password, and that the login is enabled)"
    )]
    LoginRefused {
        /// The instance id.
        instance: String,
        /// What the server said.
        message: String,
    },
    /// A statement failed.
    #[error("{context}: {source}")]
    Sql {
        /// What the plugin was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: tiberius::error::Error,
    },
    /// A statement on a Babelfish target's PostgreSQL port failed
    /// ([`crate::pgload`]).
    #[error("{context}: {}", crate::pgload::chain(source))]
    Postgres {
        /// What the plugin was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
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
    /// Stopped by `Request::Interrupt` (the import is being cancelled).
    #[error("{0} was interrupted: the import is being cancelled")]
    Interrupted(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// A result with the plugin's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The server's error number, when the server raised the error.
    pub fn server_code(&self) -> Option<u32> {
        match self {
            Error::Sql {
                source: tiberius::error::Error::Server(e),
                ..
            } => Some(e.code()),
            _ => None,
        }
    }

    /// The class of a server error number.
    pub fn kind_of_code(number: u32) -> ErrorKind {
        match number {
            code::LOGIN_FAILED => ErrorKind::Connect,
            code::PERMISSION_DENIED | code::PERMISSION_DENIED_DB | code::CREATE_DB_DENIED | code::NO_DB_ACCESS => {
                ErrorKind::Access
            }
            code::NO_SUCH_DB | code::NO_SUCH_OBJECT | code::CANNOT_OPEN_DB => ErrorKind::NotFound,
            code::OBJECT_EXISTS | code::DB_EXISTS => ErrorKind::Conflict,
            code::DUPLICATE_KEY
            | code::DUPLICATE_ROW
            | code::NULL_VIOLATION
            | code::TRUNCATION
            | code::TRUNCATION_2019
            | code::OVERFLOW
            | code::CONVERSION => ErrorKind::Data,
            _ => ErrorKind::Query,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Error::Connect { .. } | Error::Tls { .. } => ErrorKind::Connect,
            Error::LoginRefused { .. } => ErrorKind::Access,
            Error::Data(_) => ErrorKind::Data,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Invalid(_) => ErrorKind::InvalidRequest,
            Error::Internal(_) | Error::Interrupted(_) => ErrorKind::Internal,
            Error::Sql { source, .. } => match source {
                tiberius::error::Error::Server(e) => Self::kind_of_code(e.code()),
                tiberius::error::Error::Io { .. } | tiberius::error::Error::Tls(_) => ErrorKind::Connect,
                _ => ErrorKind::Query,
            },
            Error::Postgres { source, .. } => postgres_kind(source),
        }
    }
}

/// The class of an error on the PostgreSQL port: no server answer (a
/// closed or broken connection) is a connection error, as an I/O error is
/// on TDS; the server's SQLSTATE classes the rest.
fn postgres_kind(e: &tokio_postgres::Error) -> ErrorKind {
    let Some(db) = e.as_db_error() else {
        return ErrorKind::Connect;
    };
    match db.code().code() {
        "42501" => ErrorKind::Access,
        "42P01" | "3D000" => ErrorKind::NotFound,
        code if code.starts_with("08") || code.starts_with("57P") => ErrorKind::Connect,
        code if code.starts_with("22") || code.starts_with("23") => ErrorKind::Data,
        code if code.starts_with("28") => ErrorKind::Access,
        _ => ErrorKind::Query,
    }
}

impl Error {
    /// Wraps a PostgreSQL-port error with what the plugin was doing.
    pub fn postgres(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let context = context.into();
        move |source| Error::Postgres { context, source }
    }
}

impl From<Error> for PluginError {
    fn from(error: Error) -> Self {
        let kind = error.kind();
        let mut out = PluginError::new(kind, error.to_string());
        match error {
            Error::Conflict(_) => out = out.with_code("InvalidDBName.Exists"),
            Error::Tls { refusal, .. } => out = out.with_code(refusal.code()),
            Error::LoginRefused { .. } => out = out.with_code("IncorrectDBInstanceAccount.AccessDenied"),
            _ => {}
        }
        out
    }
}

/// Adds context to driver errors.
pub trait Context<T> {
    /// Wraps the driver error with what the plugin was doing.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, tiberius::error::Error> {
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
        let e: PluginError = Error::Conflict("database [d] exists and is not empty".into()).into();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.code.as_deref(), Some("InvalidDBName.Exists"));
        let e: PluginError = Error::Data("bad".into()).into();
        assert_eq!(e.kind, ErrorKind::Data);
        assert_eq!(e.code, None);
    }

    #[test]
    fn a_lost_postgres_connection_is_a_connection_error() {
        // No server answer at all: tokio-postgres's error for a closed
        // connection has no SQLSTATE, like an I/O error on TDS.
        let port = crate::test_support::closed_port();
        let refused = crate::conn::runtime().expect("runtime").block_on(async {
            tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=u"), tokio_postgres::NoTls).await
        });
        let error = refused.err().map(Error::postgres("connecting"));
        assert_eq!(error.as_ref().map(Error::kind), Some(ErrorKind::Connect), "{error:?}");
    }

    #[test]
    fn server_numbers_map_to_kinds() {
        assert_eq!(Error::kind_of_code(code::LOGIN_FAILED), ErrorKind::Connect);
        assert_eq!(Error::kind_of_code(code::CREATE_DB_DENIED), ErrorKind::Access);
        assert_eq!(Error::kind_of_code(code::DUPLICATE_KEY), ErrorKind::Data);
        assert_eq!(Error::kind_of_code(code::OBJECT_EXISTS), ErrorKind::Conflict);
        assert_eq!(Error::kind_of_code(50000), ErrorKind::Query);
    }
}
