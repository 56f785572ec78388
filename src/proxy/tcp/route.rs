//! Choosing a TCP connection's route: by client address alone when that decides, else
//! after reading the server name from the ClientHello ([`sni::peek`]), which puts the
//! bytes back for the backend.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;

use super::{Ending, TcpProxy, TcpRoute};
use crate::proxy::sni;
use crate::routing::tcp::{Find, Sni};

impl TcpProxy {
    /// The route that serves a connection from `client`, with the stream (its peeked
    /// bytes put back); else why none does, the stream dropped (closed).
    pub(super) async fn route(
        &self,
        stream: Stream,
        client: Option<SocketAddr>,
    ) -> Result<(Stream, &TcpRoute), Ending> {
        let ip = client.map(|a| a.ip());
        let (stream, found) = match self.routes.find(ip, Sni::Unread) {
            Find::NeedSni => match self.peek(stream).await {
                Ok((stream, name)) => {
                    let found = self.routes.find(ip, Sni::Read(name.as_deref()));
                    (stream, found)
                }
                Err(e) => {
                    log::info!(
                        "listener {}: connection from {client:?} closed: {e}",
                        self.listener
                    );
                    return Err(Ending::NoHello);
                }
            },
            found => (stream, found),
        };
        match found {
            Find::Route(i) => self
                .routes
                .get(i)
                .map(|r| (stream, r))
                .ok_or(Ending::NoRoute),
            Find::NeedSni | Find::None => {
                log::info!(
                    "listener {}: no route for the connection from {client:?}; closed",
                    self.listener
                );
                Err(Ending::NoRoute)
            }
        }
    }

    /// The server name of the ClientHello at the start of `stream`, and the stream.
    async fn peek(&self, stream: Stream) -> Result<(Stream, Option<String>), sni::PeekError> {
        // The TCP listener's stack hands on Pingora's plain stream.
        let mut l4 = stream
            .into_any()
            .downcast::<L4Stream>()
            .map_err(|_| sni::PeekError::NotPlain)?;
        let name = sni::peek(&mut l4, self.peek_timeout).await?;
        Ok((l4, name))
    }
}

/// A route's name for logs: `LISTENER[i]`.
pub(crate) fn name(listener: &str, index: usize) -> Arc<str> {
    Arc::from(format!("{listener}[{index}]").as_str())
}
