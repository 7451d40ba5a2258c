//! Keeping sockets to the servers honest on a silent network: keepalive
//! probes and a bound on unacknowledged data, for mysql_async's sockets
//! (found by their peer) and the wire reader's alike.

use std::time::Duration;

/// A connection silent this long gets TCP keepalive probes: a peer gone
/// without a reset (packets dropped) is found even while we only wait.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// Pause between two keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes after which the connection is dead.
pub const KEEPALIVE_PROBES: u32 = 4;
/// Data sent and not acknowledged for this long ends the connection
/// (TCP_USER_TIMEOUT). Backpressure pauses never leave data unacknowledged
/// (a paused side sends nothing; the peer's kernel acks what it buffers),
/// so only a silent network reaches it.
pub const USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Puts [`guard_socket`] on every TCP socket of this process whose peer
/// is `port`. mysql_async 0.37 sets only the keepalive time and never shows
/// its socket, so after it connects the socket is found by its peer; another
/// connection to the same port gets the same guards, which it wants too.
pub fn guard_connections_to(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in fds.flatten() {
        let Some(raw) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the calls below; one
        // closed meanwhile makes them fail, and they are then skipped.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let socket = socket2::SockRef::from(&fd);
        let is_server = socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
            && socket
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a.port() == port);
        if is_server {
            if let Err(e) = guard_socket(socket) {
                tracing::debug!(error = %e, "guarding a server connection");
            }
        }
    }
}

/// Puts the silent-network guards on a connected socket: keepalive
/// probes after [`KEEPALIVE_IDLE`] and [`USER_TIMEOUT`]. A dead peer is
/// then found within about 35 s of silence, or 60 s of unacknowledged data.
pub fn guard_socket(socket: socket2::SockRef<'_>) -> std::io::Result<()> {
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    socket.set_tcp_user_timeout(Some(USER_TIMEOUT))
}

#[cfg(test)]
mod socket_guard_tests {
    use super::*;

    #[test]
    fn connections_to_a_port_are_found_and_guarded_and_others_are_not() -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let other = std::net::TcpListener::bind("127.0.0.1:0")?;
        let server = std::net::TcpStream::connect(listener.local_addr()?)?;
        let unrelated = std::net::TcpStream::connect(other.local_addr()?)?;
        guard_connections_to(listener.local_addr()?.port());
        assert_eq!(socket2::SockRef::from(&server).tcp_user_timeout()?, Some(USER_TIMEOUT));
        assert_eq!(socket2::SockRef::from(&unrelated).tcp_user_timeout()?, None);
        Ok(())
    }

    #[test]
    fn a_guarded_socket_probes_an_idle_peer_and_bounds_unacknowledged_data() -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let stream = std::net::TcpStream::connect(listener.local_addr()?)?;
        let socket = socket2::SockRef::from(&stream);
        assert!(!socket.keepalive()?, "off before the guard");
        guard_socket(socket2::SockRef::from(&stream))?;
        assert!(socket.keepalive()?);
        assert_eq!(socket.tcp_keepalive_time()?, KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval()?, KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries()?, KEEPALIVE_PROBES);
        assert_eq!(socket.tcp_user_timeout()?, Some(USER_TIMEOUT));
        Ok(())
    }
}
