//! Keeps a shutdown (or an upgrade hand-over) from dropping a new connection whose first
//! request is still on its way.
//!
//! When shutdown begins, Pingora ends every HTTP/1 connection that is waiting for a
//! request: right for idle keep-alive connections, wrong for one accepted a moment
//! before whose client has not sent yet — it would be closed unanswered (seen in
//! `tests/upgrade.rs`, about once in a dozen runs of five upgrades under load).
//! [`FirstRequest`] therefore reads a new plain-TCP connection once, waiting for the
//! client's first bytes, and puts them back (`rewind`) before Pingora reads the request
//! from them, so the first request is always served. Later requests on the connection
//! are Pingora's as before. TLS connections pass straight through (their handshake has
//! already read from the client).

use super::coalesce::Coalesce;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// Wraps an HTTP app (see the module docs).
pub(crate) struct FirstRequest<A>(pub Arc<A>);

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for FirstRequest<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream = first_bytes(stream).await?;
        self.0.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.0.cleanup().await;
    }
}

/// Waits for the client's first bytes and puts them back, and gives the connection its
/// write buffer, which sends a pass's answers together ([`Coalesce`]); `None` when the
/// client closes (or fails) before sending anything.
async fn first_bytes(stream: Stream) -> Option<Stream> {
    if stream.as_any().downcast_ref::<L4Stream>().is_none() {
        return Some(stream);
    }
    let mut l4: Box<L4Stream> = stream.into_any().downcast().ok()?;
    // Not zeroed: `read_buf` fills spare capacity.
    let mut buf = Vec::with_capacity(2048);
    match l4.read_buf(&mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            l4.rewind(&buf);
            Some(Box::new(Coalesce::new(l4)))
        }
    }
}
