//! The contract's error codes (CONTRACT §5) and what a rejection carries.

use std::fmt;

use serde::{Serialize, Serializer};

/// Every code a rejection or failure can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A required parameter or key is absent.
    MissingParameter,
    /// A value of the wrong type or form.
    InvalidParameter,
    /// Rule 1: source and target are the same instance.
    SameInstance,
    /// Rule 7: DBInfo is not JSON or has the wrong shape.
    InvalidDbInfoFormat,
    /// Rule 7: a repeated source or destination name.
    DbNameDuplicate,
    /// Rule 2: unknown instance, or one of another owner.
    InstanceNotFound,
    /// Rules 3 and 4.
    IncorrectInstanceType,
    /// Rule 5.
    IncorrectInstanceState,
    /// Rule 6: a database missing or offline.
    DbNameNotFound,
    /// Rule 6: a destination that exists and is not empty (or, for MySQL,
    /// target tables that exist while `existing_tables = "fail"`).
    DbNameExists,
    /// The server's certificate does not verify, or does not name the host.
    TlsUnverified,
    /// The instance's `tls` mode requires TLS and the server offers none.
    TlsNotOffered,
    /// The server requires TLS and the instance's `tls` is `off`.
    TlsRequired,
    /// The instance refused the configured login (wrong password, unknown
    /// account, or no grant on what it must reach).
    AccountAccessDenied,
    /// The account lacks a privilege the import needs; the message names it.
    AccountMissingPrivilege,
    /// Rule 8.
    IncorrectLockMode,
    /// Rule 9.
    InsufficientStorage,
    /// Unknown AccessKeyId.
    AccessKeyNotFound,
    /// Bad signature.
    SignatureDoesNotMatch,
    /// A replayed nonce.
    SignatureNonceUsed,
    /// Timestamp outside ±15 minutes.
    TimestampExpired,
    /// Anything else.
    InternalError,
}

impl ErrorCode {
    /// The code as the API and `run` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingParameter => "MissingParameter",
            ErrorCode::InvalidParameter => "InvalidParameter",
            ErrorCode::SameInstance => "InvalidParameter.SameInstance",
            ErrorCode::InvalidDbInfoFormat => "InvalidDBInfo.Format",
            ErrorCode::DbNameDuplicate => "InvalidDBName.Duplicate",
            ErrorCode::InstanceNotFound => "InvalidDBInstanceId.NotFound",
            ErrorCode::IncorrectInstanceType => "IncorrectDBInstanceType",
            ErrorCode::IncorrectInstanceState => "IncorrectDBInstanceState",
            ErrorCode::DbNameNotFound => "InvalidDBName.NotFound",
            ErrorCode::DbNameExists => "InvalidDBName.Exists",
            ErrorCode::TlsUnverified => "IncorrectDBInstanceTls.Unverified",
            ErrorCode::TlsNotOffered => "IncorrectDBInstanceTls.NotOffered",
            ErrorCode::TlsRequired => "IncorrectDBInstanceTls.Required",
            ErrorCode::AccountAccessDenied => "IncorrectDBInstanceAccount.AccessDenied",
            ErrorCode::AccountMissingPrivilege => "IncorrectDBInstanceAccount.MissingPrivilege",
            ErrorCode::IncorrectLockMode => "IncorrectDBInstanceLockMode",
            ErrorCode::InsufficientStorage => "InsufficientStorage",
            ErrorCode::AccessKeyNotFound => "InvalidAccessKeyId.NotFound",
            ErrorCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            ErrorCode::SignatureNonceUsed => "SignatureNonceUsed",
            ErrorCode::TimestampExpired => "InvalidTimeStamp.Expired",
            ErrorCode::InternalError => "InternalError",
        }
    }

    /// The refusal a plugin named by its contract code (TLS, or the
    /// account's access), if it is one.
    pub fn plugin_refusal(code: &str) -> Option<Self> {
        [
            ErrorCode::TlsUnverified,
            ErrorCode::TlsNotOffered,
            ErrorCode::TlsRequired,
            ErrorCode::AccountAccessDenied,
            ErrorCode::AccountMissingPrivilege,
        ]
        .into_iter()
        .find(|c| c.as_str() == code)
    }

    /// The HTTP status the API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MissingParameter
            | ErrorCode::InvalidParameter
            | ErrorCode::SameInstance
            | ErrorCode::InvalidDbInfoFormat
            | ErrorCode::DbNameDuplicate
            | ErrorCode::SignatureDoesNotMatch
            | ErrorCode::SignatureNonceUsed
            | ErrorCode::TimestampExpired => 400,
            ErrorCode::IncorrectInstanceType
            | ErrorCode::IncorrectInstanceState
            | ErrorCode::DbNameExists
            | ErrorCode::IncorrectLockMode
            | ErrorCode::TlsUnverified
            | ErrorCode::TlsNotOffered
            | ErrorCode::TlsRequired
            | ErrorCode::AccountAccessDenied
            | ErrorCode::AccountMissingPrivilege
            | ErrorCode::InsufficientStorage => 403,
            ErrorCode::InstanceNotFound | ErrorCode::DbNameNotFound | ErrorCode::AccessKeyNotFound => 404,
            ErrorCode::InternalError => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A refusal or failure with its code: what `run` prints as `error[CODE]: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("error[{code}]: {message}")]
pub struct Rejection {
    /// The contract code.
    pub code: ErrorCode,
    /// What is wrong.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
