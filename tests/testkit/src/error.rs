//! The harness's error type.

use std::fmt;

/// Why a harness operation failed. Carries enough context (command, stderr,
/// server log tail) to diagnose the failure from a test's panic message.
#[derive(Debug)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// An I/O error with what was being done.
    pub fn io(what: impl fmt::Display, error: std::io::Error) -> Self {
        Self::new(format!("{what}: {error}"))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
