//! The accept stack: what happens to a client connection between Pingora's accept and
//! the listener's app, as named layers composed here and nowhere else. Outermost first,
//! each with what it owns and its switch:
//!
//! 1. [`buffering`]: each endpoint's Pingora L4 buffers, and its TLS. Plain endpoints
//!    never read-buffer; their write buffer is off where another layer writes to the
//!    socket itself (coalescing, or the TCP relay's splice).
//! 2. [`first_request`]: waits for a new connection's first bytes, holding no buffer,
//!    so a shutdown cannot drop it unanswered. On for HTTP listeners.
//! 3. [`coalesce`]: the connection's write buffer, which sends a worker's answers
//!    together. HTTP listeners' `coalesce` (default true).
//! 0. [`limit`]: before any other layer, a listener with `max_connections` open closes
//!    new connections at once. HTTP and TCP listeners alike; off by default.
//! 4. [`head_timeout`]: each request's head must be complete by a deadline, or the
//!    connection is closed. HTTP listeners' `request_header_timeout` and
//!    `keepalive_timeout`; plain and TLS connections alike. Its deadline for a new
//!    connection starts at accept, so it also bounds the first-request guard's wait.
//!    HTTP/1 only: an HTTP/2 connection (h2 by ALPN, or h2c prior knowledge, told by
//!    the first bytes) is let go of once recognised, since its streams run in tasks of
//!    their own; Pingora closes it after `keepalive_timeout` without a stream.
//!
//! Right after layer 0, [`proxy_protocol`]: the PROXY header of a trusted sender, whose
//! address becomes the connection's client address; HTTP and TCP listeners'
//! `proxy_protocol`. On a TLS endpoint Pingora runs it before the handshake (its
//! pre-TLS hook), so there it comes before layer 0.
//!
//! The per-connection layers (2 and 3) apply to plain-TCP connections only: a TLS
//! handshake has already read from the client, and TLS endpoints keep Pingora's
//! buffers. Every connection leaves Pingora's accept task for a small task of its
//! own, and a plain HTTP/1 connection is held as little more than its socket between
//! requests ([`park`]). What the layers need from each other is settled
//! in [`Stack`]'s constructors, from the same switches: coalescing is on exactly where
//! the write buffer is off; and the guard reads before coalescing wraps the stream, as
//! it puts the bytes back into Pingora's stream.
//!
//! # `threads: 1` and work stealing
//!
//! Coalescing is the one place where I/O differs with the worker's runtime, decided by
//! [`Flush::of_this_worker`] for each connection. With `threads: 1` Pingora runs each
//! worker on a current-thread runtime, and a flushed answer is sent at the end of the
//! worker's pass over its ready connections, with the others of that pass
//! ([`Flush::EndOfPass`]). With more threads workers steal each other's tasks, and a
//! flush sends at once, as a plain write buffer ([`Flush::AtOnce`]): the flusher keeps
//! its list per thread, which is only right where a connection's task never moves to
//! another one. With `coalesce: false` both send as Pingora's write buffer does.

mod buffering;
mod coalesce;
mod first_request;
mod head_timeout;
mod limit;
mod park;
mod proxy_protocol;

pub(crate) use head_timeout::{head_parsed, request_done, HeadTimeouts};
pub(crate) use limit::Limit;
pub(crate) use park::Served;
#[cfg(feature = "fuzzing")]
pub(crate) use proxy_protocol::parse as parse_proxy_header;
pub(crate) use proxy_protocol::ProxyProtocol;

use super::tls;
use crate::vocab::TlsVersion;
use async_trait::async_trait;
use buffering::Buffering;
use coalesce::Coalesce;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::ALPN;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use pingora_core::services::ServiceWithDependents;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::runtime::{Handle, RuntimeFlavor};

/// One listener's accept stack: each layer's switch (module docs).
#[derive(Debug)]
pub(crate) struct Stack {
    tls: Option<tls::ListenerTls>,
    buffering: Buffering,
    layers: Layers,
    timeouts: Option<HeadTimeouts>,
    limit: Option<Limit>,
    /// HTTP/2: offered by ALPN on TLS endpoints, h2c recognised on plain ones.
    http2: bool,
    proxy_protocol: Option<ProxyProtocol>,
}

/// The per-connection layers that are on.
#[derive(Clone, Debug)]
struct Layers {
    proxy_protocol: Option<ProxyProtocol>,
    first_request: bool,
    coalesce: bool,
    /// The oldest TLS version a TLS connection may have negotiated.
    min_tls: TlsVersion,
}

impl Stack {
    /// An HTTP listener's: the first-request guard, and coalescing as `coalesce` says,
    /// which replaces Pingora's write buffer on plain endpoints.
    pub(crate) fn http(
        tls: Option<tls::ListenerTls>,
        coalesce: bool,
        timeouts: HeadTimeouts,
    ) -> Stack {
        let min_tls = tls
            .as_ref()
            .map_or(TlsVersion::V1_2, |t| t.spec.min_version);
        Stack {
            limit: None,
            http2: false,
            proxy_protocol: None,
            timeouts: Some(timeouts),
            tls,
            buffering: if coalesce {
                Buffering::None
            } else {
                Buffering::WriteOnly
            },
            layers: Layers {
                proxy_protocol: None,
                first_request: true,
                coalesce,
                min_tls,
            },
        }
    }

    /// A TCP listener's: no buffer either way and no per-connection layer, so the relay
    /// gets Pingora's plain stream and may splice from its socket (`splice`).
    pub(crate) fn tcp() -> Stack {
        Stack {
            limit: None,
            http2: false,
            proxy_protocol: None,
            timeouts: None,
            tls: None,
            buffering: Buffering::None,
            layers: Layers {
                proxy_protocol: None,
                first_request: false,
                coalesce: false,
                min_tls: TlsVersion::V1_2,
            },
        }
    }

    /// Speaks HTTP/2 besides HTTP/1: offered by ALPN with TLS, h2c without.
    pub(crate) fn with_http2(mut self, http2: bool) -> Stack {
        self.http2 = http2;
        self
    }

    /// Closes new connections at once while `limit` are open (layer 0).
    pub(crate) fn with_limit(mut self, limit: Option<Limit>) -> Stack {
        self.limit = limit;
        self
    }

    /// Reads a PROXY header from each connection of trusted senders, and closes the
    /// others (layer 0b, [`proxy_protocol`]).
    pub(crate) fn with_proxy_protocol(mut self, proxy: Option<ProxyProtocol>) -> Stack {
        self.layers.proxy_protocol = proxy.clone();
        self.proxy_protocol = proxy;
        self
    }

    /// The Pingora service that serves `app` on `binds` through this stack. Fails when
    /// a TLS certificate or key cannot be loaded.
    pub(crate) fn service<A>(
        &self,
        name: String,
        app: A,
        binds: &[SocketAddr],
    ) -> pingora_error::Result<Box<dyn ServiceWithDependents>>
    where
        A: Served,
    {
        // Every app goes through `App`, even with no layer on: it moves each connection
        // out of Pingora's accept task into a small one of its own (`park`).
        let app = App {
            layers: self.layers.clone(),
            limit: self.limit.clone(),
            timeouts: self.timeouts.clone(),
            app: Arc::new(app),
        };
        self.listen(Service::new(name, app), binds)
    }

    fn listen<A>(
        &self,
        mut service: Service<A>,
        binds: &[SocketAddr],
    ) -> pingora_error::Result<Box<dyn ServiceWithDependents>>
    where
        A: ServerApp + Send + Sync + 'static,
    {
        if let (Some(proxy), Some(_)) = (&self.proxy_protocol, &self.tls) {
            // TLS endpoints: before the handshake (module docs).
            service
                .endpoints()
                .set_pre_tls_callback(Arc::new(proxy.clone()));
        }
        for addr in binds {
            let endpoint =
                self.buffering
                    .endpoint(&addr.to_string(), self.tls.as_ref(), self.http2)?;
            service.add_listener(endpoint);
        }
        Ok(Box::new(service))
    }
}

impl Layers {
    /// Runs the per-connection layers on a new connection, outermost first, and tells
    /// whether it speaks HTTP/2 (ALPN, or a preface as first bytes); `None` when the
    /// client left before sending anything.
    async fn apply(&self, stream: Stream) -> Option<(Stream, bool)> {
        if !stream.as_any().is::<L4Stream>() {
            // TLS (module docs)
            if !tls::version_allowed(stream.get_ssl_digest().as_deref(), self.min_tls) {
                log::debug!("closed a TLS connection older than the listener's min_version");
                return None;
            }
            let h2 = stream.selected_alpn_proto() == Some(ALPN::H2);
            return Some((stream, h2));
        }
        let mut l4: Box<L4Stream> = stream.into_any().downcast().ok()?;
        if let Some(proxy) = &self.proxy_protocol {
            if let Err(e) = proxy.accept(&mut l4).await {
                log::debug!("PROXY protocol: connection closed: {e}");
                return None;
            }
        }
        let h2 = match self.first_request {
            true => first_request::wait(&mut l4, self.proxy_protocol.is_some()).await?,
            false => false,
        };
        if !self.coalesce {
            return Some((l4, h2));
        }
        Some((Box::new(Coalesce::new(l4, Flush::of_this_worker())), h2))
    }
}

/// An app behind its listener's per-connection layers.
struct App<A> {
    layers: Layers,
    limit: Option<Limit>,
    timeouts: Option<HeadTimeouts>,
    app: Arc<A>,
}

#[async_trait]
impl<A: Served> ServerApp for App<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Dropping `stream` closes a refused connection.
        let slot = match &self.limit {
            Some(limit) => Some(limit.admit()?),
            None => None,
        };
        // Pingora's accept task, whose future is sized for the TLS handshake, ends
        // here; the connection goes on in a task of its own, small while idle (`park`).
        let (app, mut shutdown) = (self.clone(), shutdown.clone());
        if A::HTTP {
            tokio::spawn(async move {
                let _slot = slot;
                app.connection(stream, &mut shutdown).await;
            });
        } else {
            // Kept apart so that an idle relayed connection's task is not sized for
            // the HTTP paths it never takes.
            tokio::spawn(async move {
                let _slot = slot;
                app.relayed(stream, &shutdown).await;
            });
        }
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

impl<A: Served> App<A> {
    /// A connection of an app that is not HTTP (the L4 relay), from the layers on.
    async fn relayed(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let Some((stream, _)) = Box::pin(self.layers.apply(stream)).await else {
            return;
        };
        let mut reused = self.app.process_new(stream, shutdown).await;
        while let Some(stream) = reused {
            reused = self.app.process_new(stream, shutdown).await;
        }
    }

    /// A connection, from the per-connection layers to its end.
    async fn connection(&self, stream: Stream, shutdown: &mut ShutdownWatch) {
        let connection = async {
            // Boxed: its state is needed once, and would otherwise size this task.
            let (stream, h2) = Box::pin(self.layers.apply(stream)).await?;
            let plain = stream.as_any().is::<L4Stream>() || stream.as_any().is::<Coalesce>();
            if A::HTTP && !h2 && plain {
                park::serve(&self.app, stream, shutdown).await;
                return None;
            }
            if h2 {
                head_timeout::let_go();
            }
            // A stream the app hands back goes to it again, as Pingora would, without
            // passing the layers twice.
            let mut reused = self.app.process_new(stream, shutdown).await;
            while let Some(stream) = reused {
                reused = self.app.process_new(stream, shutdown).await;
            }
            None::<()>
        };
        let connection = std::pin::pin!(connection);
        match &self.timeouts {
            Some(timeouts) => timeouts.guard(connection).await,
            None => connection.await,
        };
    }
}

/// When a coalesced connection's flushed writes leave (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flush {
    /// At the end of the worker's pass, with the pass's other answers.
    EndOfPass,
    /// At once, as a plain write buffer.
    AtOnce,
}

impl Flush {
    /// The mode of the worker that runs the caller: [`Flush::EndOfPass`] on a
    /// current-thread runtime (`threads: 1`), else [`Flush::AtOnce`]. Taken from the
    /// runtime rather than the config because the flusher is correct only where tasks
    /// stay on their thread.
    fn of_this_worker() -> Flush {
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::CurrentThread) => Flush::EndOfPass,
            _ => Flush::AtOnce,
        }
    }
}

#[cfg(test)]
mod tests;
