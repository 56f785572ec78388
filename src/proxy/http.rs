//! The L7 listener's hooks, which [`LiveHttp`](super::live::LiveHttp) runs as Pingora's
//! `ProxyHttp`, kept thin.
//!
//! `request_filter` finds the route (404 when none) and runs its filters' request
//! hooks, which may answer; `upstream_peer` asks the route's
//! pool for a backend (503 when none is eligible); `fail_to_connect` retries on another
//! backend while `retries` allows; `fail_to_proxy` maps a read timeout to 504 and other
//! upstream failures to 502. `X-Forwarded-*` headers are added on the way out; `Host`
//! is left as the client sent it. Bodies stream through Pingora untouched.

use super::tls::ClientSubject;
use crate::filter::{Context, Decision, Filter, FilterChain, Hooks, Response};
use crate::observability::metrics::{GaugeGuard, ListenerMetrics, RouteMetrics};
use crate::observability::AccessLog;
use crate::routing::key::request_key;
use crate::routing::RouteTable;
use crate::upstream::proxy_header;
use crate::upstream::{Attempt, PeerTemplate, Pool};
use crate::vocab::{Balance, HeadRules};
use bytes::Bytes;
use pingora_core::protocols::http::error_resp;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a route sends requests.
pub(crate) struct RouteTarget {
    /// `LISTENER[i]`, for logs and metrics.
    pub(crate) name: Arc<str>,
    /// The pool, shared with every other listener naming it; `None` when the route's
    /// filters always answer.
    pub(crate) pool: Option<Arc<Pool>>,
    /// The route's filters, in order.
    pub(crate) filters: FilterChain,
    /// The route's request counters.
    pub(crate) metrics: RouteMetrics,
    /// Makes the pool's peers (its protocol and TLS to the backends).
    pub(crate) peers: Option<Arc<PeerTemplate>>,
}

impl RouteTarget {
    fn pool_name(&self) -> &str {
        self.pool.as_ref().map_or("", |p| p.name())
    }
}

/// One HTTP listener's proxy logic.
pub(crate) struct HttpProxy {
    /// The listener's name.
    pub(crate) listener: Arc<str>,
    /// Whether the listener terminates TLS (for `X-Forwarded-Proto`).
    pub(crate) tls: bool,
    /// The compiled route table.
    pub(crate) routes: RouteTable<RouteTarget>,
    /// The listener's gauges.
    pub(crate) metrics: ListenerMetrics,
    /// Counters of requests that matched no route.
    pub(crate) no_route: RouteMetrics,
    /// The access log, if enabled.
    pub(crate) access_log: Option<Arc<AccessLog>>,
    /// What the listener accepts of a request head.
    pub(crate) head_rules: HeadRules,
    /// The path answered `200 ok` before routing (`healthz`).
    pub(crate) healthz: Option<String>,
}

/// Per-request state.
pub(crate) struct RequestCtx {
    route: Option<usize>,
    /// The route's pool in use, once a backend is asked for.
    attempt: Option<Attempt>,
    client: Option<SocketAddr>,
    /// Filters' typed per-request state.
    state: http::Extensions,
    start: Instant,
    upstream_start: Option<Instant>,
    upstream_head: Option<Instant>,
    _active: Option<GaugeGuard>,
    /// The verified subject of the client's certificate (mTLS).
    tls_client: Option<String>,
    /// A non-zero `grpc-status` the backend ended the call with.
    grpc_status: Option<u32>,
    /// `Retry-After` seconds for a 503 because the pool was too busy.
    retry_after: Option<u64>,
    /// The sticky id the request carried (once looked up).
    sticky: Option<Option<Vec<u8>>>,
}

impl HttpProxy {
    fn target(&self, route: Option<usize>) -> Option<&RouteTarget> {
        self.routes.get(route?)
    }

    /// The route the request took, once `request_filter` chose one.
    pub(crate) fn route_target(&self, ctx: &RequestCtx) -> Option<&RouteTarget> {
        self.target(ctx.route)
    }

    /// The context a filter of `target` sees.
    fn filter_context<'a>(
        &'a self,
        target: &'a RouteTarget,
        client: Option<SocketAddr>,
        tls_client: Option<&'a str>,
        state: &'a mut http::Extensions,
    ) -> Context<'a> {
        Context::new(
            &self.listener,
            Some(&target.name),
            target.pool_name(),
            client,
            self.tls,
            state,
        )
        .with_tls_client(tls_client)
    }

    /// Runs `run` for each filter of the request's route that implements `hook`.
    fn each_filter(
        &self,
        ctx: &mut RequestCtx,
        hook: Hooks,
        mut run: impl FnMut(&dyn Filter, &mut Context<'_>) -> Result<()>,
    ) -> Result<()> {
        let Some(target) = self.target(ctx.route) else {
            return Ok(());
        };
        for f in target.filters.with(hook) {
            let tls_client = ctx.tls_client.as_deref();
            let mut fctx = self.filter_context(target, ctx.client, tls_client, &mut ctx.state);
            run(f, &mut fctx)?;
        }
        Ok(())
    }

    /// Sends a filter's answer to the client, through the route's response filters.
    async fn respond(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        resp: Response,
    ) -> Result<()> {
        let mut head = ResponseHeader::build(resp.status, Some(resp.headers.len() + 1))?;
        for (k, v) in resp.headers {
            head.append_header(k, v)?;
        }
        head.insert_header(http::header::CONTENT_LENGTH, resp.body.len())?;
        self.each_filter(ctx, Hooks::RESPONSE, |f, fctx| f.response(&mut head, fctx))?;
        let empty = resp.body.is_empty();
        session.write_response_header(Box::new(head), empty).await?;
        if !empty {
            session.write_response_body(Some(resp.body), true).await?;
        }
        Ok(())
    }
}

/// The listener's hooks. [`LiveHttp`](super::live::LiveHttp) is Pingora's `ProxyHttp` and
/// calls these for the app current when the request started; being plain methods, their
/// futures live inside its (boxed) ones rather than in boxes of their own.
impl HttpProxy {
    pub(crate) fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            route: None,
            attempt: None,
            client: None,
            state: http::Extensions::new(),
            start: Instant::now(),
            upstream_start: None,
            upstream_head: None,
            _active: None,
            tls_client: None,
            grpc_status: None,
            retry_after: None,
            sticky: None,
        }
    }

    /// Runs first: picks the route (no route → 404), then runs the route's filters'
    /// request hooks in order; the first that answers ends the request.
    pub(crate) async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        super::accept::head_parsed();
        ctx._active = self.metrics.track();
        ctx.client = session.client_addr().and_then(|a| a.as_inet()).copied();
        ctx.tls_client = ClientSubject::of(session.digest()).map(str::to_owned);
        if let Err(refusal) = super::head::check(session.req_header_mut(), &self.head_rules) {
            self.metrics.refused(refusal.reason);
            // The head is not trusted: the connection is not reused.
            session.set_keepalive(None);
            let head = error_resp::gen_error_response(refusal.status);
            session.write_response_header(Box::new(head), true).await?;
            return Ok(true);
        }
        super::head::drop_h2c_upgrade(session.req_header_mut());
        if let Some(path) = &self.healthz {
            if super::healthz::asks(path, session.req_header()) {
                super::healthz::answer(session).await?;
                return Ok(true);
            }
        }
        let Some((i, target)) = self.routes.find(session.req_header()) else {
            // Pingora's `respond_error` would also close the connection; a 404 is an
            // answer like any other, so the client keeps its connection (as with
            // HAProxy and nginx). A request with an unread body still gets
            // `Connection: close` from Pingora, so the body is never read as a request.
            let head = error_resp::gen_error_response(404);
            session.write_response_header(Box::new(head), true).await?;
            return Ok(true);
        };
        ctx.route = Some(i);
        for f in target.filters.with(Hooks::REQUEST) {
            let tls_client = ctx.tls_client.as_deref();
            let mut fctx = self.filter_context(target, ctx.client, tls_client, &mut ctx.state);
            if let Decision::Respond(resp) = f.request(session.req_header_mut(), &mut fctx).await? {
                self.respond(session, ctx, resp).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Chooses a backend from the route's pool, skipping those already tried.
    pub(crate) async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let target = self
            .target(ctx.route)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        let Some(pool) = &target.pool else {
            return Error::e_explain(
                ErrorType::HTTPStatus(503),
                format!(
                    "route {} has no pool and its filters did not answer",
                    target.name
                ),
            );
        };
        let attempt = ctx.attempt.get_or_insert_with(|| pool.attempt());
        if ctx.sticky.is_none() {
            ctx.sticky = Some(super::http_sticky::requested(pool, session.req_header()));
        }
        let sticky = ctx.sticky.as_ref().and_then(|s| s.as_deref());
        let chosen = match &pool.spec.balance {
            Balance::ConsistentHash(key) => {
                let client = ctx.client.map(|a| a.ip());
                let key = request_key(key, session.req_header(), client);
                attempt.next_sticky(sticky, &key).await
            }
            _ => attempt.next_sticky(sticky, b"").await,
        };
        let addr = match chosen {
            Ok(addr) => addr,
            Err(give_up) => {
                if give_up.busy() {
                    ctx.retry_after = pool.retry_after();
                }
                return Error::e_explain(
                    ErrorType::HTTPStatus(give_up.status()),
                    format!("pool {} has no eligible backend", pool.name()),
                );
            }
        };
        let mut peer = match &target.peers {
            Some(peers) => peers.peer(addr),
            None => HttpPeer::new(addr, false, String::new()),
        };
        peer.options.connection_timeout = Some(pool.spec.connect_timeout);
        peer.options.read_timeout = Some(pool.spec.read_timeout);
        if let (Some(version), Some(source)) = (pool.spec.proxy_protocol, ctx.client) {
            let local = session.server_addr().and_then(|a| a.as_inet()).copied();
            let timeout = pool.spec.connect_timeout;
            proxy_header::for_http_peer(&mut peer, version, source, local.unwrap_or(addr), timeout);
        }
        ctx.upstream_start.get_or_insert_with(Instant::now);
        Ok(Box::new(peer))
    }

    /// Adds `X-Forwarded-For` (appended), `-Proto` and `-Host`.
    pub(crate) async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        super::forwarded::add(req, ctx.client.map(|a| a.ip()), self.tls)?;
        self.each_filter(ctx, Hooks::UPSTREAM_REQUEST, |f, fctx| {
            f.upstream_request(req, fctx)
        })
    }

    /// The backend's answer head: feeds passive health, and retries a 502/503/504
    /// elsewhere when `retry_on` says so (see `http_retry.rs`).
    pub(crate) async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match &mut ctx.attempt {
            Some(attempt) => super::http_retry::on_answer(session, attempt, resp.status.as_u16()),
            None => Ok(()),
        }
    }

    /// Proxying failed after connecting: retry elsewhere when `retry_on` allows.
    pub(crate) fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("Peer: {peer}"));
        match &mut ctx.attempt {
            Some(attempt) => super::http_retry::on_error(session, attempt, e, client_reused),
            None => e,
        }
    }

    /// Runs the route's filters on the backend's response head.
    pub(crate) async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.upstream_start.is_some() {
            ctx.upstream_head.get_or_insert_with(Instant::now);
        }
        // A trailers-only gRPC answer carries its status in the head (gRPC is HTTP/2).
        if session.req_header().version == http::Version::HTTP_2 {
            ctx.grpc_status = super::grpc::failed_status(&resp.headers);
        }

        if session.is_process_shutting_down() {
            // Draining (upgrade or SIGTERM): tell the client to reconnect elsewhere.
            session.set_keepalive(None);
        }
        if let Some(attempt) = &ctx.attempt {
            let sent = ctx.sticky.as_ref().and_then(|s| s.as_deref());
            super::http_sticky::set_cookie(attempt, sent, resp, self.tls)?;
        }
        self.each_filter(ctx, Hooks::RESPONSE, |f, fctx| f.response(resp, fctx))?;
        if session.is_http2() {
            super::h2_retained::detach_head(resp);
        }
        Ok(())
    }

    /// Runs the route's filters on each response body chunk.
    pub(crate) fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        self.each_filter(ctx, Hooks::RESPONSE_BODY, |f, fctx| {
            f.response_body(body, end_of_stream, fctx)
        })?;
        if session.is_http2() {
            super::h2_retained::detach_body(body);
        }
        Ok(None)
    }

    /// Notes a gRPC call's status from the backend's trailers.
    pub(crate) fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(status) = super::grpc::failed_status(trailers) {
            ctx.grpc_status = Some(status);
        }
        Ok(())
    }

    /// Connecting failed: retry on another backend while `retries` allows.
    pub(crate) fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(attempt) = &mut ctx.attempt {
            log::warn!(
                "pool {}: connecting to {peer} failed: {e}",
                attempt.pool().name()
            );
            if attempt.connect_failed().is_ok() {
                e.set_retry(true);
            }
        }
        e
    }

    /// Runs when the request is done: counts it and writes its access-log line.
    pub(crate) async fn logging(
        &self,
        session: &mut Session,
        e: Option<&Error>,
        ctx: &mut RequestCtx,
    ) {
        super::accept::request_done();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or_else(|| e.map_or(0, error_status));
        let elapsed = ctx.start.elapsed();
        let target = self.target(ctx.route);
        target
            .map_or(&self.no_route, |t| &t.metrics)
            .record(status, elapsed.as_secs_f64());
        if let Some(log) = &self.access_log {
            log.log(&super::http_log::entry(
                session,
                &self.listener,
                ctx_summary(ctx, target),
                status,
                elapsed,
            ));
        }
    }

    /// Answers a failed request: 504 when the backend did not answer in time, 502 for
    /// other backend failures, the given status for our own refusals.
    pub(crate) async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = error_status(e);
        if code > 0 {
            // Pingora's error answer, through the route's response filters (headers a
            // route sets go on its 502/503/504 too).
            let mut head = error_resp::gen_error_response(code);
            if let Some(secs) = ctx.retry_after.filter(|_| code == 503) {
                let _ = head.insert_header(http::header::RETRY_AFTER, secs);
            }
            if let Err(err) =
                self.each_filter(ctx, Hooks::RESPONSE, |f, fctx| f.response(&mut head, fctx))
            {
                log::warn!("response filter on the {code} answer: {err}");
            }
            if let Err(err) = session.write_error_response(head, Bytes::new()).await {
                log::debug!("could not send {code} to the client: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: matches!(e.etype(), ErrorType::HTTPStatus(_)),
        }
    }
}

/// What the access log needs from the request's context.
fn ctx_summary<'a>(
    ctx: &'a RequestCtx,
    target: Option<&'a RouteTarget>,
) -> super::http_log::Summary<'a> {
    super::http_log::Summary {
        route: target.map(|t| &*t.name),
        pool: target.and_then(|t| t.pool.as_ref()).map(|p| p.name()),
        client: ctx.client,
        backend: ctx.attempt.as_ref().and_then(Attempt::backend),
        upstream: ctx
            .upstream_start
            .zip(ctx.upstream_head)
            .map(|(a, b)| b.duration_since(a)),
        retries: ctx.attempt.as_ref().map_or(0, Attempt::retries),
        tls_client: ctx.tls_client.as_deref(),
        grpc_status: ctx.grpc_status,
    }
}

/// The status sent for an error, or 0 when the client is gone.
fn error_status(e: &Error) -> u16 {
    use ErrorType::*;
    match (e.etype(), e.esource()) {
        (HTTPStatus(code), _) => *code,
        (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => 504,
        (_, ErrorSource::Upstream) => 502,
        (WriteError | ReadError | ConnectionClosed, ErrorSource::Downstream) => 0,
        (_, ErrorSource::Downstream) => 400,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let up = |t| *Error::new(t).into_up();
        let down = |t| *Error::new(t).into_down();
        assert_eq!(error_status(&up(ErrorType::ReadTimedout)), 504);
        assert_eq!(error_status(&up(ErrorType::ConnectRefused)), 502);
        assert_eq!(error_status(&up(ErrorType::ConnectTimedout)), 502);
        assert_eq!(error_status(&Error::new(ErrorType::HTTPStatus(503))), 503);
        assert_eq!(error_status(&down(ErrorType::ConnectionClosed)), 0);
    }
}
