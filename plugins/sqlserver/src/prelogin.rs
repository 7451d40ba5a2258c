//! What a server answers to a TDS PRELOGIN about encryption, asked on a
//! throwaway connection before tiberius logs in.
//!
//! tiberius settles the encryption level by itself and says nothing of it:
//! a client asking for none is silently encrypted by a server that requires
//! it, and one asking for none from a server without TLS tries TLS anyway.
//! Asking first lets each `tls` mode be kept or refused by name.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A PRELOGIN packet (MS-TDS 2.2.6.5).
const PRELOGIN: u8 = 0x12;
/// A tabular result: the server's answer to a PRELOGIN.
const TABULAR_RESULT: u8 = 0x04;
const END_OF_MESSAGE: u8 = 0x01;
const HEADER_LEN: usize = 8;
const OPTION_VERSION: u8 = 0x00;
const OPTION_ENCRYPTION: u8 = 0x01;
const OPTION_INSTANCE: u8 = 0x02;
const OPTION_THREAD_ID: u8 = 0x03;
const OPTION_MARS: u8 = 0x04;
const TERMINATOR: u8 = 0xff;
/// An answer is a few dozen bytes; anything larger is not a TDS server.
const MAX_ANSWER: usize = 4096;

/// A PRELOGIN `ENCRYPTION` value (MS-TDS 2.2.6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// `ENCRYPT_OFF`: TLS available; asked by a client, the login alone
    /// is encrypted.
    Off,
    /// `ENCRYPT_ON`: everything encrypted.
    On,
    /// `ENCRYPT_NOT_SUP`: no TLS at all.
    NotSupported,
    /// `ENCRYPT_REQ`: the server requires everything encrypted.
    Required,
}

impl Offer {
    fn wire(self) -> u8 {
        match self {
            Offer::Off => 0,
            Offer::On => 1,
            Offer::NotSupported => 2,
            Offer::Required => 3,
        }
    }

    fn from_wire(byte: u8) -> Option<Self> {
        // The high bits carry client-certificate flags; the level is the rest.
        match byte & 0x0f {
            0 => Some(Offer::Off),
            1 => Some(Offer::On),
            2 => Some(Offer::NotSupported),
            3 => Some(Offer::Required),
            _ => None,
        }
    }
}

/// Sends a PRELOGIN asking for `asked` to `addr` and returns the server's
/// `ENCRYPTION` answer; the connection is then closed.
pub async fn ask(addr: &str, asked: Offer, timeout: Duration) -> std::io::Result<Offer> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(&request(asked)).await?;
        let mut answer = Vec::new();
        loop {
            let mut header = [0u8; HEADER_LEN];
            tcp.read_exact(&mut header).await?;
            let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
            if header[0] != TABULAR_RESULT || length < HEADER_LEN || answer.len() + length > MAX_ANSWER {
                return Err(invalid("the server's answer to PRELOGIN is not a TDS packet"));
            }
            let start = answer.len();
            answer.resize(start + length - HEADER_LEN, 0);
            tcp.read_exact(&mut answer[start..]).await?;
            if header[1] & END_OF_MESSAGE != 0 {
                break;
            }
        }
        encryption_of(&answer).ok_or_else(|| invalid("the server's PRELOGIN answer names no encryption level"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no PRELOGIN answer in time"))?
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// The PRELOGIN packet tiberius itself sends, but for the level asked.
fn request(asked: Offer) -> Vec<u8> {
    let options: [(u8, &[u8]); 5] = [
        (OPTION_VERSION, &[0, 0, 0, 0, 0, 0]),
        (OPTION_ENCRYPTION, &[asked.wire()]),
        (OPTION_INSTANCE, &[0]),
        (OPTION_THREAD_ID, &[0, 0, 0, 0]),
        (OPTION_MARS, &[0]),
    ];
    let table_len = options.len() * 5 + 1;
    let mut payload = Vec::with_capacity(table_len + 16);
    let mut data = Vec::new();
    for (token, value) in options {
        payload.push(token);
        payload.extend_from_slice(&((table_len + data.len()) as u16).to_be_bytes());
        payload.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    payload.push(TERMINATOR);
    payload.extend_from_slice(&data);
    let mut packet = vec![PRELOGIN, END_OF_MESSAGE];
    packet.extend_from_slice(&((HEADER_LEN + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 1, 0]);
    packet.extend_from_slice(&payload);
    packet
}

/// The `ENCRYPTION` option of a PRELOGIN payload.
fn encryption_of(payload: &[u8]) -> Option<Offer> {
    let mut at = 0;
    loop {
        let token = *payload.get(at)?;
        if token == TERMINATOR {
            return None;
        }
        let field = payload.get(at + 1..at + 5)?;
        let offset = usize::from(u16::from_be_bytes([field[0], field[1]]));
        let length = u16::from_be_bytes([field[2], field[3]]);
        if token == OPTION_ENCRYPTION && length >= 1 {
            return Offer::from_wire(*payload.get(offset)?);
        }
        at += 5;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_the_level_asked_where_its_table_says() {
        let packet = request(Offer::Required);
        assert_eq!(usize::from(u16::from_be_bytes([packet[2], packet[3]])), packet.len());
        assert_eq!(encryption_of(&packet[HEADER_LEN..]), Some(Offer::Required));
        assert_eq!(encryption_of(&request(Offer::Off)[HEADER_LEN..]), Some(Offer::Off));
    }

    #[test]
    fn a_truncated_or_levelless_answer_names_nothing() {
        let packet = request(Offer::On);
        assert_eq!(encryption_of(&packet[HEADER_LEN..HEADER_LEN + 7]), None);
        assert_eq!(encryption_of(&[TERMINATOR]), None);
        assert_eq!(encryption_of(&[]), None);
    }
}
