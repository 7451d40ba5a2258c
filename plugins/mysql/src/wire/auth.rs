//! Authentication plugins the wire client speaks: `mysql_native_password`
//! (MariaDB's default) and `caching_sha2_password` (MySQL 8.0+'s), whose
//! full authentication sends the password either in the clear over TLS or
//! RSA-encrypted with the server's public key.

use crate::error::{Error, Result};

/// An authentication plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AuthPlugin {
    /// SHA-1 challenge and response.
    Native,
    /// SHA-256 challenge and response, from the server's cache; else full
    /// authentication.
    CachingSha2,
}

/// caching_sha2_password's AuthMoreData status: the cache had the account.
pub(super) const FAST_AUTH_OK: u8 = 3;
/// caching_sha2_password's AuthMoreData status: full authentication needed.
pub(super) const FULL_AUTH: u8 = 4;
/// The client's request for the server's RSA public key.
pub(super) const REQUEST_PUBLIC_KEY: u8 = 2;

impl AuthPlugin {
    /// The plugin of this name, if the client speaks it.
    pub(super) fn named(name: &str) -> Option<Self> {
        match name {
            "mysql_native_password" => Some(AuthPlugin::Native),
            "caching_sha2_password" => Some(AuthPlugin::CachingSha2),
            _ => None,
        }
    }

    /// The plugin's name on the wire.
    pub(super) fn name(self) -> &'static str {
        match self {
            AuthPlugin::Native => "mysql_native_password",
            AuthPlugin::CachingSha2 => "caching_sha2_password",
        }
    }

    /// The first answer to the server's `seed`; empty for no password.
    pub(super) fn answer(self, password: &[u8], seed: &[u8]) -> Vec<u8> {
        let answer = match self {
            AuthPlugin::Native => Some(super::codec::native_password(password, seed)),
            AuthPlugin::CachingSha2 => mysql_common::scramble::scramble_sha256(seed, password).map(|a| a.to_vec()),
        };
        answer.unwrap_or_default()
    }
}

/// The password for full authentication without TLS: NUL-terminated,
/// XORed with the seed and RSA-OAEP encrypted with the server's key (PEM).
pub(super) fn encrypt_password(password: &[u8], seed: &[u8], pem: &[u8]) -> Result<Vec<u8>> {
    if seed.is_empty() {
        return Err(Error::Unsupported("caching_sha2_password without a seed".into()));
    }
    let mut block: Vec<u8> = password.iter().chain(std::iter::once(&0)).copied().collect();
    for (i, b) in block.iter_mut().enumerate() {
        *b ^= seed[i % seed.len()];
    }
    // mysql_common panics on a key it cannot parse; the key comes from the
    // network, so that becomes an error.
    std::panic::catch_unwind(|| mysql_common::crypto::encrypt(&block, pem))
        .map_err(|_| Error::Unsupported("the server's RSA public key could not be read".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugins_answer_with_their_own_digests() {
        let seed = b"01234567890123456789";
        assert_eq!(AuthPlugin::Native.answer(b"pw", seed).len(), 20);
        assert_eq!(AuthPlugin::CachingSha2.answer(b"pw", seed).len(), 32);
        assert!(AuthPlugin::CachingSha2.answer(b"", seed).is_empty());
        assert_eq!(
            AuthPlugin::named("caching_sha2_password"),
            Some(AuthPlugin::CachingSha2)
        );
        assert_eq!(AuthPlugin::named("ed25519"), None);
    }

    #[test]
    fn a_key_that_is_not_a_key_is_an_error_not_a_panic() {
        assert!(encrypt_password(b"pw", b"seed", b"not a key").is_err());
    }
}
