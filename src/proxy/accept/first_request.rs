//! The first-request guard: keeps a shutdown (or an upgrade hand-over) from dropping a
//! new connection whose first request is still on its way.
//!
//! When shutdown begins, Pingora ends every HTTP/1 connection that is waiting for a
//! request: right for idle keep-alive connections, wrong for one accepted a moment
//! before whose client has not sent yet — it would be closed unanswered (seen now and
//! then in `tests/upgrade.rs`, five upgrades under load). [`wait`] therefore waits for
//! a new plain-TCP connection's first bytes before Pingora reads the request from
//! them, so the first request is always served. It holds no buffer while it waits
//! ([`park::readable`](super::park::readable)) and only peeks at the bytes, which tell
//! an HTTP/2 connection (h2c prior knowledge) from an HTTP/1 one; they stay in the
//! socket for Pingora. After a PROXY header, whose reader put back what followed it,
//! the bytes are read and put back instead (`rewind`).

use super::park;
use crate::proxy::fd::Socket;
use nix::sys::socket::{recv, MsgFlags};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use std::os::fd::AsRawFd;
use tokio::io::AsyncReadExt;

/// The first bytes of an HTTP/2 connection with prior knowledge (h2c).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits for the client's first bytes, leaving them to be read: `Some(true)` when they
/// begin the HTTP/2 preface (as far as they go), `Some(false)` for anything else,
/// `None` when the client closes (or fails) before sending anything. `rewound`: a
/// PROXY header was read, and the bytes that followed it were put back in the stream,
/// where the socket cannot be peeked at; they are read and put back once more.
pub(super) async fn wait(l4: &mut L4Stream, rewound: bool) -> Option<bool> {
    if rewound {
        // Not zeroed: `read_buf` fills spare capacity.
        let mut buf = Vec::with_capacity(2048);
        return match l4.read_buf(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                l4.rewind(&buf);
                Some(is_h2(&buf[..n]))
            }
        };
    }
    park::readable(l4).await.ok()?;
    let socket = Socket::of(l4)?;
    let mut first = [0u8; H2_PREFACE.len()];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    match recv(socket.borrow().as_raw_fd(), &mut first, flags) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(is_h2(&first[..n])),
    }
}

/// Whether `first` begins the HTTP/2 preface, as far as it goes.
fn is_h2(first: &[u8]) -> bool {
    let n = first.len().min(H2_PREFACE.len());
    first[..n] == H2_PREFACE[..n]
}
