//! What a reload swaps: each listener's app behind an `ArcSwap`.
//!
//! The listener's Pingora service (its sockets and accept stack) is built once; the app
//! it runs — routes, pools, filters, the access log — is replaced whole by a reload.
//! A request takes the app current when it starts ([`LiveHttp::new_ctx`]) and keeps it
//! to the end, so requests already routed finish on the config they started with; a
//! TCP connection keeps the app it was accepted with.

use super::http::{HttpProxy, RequestCtx};
use super::tcp::TcpProxy;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Duration;

/// A listener's current app, replaced by reloads.
pub(crate) type Slot<A> = Arc<ArcSwap<A>>;

/// A new slot holding `app`.
pub(crate) fn slot<A>(app: A) -> Slot<A> {
    Arc::new(ArcSwap::from_pointee(app))
}

/// An HTTP listener's `ProxyHttp`: each request runs on the app current at its start.
pub(crate) struct LiveHttp {
    /// The current app.
    pub(crate) slot: Slot<HttpProxy>,
}

/// A request's app and its state.
pub(crate) struct LiveCtx {
    app: Arc<HttpProxy>,
    ctx: RequestCtx,
}

#[async_trait]
impl ProxyHttp for LiveHttp {
    type CTX = LiveCtx;

    fn new_ctx(&self) -> LiveCtx {
        let app = self.slot.load_full();
        LiveCtx {
            ctx: app.new_ctx(),
            app,
        }
    }

    /// The app's `request_filter`; then an HTTP/1.1 upgrade it let through is proxied
    /// by Tioga's own loop (`upgrade`), not Pingora's.
    async fn request_filter(&self, session: &mut Session, c: &mut LiveCtx) -> Result<bool> {
        if c.app.request_filter(session, &mut c.ctx).await? {
            return Ok(true);
        }
        let tunnel = c
            .app
            .route_target(&c.ctx)
            .is_some_and(|target| super::upgrade::takes(session, target));
        if tunnel {
            // Boxed: the tunnel's state would otherwise size every request's future.
            Box::pin(super::upgrade::proxy(&c.app, session, &mut c.ctx)).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, c: &mut LiveCtx) -> Result<Box<HttpPeer>> {
        c.app.upstream_peer(session, &mut c.ctx).await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        c: &mut LiveCtx,
    ) -> Result<()> {
        c.app
            .upstream_request_filter(session, req, &mut c.ctx)
            .await
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        c: &mut LiveCtx,
    ) -> Result<()> {
        c.app
            .upstream_response_filter(session, resp, &mut c.ctx)
            .await
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        c: &mut LiveCtx,
        client_reused: bool,
    ) -> Box<Error> {
        c.app
            .error_while_proxy(peer, session, e, &mut c.ctx, client_reused)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        c: &mut LiveCtx,
    ) -> Result<()> {
        c.app.response_filter(session, resp, &mut c.ctx).await
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        c: &mut LiveCtx,
    ) -> Result<Option<Duration>> {
        c.app
            .response_body_filter(session, body, end_of_stream, &mut c.ctx)
    }

    fn upstream_response_trailer_filter(
        &self,
        session: &mut Session,
        trailers: &mut http::HeaderMap,
        c: &mut LiveCtx,
    ) -> Result<()> {
        c.app
            .upstream_response_trailer_filter(session, trailers, &mut c.ctx)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        c: &mut LiveCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        c.app.fail_to_connect(session, peer, &mut c.ctx, e)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, c: &mut LiveCtx) {
        c.app.logging(session, e, &mut c.ctx).await
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        c: &mut LiveCtx,
    ) -> FailToProxy {
        c.app.fail_to_proxy(session, e, &mut c.ctx).await
    }
}

/// A TCP listener's app: each connection runs on the app current when it is accepted.
pub(crate) struct LiveTcp {
    /// The current app.
    pub(crate) slot: Slot<TcpProxy>,
}

#[async_trait]
impl ServerApp for LiveTcp {
    async fn process_new(
        self: &Arc<Self>,
        client: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let app = self.slot.load_full();
        app.process_new(client, shutdown).await
    }
}

impl super::accept::Served for LiveTcp {}
