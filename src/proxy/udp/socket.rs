//! A UDP listener's sockets: bound here, or taken over from the previous process in
//! an upgrade, through the same table of descriptors that Pingora hands over for its
//! TCP listeners (`Fds`), under the key `udp:ADDRESS` (a TCP listener on the same
//! address is keyed by the bare address).
//!
//! A socket taken over is the very socket the old process reads, so datagrams queued
//! in it during the hand-over are read by the new process, not lost.

use pingora_core::server::ListenFds;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

/// What is asked of the kernel for a listening socket's receive buffer, so bursts from
/// many clients wait in it rather than being dropped (the kernel caps it at
/// `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// The key of `addr` in the hand-over table.
pub(super) fn key(addr: SocketAddr) -> String {
    format!("udp:{addr}")
}

/// The listening socket for `addr`: the one in `fds` under its key, or else a new one,
/// which is put in `fds` for the next upgrade.
pub(super) fn open(addr: SocketAddr, fds: Option<&ListenFds>) -> io::Result<tokio::net::UdpSocket> {
    let inherited = fds.and_then(|fds| fds.lock().get(&key(addr)).copied());
    let socket = bind_or_adopt(addr, inherited)?;
    if inherited.is_none() {
        if let Some(fds) = fds {
            // The table keeps a descriptor of its own, open for the process's life.
            let kept = socket.try_clone()?.into_raw_fd();
            fds.lock().add(key(addr), kept);
        }
    }
    tokio::net::UdpSocket::from_std(socket)
}

/// The socket of descriptor `inherited` (checked), or a new one bound to `addr`; in
/// non-blocking mode, with a large receive buffer.
fn bind_or_adopt(addr: SocketAddr, inherited: Option<RawFd>) -> io::Result<std::net::UdpSocket> {
    let socket = match inherited {
        Some(fd) => {
            let socket = std::net::UdpSocket::from(adopt(fd, addr)?);
            log::info!("udp {addr}: using the socket handed over by the previous process");
            socket
        }
        None => std::net::UdpSocket::bind(addr)?,
    };
    if let Err(e) = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, RECEIVE_BUFFER) {
        log::debug!("udp {addr}: receive buffer left as is: {e}");
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A duplicate of inherited descriptor `fd`, checked to be a UDP socket bound to `addr`.
fn adopt(fd: RawFd, addr: SocketAddr) -> io::Result<OwnedFd> {
    let owned = crate::proxy::fd::duplicate_listening(fd)?;
    let kind = rustix::net::sockopt::socket_type(&owned)?;
    let bound = rustix::net::getsockname(&owned)?;
    let bound = SocketAddr::try_from(bound).ok();
    if kind != rustix::net::SocketType::DGRAM || bound != Some(addr) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the handed-over descriptor {} is not a UDP socket bound to {addr}",
                owned.as_raw_fd()
            ),
        ));
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_socket_is_reused_by_address() {
        let first = bind_or_adopt("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind_or_adopt(addr, Some(first.as_raw_fd())).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        drop(first);
        // The duplicate is the same socket, still open.
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"x", addr).unwrap();
        second.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 4];
        let (n, _) = second.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"x");
        let other: SocketAddr = "127.0.0.2:53".parse().unwrap();
        let e = bind_or_adopt(other, Some(second.as_raw_fd())).unwrap_err();
        assert!(e.to_string().contains("not a UDP socket bound to"), "{e}");
    }

    #[test]
    fn a_wrong_descriptor_is_refused() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let e = adopt(tcp.as_raw_fd(), addr).unwrap_err();
        assert!(e.to_string().contains("not a UDP socket"), "{e}");
    }
}
