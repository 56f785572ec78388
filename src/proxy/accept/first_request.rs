//! The first-request guard: keeps a shutdown (or an upgrade hand-over) from dropping a
//! new connection whose first request is still on its way.
//!
//! When shutdown begins, Pingora ends every HTTP/1 connection that is waiting for a
//! request: right for idle keep-alive connections, wrong for one accepted a moment
//! before whose client has not sent yet — it would be closed unanswered (seen now and
//! then in `tests/upgrade.rs`, five upgrades under load). [`wait`] therefore reads a
//! new plain-TCP connection once, waiting for the client's first bytes, and puts them
//! back (`rewind`) before Pingora reads the request from them, so the first request is
//! always served. Later requests on the connection are Pingora's as before. The bytes
//! also tell an HTTP/2 connection (h2c prior knowledge) from an HTTP/1 one.

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use tokio::io::AsyncReadExt;

/// The first bytes of an HTTP/2 connection with prior knowledge (h2c).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits for the client's first bytes and puts them back: `Some(true)` when they begin
/// the HTTP/2 preface (as far as they go), `Some(false)` for anything else, `None`
/// when the client closes (or fails) before sending anything.
pub(super) async fn wait(l4: &mut L4Stream) -> Option<bool> {
    // Not zeroed: `read_buf` fills spare capacity.
    let mut buf = Vec::with_capacity(2048);
    match l4.read_buf(&mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            l4.rewind(&buf);
            let n = n.min(H2_PREFACE.len());
            Some(buf[..n] == H2_PREFACE[..n])
        }
    }
}
