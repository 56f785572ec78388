//! The first-request guard: keeps a shutdown (or an upgrade hand-over) from dropping a
//! new connection whose first request is still on its way.
//!
//! When shutdown begins, Pingora ends every HTTP/1 connection that is waiting for a
//! request: right for idle keep-alive connections, wrong for one accepted a moment
//! before whose client has not sent yet — it would be closed unanswered (seen now and
//! then in `tests/upgrade.rs`, five upgrades under load). [`wait`] therefore reads a
//! new plain-TCP connection once, waiting for the client's first bytes, and puts them
//! back (`rewind`) before Pingora reads the request from them, so the first request is
//! always served. Later requests on the connection are Pingora's as before.

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use tokio::io::AsyncReadExt;

/// Waits for the client's first bytes and puts them back; false when the client closes
/// (or fails) before sending anything.
pub(super) async fn wait(l4: &mut L4Stream) -> bool {
    // Not zeroed: `read_buf` fills spare capacity.
    let mut buf = Vec::with_capacity(2048);
    match l4.read_buf(&mut buf).await {
        Ok(0) | Err(_) => false,
        Ok(_) => {
            l4.rewind(&buf);
            true
        }
    }
}
