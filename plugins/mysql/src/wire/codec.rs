//! The protocol's byte formats: the greeting, the password scramble,
//! length-encoded integers, text-protocol rows and error packets. Pure
//! functions, so every one is tested without a server.

use bytes::BytesMut;
use sha1::{Digest as _, Sha1};

use super::CLIENT_SECURE_CONNECTION;
use crate::encode::{push_escaped, push_null};
use crate::error::{Error, Result};

/// A server error, as the server sent it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ERROR {code} ({state}): {message}")]
pub struct ServerError {
    /// The error number.
    pub code: u16,
    /// The SQLSTATE.
    pub state: String,
    /// The message.
    pub message: String,
}

/// The parts of the server's greeting the login needs.
pub(super) struct Greeting {
    /// The server's id of this connection (`CONNECTION_ID()`).
    pub(super) connection_id: u32,
    pub(super) capabilities: u32,
    pub(super) scramble: Vec<u8>,
    /// The server's default authentication plugin (empty if it names none).
    pub(super) plugin: String,
}

impl Greeting {
    pub(super) fn parse(p: &[u8]) -> Result<Self> {
        if p.first() == Some(&0xFF) {
            return Err(server_error(p));
        }
        if p.first() != Some(&10) {
            return Err(Error::Unsupported("a server greeting other than protocol 10".into()));
        }
        let version_end = p.iter().position(|&b| b == 0).ok_or_else(malformed)?;
        let id = p.get(version_end + 1..version_end + 5).ok_or_else(malformed)?;
        let connection_id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        let mut at = version_end + 1 + 4;
        let part1 = p.get(at..at + 8).ok_or_else(malformed)?.to_vec();
        at += 8 + 1;
        let lower = u16::from_le_bytes([*p.get(at).ok_or_else(malformed)?, *p.get(at + 1).ok_or_else(malformed)?]);
        at += 2 + 1 + 2;
        let upper = match p.get(at..at + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]),
            None => 0,
        };
        let capabilities = u32::from(lower) | u32::from(upper) << 16;
        at += 2;
        let data_len = usize::from(p.get(at).copied().unwrap_or(0));
        at += 1 + 10;
        let mut scramble = part1;
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let part2_len = data_len.saturating_sub(8).max(13);
            let part2 = p.get(at..at + part2_len).ok_or_else(malformed)?;
            // The last byte of part 2 is a NUL terminator, not scramble.
            scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
            at += part2_len;
        }
        let rest = p.get(at..).unwrap_or_default();
        let plugin = rest.split(|&b| b == 0).next().unwrap_or_default();
        Ok(Greeting {
            connection_id,
            capabilities,
            scramble,
            plugin: String::from_utf8_lossy(plugin).into_owned(),
        })
    }
}

/// `mysql_native_password`: SHA1(password) XOR SHA1(seed + SHA1(SHA1(password))).
pub(super) fn native_password(password: &[u8], seed: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let once = Sha1::digest(password);
    let twice = Sha1::digest(once);
    let mut hasher = Sha1::new();
    hasher.update(seed);
    hasher.update(twice);
    let mask = hasher.finalize();
    once.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

/// A length-encoded integer at `*at`, which moves past it.
pub(super) fn lenenc(p: &[u8], at: &mut usize) -> Result<u64> {
    let first = *p.get(*at).ok_or_else(malformed)?;
    let width = match first {
        0..=0xFA => {
            *at += 1;
            return Ok(u64::from(first));
        }
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return Err(malformed()),
    };
    let bytes = p.get(*at + 1..*at + 1 + width).ok_or_else(malformed)?;
    *at += 1 + width;
    Ok(bytes.iter().rev().fold(0u64, |n, &b| n << 8 | u64::from(b)))
}

/// The fields of a text-protocol row, `None` for NULL.
pub(super) fn fields(row: &[u8], columns: usize) -> Result<impl Iterator<Item = Option<&[u8]>>> {
    let mut at = 0;
    let mut out = Vec::with_capacity(columns);
    for _ in 0..columns {
        if row.get(at) == Some(&0xFB) {
            at += 1;
            out.push(None);
            continue;
        }
        let len = usize::try_from(lenenc(row, &mut at)?).map_err(|_| malformed())?;
        out.push(Some(row.get(at..at + len).ok_or_else(malformed)?));
        at += len;
    }
    Ok(out.into_iter())
}

/// Appends one text-protocol row as a `LOAD DATA` line; allocates nothing.
pub fn encode_row(row: &[u8], columns: usize, out: &mut BytesMut) -> Result<()> {
    // Most rows hold none of the bytes the format escapes, length prefixes
    // included: then one vector scan of the whole row replaces one per value.
    let plain = memchr::memchr3(b'\t', b'\n', b'\\', row).is_none();
    out.reserve(row.len() + columns);
    let mut at = 0;
    for i in 0..columns {
        if i > 0 {
            out.extend_from_slice(b"\t");
        }
        if row.get(at) == Some(&0xFB) {
            at += 1;
            push_null(out);
            continue;
        }
        let len = usize::try_from(lenenc(row, &mut at)?).map_err(|_| malformed())?;
        let value = row.get(at..at + len).ok_or_else(malformed)?;
        if plain {
            out.extend_from_slice(value);
        } else {
            push_escaped(out, value);
        }
        at += len;
    }
    if at != row.len() {
        return Err(malformed());
    }
    out.extend_from_slice(b"\n");
    Ok(())
}

/// The status flags of an OK packet.
pub(super) fn ok_status(p: &[u8]) -> Result<u16> {
    let mut at = 1;
    lenenc(p, &mut at)?;
    lenenc(p, &mut at)?;
    let b = p.get(at..at + 2).ok_or_else(malformed)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

pub(super) fn parse_error(p: &[u8]) -> ServerError {
    let code = p.get(1..3).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let rest = p.get(3..).unwrap_or_default();
    let (state, message) = match rest.strip_prefix(b"#") {
        Some(r) if r.len() >= 5 => (String::from_utf8_lossy(&r[..5]).into_owned(), &r[5..]),
        _ => ("HY000".to_string(), rest),
    };
    ServerError {
        code,
        state,
        message: String::from_utf8_lossy(message).into_owned(),
    }
}

pub(super) fn server_error(p: &[u8]) -> Error {
    Error::Wire {
        context: "the server refused".into(),
        source: parse_error(p),
    }
}

pub(super) fn malformed() -> Error {
    Error::Internal("malformed packet from the server".into())
}

pub(super) fn io_error(doing: &str, e: std::io::Error) -> Error {
    Error::Internal(format!("{doing}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_encoded_integers() {
        for (bytes, value) in [
            (&[0x05][..], 5u64),
            (&[0xFA], 250),
            (&[0xFC, 0x01, 0x02], 0x0201),
            (&[0xFD, 0x01, 0x02, 0x03], 0x03_0201),
            (&[0xFE, 1, 2, 3, 4, 5, 6, 7, 8], 0x0807_0605_0403_0201),
        ] {
            let mut at = 0;
            assert_eq!(lenenc(bytes, &mut at).ok(), Some(value));
            assert_eq!(at, bytes.len());
        }
        assert!(lenenc(&[0xFC, 0x01], &mut 0).is_err());
        assert!(lenenc(&[0xFF], &mut 0).is_err());
    }

    #[test]
    fn rows_become_load_data_lines() {
        let mut row = vec![3, b'a', b'\t', b'b', 0xFB, 0];
        row.push(0xFC);
        row.extend_from_slice(&300u16.to_le_bytes());
        row.extend(std::iter::repeat_n(b'x', 300));
        let mut out = BytesMut::new();
        assert!(encode_row(&row, 4, &mut out).is_ok());
        let mut expected = b"a\\tb\t\\N\t\t".to_vec();
        expected.extend(std::iter::repeat_n(b'x', 300));
        expected.push(b'\n');
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn plain_rows_and_rows_whose_lengths_look_like_escapes_encode_alike() {
        // The second row's 10-byte value has the length prefix 0x0A, a
        // newline byte: the row takes the per-value path, same output.
        for value in [&b"2026-11-22"[..9], &b"2026-11-22"[..]] {
            let mut row = vec![2, b'4', b'2', 0xFB, value.len() as u8];
            row.extend_from_slice(value);
            let mut out = BytesMut::new();
            assert!(encode_row(&row, 3, &mut out).is_ok());
            let mut expected = b"42\t\\N\t".to_vec();
            expected.extend_from_slice(value);
            expected.push(b'\n');
            assert_eq!(&out[..], &expected[..]);
        }
    }

    #[test]
    fn a_truncated_or_overlong_row_is_an_error_not_data() {
        let mut out = BytesMut::new();
        assert!(encode_row(&[5, b'a'], 1, &mut out).is_err());
        assert!(encode_row(&[1, b'a', 1, b'b'], 1, &mut out).is_err());
    }

    #[test]
    fn the_native_password_scramble_matches_the_servers_formula() {
        // SHA1("secret") XOR SHA1(seed + SHA1(SHA1("secret"))), checked
        // against the definition rather than a captured login.
        let seed = b"12345678901234567890";
        let answer = native_password(b"secret", seed);
        let once = Sha1::digest(b"secret");
        let mut hasher = Sha1::new();
        hasher.update(seed);
        hasher.update(Sha1::digest(once));
        let mask = hasher.finalize();
        let unmasked: Vec<u8> = answer.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(unmasked, once.to_vec());
        assert!(native_password(b"", seed).is_empty());
    }

    #[test]
    fn server_errors_keep_code_state_and_message() {
        let mut p = vec![0xFF];
        p.extend_from_slice(&1146u16.to_le_bytes());
        p.extend_from_slice(b"#42S02Table 'x.y' doesn't exist");
        assert_eq!(
            parse_error(&p),
            ServerError {
                code: 1146,
                state: "42S02".into(),
                message: "Table 'x.y' doesn't exist".into()
            }
        );
    }
}
