//! Secrets: read from a private file or an environment variable, never inline.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::fields::Fields;
use crate::codes::ErrorCode;

/// Where a secret comes from. Its value is read only when needed, and never
/// printed (`Debug` shows the source, not the value).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A file readable by its owner only.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::File(path) => write!(f, "Secret::File({})", path.display()),
            Secret::Env(var) => write!(f, "Secret::Env({var})"),
        }
    }
}

impl Secret {
    /// Reads the secret, without a trailing newline.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::File(path) => {
                check_private(path)?;
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
                Ok(text.trim_end_matches(['\n', '\r']).to_string())
            }
            Secret::Env(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set")),
        }
    }
}

/// Refuses a secret file that its group or others can read.
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "secret file {} is accessible by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

/// Reads exactly one of `file_key` / `env_key`, and checks it now so
/// `dbferry validate` reports an unreadable or exposed secret.
pub(super) fn read_choice(
    f: &mut Fields<'_, '_>,
    (file_key, env_key): (&'static str, &'static str),
    at: Option<Range<usize>>,
    required: bool,
) -> Option<Secret> {
    let file = f.non_empty(file_key, false);
    let env = f.non_empty(env_key, false);
    match (file, env) {
        (Some(_), Some(env)) => {
            f.error(
                env.span,
                ErrorCode::InvalidParameter,
                format!("set only one of `{file_key}` and `{env_key}`"),
            );
            None
        }
        (Some(file), None) => {
            let secret = Secret::File(f.base_dir().join(&file.value));
            if let Err(message) = secret.read() {
                f.error(file.span, ErrorCode::InvalidParameter, message);
                return None;
            }
            Some(secret)
        }
        (None, Some(env)) => {
            let secret = Secret::Env(env.value.clone());
            if let Err(message) = secret.read() {
                f.error(env.span, ErrorCode::InvalidParameter, message);
                return None;
            }
            Some(secret)
        }
        (None, None) => {
            if required {
                f.error(
                    at,
                    ErrorCode::MissingParameter,
                    format!("missing `{file_key}` (or `{env_key}`)"),
                );
            }
            None
        }
    }
}
