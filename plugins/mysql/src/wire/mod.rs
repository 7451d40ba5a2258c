//! A minimal MySQL client protocol connection for the one hot path: the
//! chunk SELECTs of a global snapshot.
//!
//! mysql_async decodes every row into a `Row` of owned values: an
//! allocation per value, a buffer-pool round trip and a clock read per
//! packet. On sysbench rows that was 84% of dbferry's CPU. This connection
//! instead reads each row packet into one reused buffer and turns its
//! length-encoded fields straight into `LOAD DATA` input.
//!
//! It speaks only what that needs: TCP with or without TLS (as the
//! instance's `tls` mode says), `mysql_native_password` (the MariaDB
//! default) and `caching_sha2_password` (MySQL's), `COM_QUERY`, OK/ERR/EOF
//! and text result sets, packets of any length. Anything else (another
//! auth plugin, a Unix socket) makes [`WireConn::connect`] fail with
//! [`Error::Unsupported`] and the caller keeps using mysql_async.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::ClientConfig;

use crate::error::{Error, Result};
use crate::tls::{Refusal, TlsMode};

mod auth;
mod codec;

use auth::{AuthPlugin, FAST_AUTH_OK, FULL_AUTH, REQUEST_PUBLIC_KEY};
pub use codec::{encode_row, ServerError};
use codec::{fields, io_error, lenenc, malformed, ok_status, server_error, Greeting};

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_LONG_FLAG: u32 = 0x4;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
pub(crate) const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_MULTI_STATEMENTS: u32 = 0x1_0000;
const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
/// utf8mb4_general_ci.
const UTF8MB4: u8 = 45;
const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// A packet buffer grown past this by a big row is given back.
const SHRINK_ABOVE: usize = 4 << 20;

/// What a query's reply starts with.
enum Reply {
    /// No result set; `more`: another result follows.
    Ok { more: bool },
    /// A result set of this many columns follows.
    Columns(usize),
}

/// A byte stream to the server: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// One logged-in connection.
pub struct WireConn {
    /// Reads and writes never overlap (the protocol takes turns), so one
    /// buffered stream serves both.
    io: BufStream<Box<dyn Transport>>,
    /// The current packet's payload, reused for every packet.
    payload: Vec<u8>,
    seq: u8,
    /// Whether the connection is encrypted.
    encrypted: bool,
    /// The server's id of this connection, from its greeting.
    id: u32,
    /// The certificate the server presented, when encrypted.
    peer_certificate: Option<CertificateDer<'static>>,
    /// A read or write failed: the server may never learn the connection
    /// is gone (a network fault), and keep its session.
    broken: bool,
}

/// Where and as whom to log in.
#[derive(Clone)]
pub struct Login {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// The instance's TLS mode (`Off` also when a `preferred` server
    /// turned out to offer no TLS).
    pub tls: TlsMode,
    /// The rustls configuration for that mode; `None` for `off`.
    pub tls_config: Option<Arc<ClientConfig>>,
    /// The instance id, for refusals.
    pub instance: String,
}

impl WireConn {
    /// Connects and logs in.
    pub async fn connect(login: &Login, timeout: Duration) -> Result<Self> {
        let connecting = async {
            let stream = TcpStream::connect((login.host.as_str(), login.port))
                .await
                .map_err(|e| io_error("connecting", e))?;
            stream.set_nodelay(true).map_err(|e| io_error("connecting", e))?;
            crate::conn::guard_socket(socket2::SockRef::from(&stream)).map_err(|e| io_error("connecting", e))?;
            let mut conn = WireConn {
                io: buffered(Box::new(stream)),
                payload: Vec::with_capacity(64 << 10),
                seq: 0,
                encrypted: false,
                id: 0,
                peer_certificate: None,
                broken: false,
            };
            conn.log_in(login).await?;
            Ok(conn)
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| Error::Internal(format!("logging in to {}:{} timed out", login.host, login.port)))?
    }

    /// Whether the connection is encrypted.
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// The certificate the server presented, when encrypted.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificate.as_ref()
    }

    /// The server's id of this connection (`CONNECTION_ID()`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether a read or write on the connection failed (its session may
    /// live on at the server; see [`crate::lost`]).
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Sends SSLRequest and turns the stream into TLS, when the mode and
    /// the server call for it. Refuses where TLS is required and not offered.
    async fn start_tls(&mut self, login: &Login, greeting: &Greeting, capabilities: u32) -> Result<u32> {
        let offered = greeting.capabilities & CLIENT_SSL != 0;
        let config = match (&login.tls_config, login.tls) {
            (_, TlsMode::Off) => return Ok(capabilities),
            (_, TlsMode::Preferred) if !offered => return Ok(capabilities),
            (_, mode) if !offered => {
                return Err(Error::Tls {
                    instance: login.instance.clone(),
                    refusal: Refusal::NotOffered,
                    message: format!(
                        "tls = \"{}\" requires TLS, but the server does not offer it",
                        mode.as_str()
                    ),
                })
            }
            (Some(config), _) => config.clone(),
            (None, _) => return Err(Error::Internal("TLS asked for without a TLS configuration".into())),
        };
        let capabilities = capabilities | CLIENT_SSL;
        let mut request = Vec::with_capacity(32);
        request.extend_from_slice(&capabilities.to_le_bytes());
        request.extend_from_slice(&(1u32 << 30).to_le_bytes());
        request.push(UTF8MB4);
        request.extend_from_slice(&[0; 23]);
        self.write_packet(&request).await?;
        let name = crate::tls::server_name(&login.host)?;
        let plain = std::mem::replace(&mut self.io, buffered(Box::new(tokio::io::empty()))).into_inner();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, plain)
            .await
            .map_err(|e| {
                match crate::tls::rustls_error(&e).and_then(|t| crate::error::certificate_refusal(login.tls, t)) {
                    Some(message) => Error::Tls {
                        instance: login.instance.clone(),
                        refusal: Refusal::Unverified,
                        message,
                    },
                    None => io_error("starting TLS", e),
                }
            })?;
        self.peer_certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.clone().into_owned());
        self.io = buffered(Box::new(tls));
        self.encrypted = true;
        Ok(capabilities)
    }

    async fn log_in(&mut self, login: &Login) -> Result<()> {
        self.read_packet().await?;
        let greeting = Greeting::parse(&self.payload)?;
        self.id = greeting.connection_id;
        let wanted = CLIENT_LONG_PASSWORD
            | CLIENT_LONG_FLAG
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_MULTI_STATEMENTS
            | CLIENT_MULTI_RESULTS
            | CLIENT_PLUGIN_AUTH;
        let needed = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
        if greeting.capabilities & needed != needed {
            return Err(Error::Unsupported(
                "the server lacks protocol 4.1 plugin authentication".into(),
            ));
        }
        let capabilities = self.start_tls(login, &greeting, wanted & greeting.capabilities).await?;
        // Answer in the server's default plugin when the client speaks it;
        // an account on another plugin gets an AuthSwitchRequest.
        let mut plugin = AuthPlugin::named(&greeting.plugin).unwrap_or(AuthPlugin::Native);
        let mut seed = greeting.scramble.clone();
        let answer = plugin.answer(login.password.as_bytes(), &seed);
        let mut response = Vec::with_capacity(128);
        response.extend_from_slice(&capabilities.to_le_bytes());
        response.extend_from_slice(&(1u32 << 30).to_le_bytes());
        response.push(UTF8MB4);
        response.extend_from_slice(&[0; 23]);
        response.extend_from_slice(login.user.as_bytes());
        response.push(0);
        response.push(answer.len() as u8);
        response.extend_from_slice(&answer);
        response.extend_from_slice(plugin.name().as_bytes());
        response.push(0);
        self.write_packet(&response).await?;
        loop {
            self.read_packet().await?;
            match self.payload.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(self.server_error()),
                Some(0xFE) => {
                    // AuthSwitchRequest: plugin name, then its data.
                    let body = &self.payload[1..];
                    let name_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    let name = String::from_utf8_lossy(&body[..name_end]).into_owned();
                    plugin = AuthPlugin::named(&name)
                        .ok_or_else(|| Error::Unsupported(format!("authentication plugin {name}")))?;
                    let data = body.get(name_end + 1..).unwrap_or_default();
                    seed = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
                    let answer = plugin.answer(login.password.as_bytes(), &seed);
                    self.write_packet(&answer).await?;
                }
                // AuthMoreData from caching_sha2_password.
                Some(0x01) if plugin == AuthPlugin::CachingSha2 => match self.payload.get(1..) {
                    Some([FAST_AUTH_OK]) => {}
                    Some([FULL_AUTH]) if self.encrypted => {
                        let mut clear = login.password.as_bytes().to_vec();
                        clear.push(0);
                        self.write_packet(&clear).await?;
                    }
                    Some([FULL_AUTH]) => self.write_packet(&[REQUEST_PUBLIC_KEY]).await?,
                    // The public key asked for above, in PEM.
                    Some(pem) => {
                        let secret = auth::encrypt_password(login.password.as_bytes(), &seed, pem)?;
                        self.write_packet(&secret).await?;
                    }
                    None => return Err(malformed()),
                },
                _ => {
                    return Err(Error::Unsupported(
                        "an authentication exchange this client does not speak".into(),
                    ))
                }
            }
        }
    }

    /// Runs statements that return no rows (several, separated by `;`).
    pub async fn execute(&mut self, sql: &str) -> Result<()> {
        self.send_query(sql).await?;
        loop {
            match self.reply().await? {
                Reply::Ok { more: true } => continue,
                Reply::Ok { more: false } => return Ok(()),
                Reply::Columns(n) => {
                    self.skip_columns(n).await?;
                    while self.next_row().await? {}
                    if !self.more_results() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Runs a query and returns its rows' fields (`None` for NULL).
    pub async fn all_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<Vec<u8>>>>> {
        self.send_query(sql).await?;
        let Reply::Columns(columns) = self.reply().await? else {
            return Err(Error::Internal(format!("{sql} returned no result set")));
        };
        self.skip_columns(columns).await?;
        let mut rows = Vec::new();
        while self.next_row().await? {
            rows.push(fields(&self.payload, columns)?.map(|f| f.map(<[u8]>::to_vec)).collect());
        }
        Ok(rows)
    }

    /// Starts a query whose rows are then read with [`WireConn::encode_rows`].
    /// Returns its number of columns.
    pub async fn start_rows(&mut self, sql: &str) -> Result<usize> {
        self.send_query(sql).await?;
        let Reply::Columns(columns) = self.reply().await? else {
            return Err(Error::Internal(format!("{sql} returned no result set")));
        };
        self.skip_columns(columns).await?;
        Ok(columns)
    }

    /// Appends the next rows as `LOAD DATA` lines to `out` until it holds
    /// `batch` bytes or the result ends. Returns the rows appended and
    /// whether the result has ended.
    pub async fn encode_rows(&mut self, columns: usize, out: &mut BytesMut, batch: usize) -> Result<(u64, bool)> {
        let (rows, ended) = self.encode_result(columns, out, batch).await?;
        if ended && self.more_results() {
            return Err(Error::Internal("a chunk query returned several results".into()));
        }
        Ok((rows, ended))
    }

    /// [`WireConn::encode_rows`] for a query of several `SELECT`s: at the
    /// end of one result, [`WireConn::more_results`] says whether another
    /// follows, and [`WireConn::next_result`] starts it.
    pub async fn encode_result(&mut self, columns: usize, out: &mut BytesMut, limit: usize) -> Result<(u64, bool)> {
        let mut rows = 0;
        while out.len() < limit {
            if !self.next_row().await? {
                return Ok((rows, true));
            }
            encode_row(&self.payload, columns, out)?;
            rows += 1;
        }
        Ok((rows, false))
    }

    /// Starts the next result of a query of several `SELECT`s; returns its
    /// number of columns.
    pub async fn next_result(&mut self) -> Result<usize> {
        let Reply::Columns(columns) = self.reply().await? else {
            return Err(Error::Internal("a statement of a group returned no result set".into()));
        };
        self.skip_columns(columns).await?;
        Ok(columns)
    }

    /// Reads and drops the rest of the current result and every result
    /// after it, which leaves the connection ready for the next query.
    pub async fn discard_results(&mut self) -> Result<()> {
        loop {
            while self.next_row().await? {}
            if !self.more_results() {
                return Ok(());
            }
            loop {
                match self.reply().await? {
                    Reply::Columns(columns) => {
                        self.skip_columns(columns).await?;
                        break;
                    }
                    Reply::Ok { more: true } => continue,
                    Reply::Ok { more: false } => return Ok(()),
                }
            }
        }
    }

    async fn send_query(&mut self, sql: &str) -> Result<()> {
        self.seq = 0;
        let mut command = Vec::with_capacity(sql.len() + 1);
        command.push(0x03);
        command.extend_from_slice(sql.as_bytes());
        self.write_packet(&command).await
    }

    /// Reads the first packet of a reply.
    async fn reply(&mut self) -> Result<Reply> {
        self.read_packet().await?;
        match self.payload.first() {
            Some(0x00) => Ok(Reply::Ok {
                more: ok_status(&self.payload)? & SERVER_MORE_RESULTS_EXISTS != 0,
            }),
            Some(0xFF) => Err(self.server_error()),
            Some(0xFB) => Err(Error::Unsupported("the server asked for a local file".into())),
            _ => {
                let mut at = 0;
                let n = lenenc(&self.payload, &mut at)?;
                usize::try_from(n).map(Reply::Columns).map_err(|_| malformed())
            }
        }
    }

    async fn skip_columns(&mut self, columns: usize) -> Result<()> {
        for _ in 0..columns {
            self.read_packet().await?;
        }
        // The EOF after the column definitions.
        self.read_packet().await?;
        if self.payload.first() == Some(&0xFF) {
            return Err(self.server_error());
        }
        Ok(())
    }

    /// Reads the next row into `payload`; false at the result's end (the
    /// EOF packet then stays in `payload`).
    async fn next_row(&mut self) -> Result<bool> {
        self.read_packet().await?;
        match self.payload.first() {
            Some(0xFE) if self.payload.len() < 9 => Ok(false),
            Some(0xFF) => Err(self.server_error()),
            _ => Ok(true),
        }
    }

    /// After a result's EOF: whether another result follows.
    pub fn more_results(&self) -> bool {
        self.payload.len() >= 5
            && u16::from_le_bytes([self.payload[3], self.payload[4]]) & SERVER_MORE_RESULTS_EXISTS != 0
    }

    /// Reads one logical packet (joining 16 MiB continuations) into `payload`.
    async fn read_packet(&mut self) -> Result<()> {
        let read = self.read_packet_unguarded().await;
        self.broken |= read.is_err();
        read
    }

    async fn read_packet_unguarded(&mut self) -> Result<()> {
        // One huge row must not pin its buffer for the rest of the snapshot.
        if self.payload.capacity() > SHRINK_ABOVE {
            self.payload = Vec::with_capacity(64 << 10);
        }
        self.payload.clear();
        loop {
            let mut header = [0u8; 4];
            self.io
                .read_exact(&mut header)
                .await
                .map_err(|e| io_error("reading from the server", e))?;
            let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            self.seq = header[3].wrapping_add(1);
            let start = self.payload.len();
            self.payload.resize(start + len, 0);
            self.io
                .read_exact(&mut self.payload[start..])
                .await
                .map_err(|e| io_error("reading from the server", e))?;
            if len < MAX_PAYLOAD {
                return Ok(());
            }
        }
    }

    async fn write_packet(&mut self, payload: &[u8]) -> Result<()> {
        let written = self.write_packet_unguarded(payload).await;
        self.broken |= written.is_err();
        written
    }

    async fn write_packet_unguarded(&mut self, payload: &[u8]) -> Result<()> {
        let mut pieces = payload.chunks(MAX_PAYLOAD).peekable();
        let mut last_full = payload.is_empty();
        while let Some(piece) = pieces.next() {
            self.write_piece(piece).await?;
            last_full = piece.len() == MAX_PAYLOAD && pieces.peek().is_none();
        }
        if last_full {
            self.write_piece(&[]).await?;
        }
        self.io.flush().await.map_err(|e| io_error("writing to the server", e))
    }

    async fn write_piece(&mut self, piece: &[u8]) -> Result<()> {
        let len = piece.len() as u32;
        let header = [len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq];
        self.seq = self.seq.wrapping_add(1);
        self.io
            .write_all(&header)
            .await
            .map_err(|e| io_error("writing to the server", e))?;
        self.io
            .write_all(piece)
            .await
            .map_err(|e| io_error("writing to the server", e))
    }

    fn server_error(&self) -> Error {
        server_error(&self.payload)
    }
}

fn buffered(stream: Box<dyn Transport>) -> BufStream<Box<dyn Transport>> {
    BufStream::with_capacity(256 << 10, 64 << 10, stream)
}
