//! HTTP/1.1 `Upgrade` (WebSocket) requests, proxied by Tioga's own loop.
//!
//! Pingora 0.9's duplex loop can end an upgraded connection right after its `101`: an
//! upgrade request has no body, so the end of that body is queued for the backend
//! side before the backend answers, and when the `101` is read first that end is taken
//! for the end of the tunnel (cloudflare/pingora#946). It shows under load, as a
//! WebSocket whose first frame finds the connection closed. Here the request's own
//! (empty) body is never sent on, and the tunnel ends only when a side closes.
//!
//! Everything else is the listener's usual path: the route's backend choice and
//! retries on a failed connect (`upstream_peer`, `fail_to_connect`), `X-Forwarded-*`
//! and the route's request filters (`upstream_request_filter`), passive health and
//! response filters on the answer head, the pool's timeouts and TLS to the backend
//! (the peer's options), and the access log once the connection ends.

use super::http::{HttpProxy, RequestCtx, RouteTarget};
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::http::v1::client::HttpSession as Upstream;
use pingora_core::protocols::http::HttpTask;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_proxy::Session;
use std::sync::OnceLock;

/// Whether Tioga proxies this request itself: an HTTP/1.1 upgrade without a body, to
/// a pool spoken to in HTTP/1.1.
pub(super) fn takes(session: &Session, target: &RouteTarget) -> bool {
    target.pool.is_some()
        && target.peers.as_ref().is_none_or(|p| p.speaks_http1())
        && !session.is_http2()
        && session.is_upgrade_req()
        && session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_none()
        && session
            .req_header()
            .headers
            .get(http::header::TRANSFER_ENCODING)
            .is_none()
}

/// Connections to backends for upgrades: new ones, never pooled (the connection is
/// the client's for its whole life).
fn connector() -> &'static TransportConnector {
    static CONNECTOR: OnceLock<TransportConnector> = OnceLock::new();
    CONNECTOR.get_or_init(|| TransportConnector::new(None))
}

/// Proxies the upgrade request and, on a `101`, both directions until one side closes.
pub(super) async fn proxy(
    app: &HttpProxy,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let (mut upstream, head) = loop {
        let peer = app.upstream_peer(session, ctx).await?;
        let mut upstream = match connect(&peer).await {
            Ok(upstream) => upstream,
            Err(e) => match app.fail_to_connect(session, &peer, ctx, e) {
                e if e.retry() => continue,
                e => return Err(e),
            },
        };
        let mut req = session.req_header().clone();
        app.upstream_request_filter(session, &mut req, ctx).await?;
        upstream
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| e.into_up())?;
        let mut head = match upstream
            .read_response_task()
            .await
            .map_err(|e| e.into_up())?
        {
            HttpTask::Header(head, _) => head,
            other => {
                let what = other.type_str();
                return pingora_core::Error::e_explain(
                    pingora_core::ErrorType::InvalidHTTPHeader,
                    format!("upgrade: the backend sent {what} before its answer head"),
                );
            }
        };
        match app.upstream_response_filter(session, &mut head, ctx).await {
            Ok(()) => break (upstream, head),
            // A 502/503/504 that `retry_on` sends to another backend.
            Err(e) if e.retry() => continue,
            Err(e) => return Err(e),
        }
    };
    let mut head = head;
    app.response_filter(session, &mut head, ctx).await?;
    let end = upstream.is_body_done();
    session.write_response_header(head, end).await?;
    if !session.was_upgraded() {
        // Refused: the answer's body, then the connection closes (it was to change
        // protocols; nothing else is expected on it).
        session.set_keepalive(None);
        if !end {
            forward_answer(&mut upstream, session).await?;
        }
        return Ok(());
    }
    // Past the 101 an error only ends the tunnel, as a closed side does: the client has
    // its answer, and nothing else can be sent to it.
    if let Err(e) = both_ways(&mut upstream, session).await {
        log::debug!("upgraded connection ended: {e}");
    }
    upstream.shutdown().await;
    Ok(())
}

/// A new connection to `peer`, with the pool's timeouts as Pingora's own connector
/// sets them.
async fn connect(peer: &HttpPeer) -> Result<Upstream> {
    let stream = connector().new_stream(peer).await?;
    let mut upstream = Upstream::new_with_options(stream, peer);
    upstream.read_timeout = peer.options.read_timeout;
    upstream.write_timeout = peer.options.write_timeout;
    Ok(upstream)
}

/// The rest of a refused upgrade's answer, as it comes.
async fn forward_answer(upstream: &mut Upstream, session: &mut Session) -> Result<()> {
    loop {
        let task = upstream
            .read_response_task()
            .await
            .map_err(|e| e.into_up())?;
        let end = task.is_end();
        session
            .downstream_session
            .response_duplex_vec(vec![task])
            .await?;
        if end {
            return Ok(());
        }
    }
}

/// The upgraded connection: bytes both ways until either side closes. The pool's
/// `read_timeout` bounds each wait for the backend, as it does for any answer.
async fn both_ways(upstream: &mut Upstream, session: &mut Session) -> Result<()> {
    upstream.maybe_upgrade_body_writer();
    let mut client_open = true;
    loop {
        tokio::select! {
            body = session.downstream_session.read_body_or_idle(!client_open), if client_open => {
                match body? {
                    Some(data) => {
                        upstream.write_body(&data).await.map_err(|e| e.into_up())?;
                    }
                    None => {
                        // The client is done sending; the backend may still answer.
                        client_open = false;
                        upstream.finish_body().await.map_err(|e| e.into_up())?;
                    }
                }
            }
            task = upstream.read_response_task() => {
                let task = task.map_err(|e| e.into_up())?;
                let end = task.is_end();
                session.downstream_session.response_duplex_vec(vec![task]).await?;
                if end {
                    return Ok(());
                }
            }
        }
    }
}
