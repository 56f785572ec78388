//! Builds the access-log entry of one HTTP request, off the proxy's main path.

use super::http::RouteTarget;
use crate::observability::access_log::Entry;
use pingora_proxy::Session;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The parts of the request context the entry needs.
pub(crate) struct Summary {
    pub client: Option<SocketAddr>,
    pub backend: Option<SocketAddr>,
    pub upstream: Option<Duration>,
    pub retries: u32,
}

fn header(session: &Session, name: http::HeaderName) -> String {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The entry for a finished request.
pub(crate) fn entry(
    session: &Session,
    listener: &Arc<str>,
    target: Option<&RouteTarget>,
    s: Summary,
    status: u16,
    elapsed: Duration,
) -> Entry {
    let req = session.req_header();
    Entry {
        time: SystemTime::now(),
        protocol: "http",
        client: s.client,
        listener: listener.clone(),
        route: target.map(|t| t.name.clone()),
        pool: target
            .and_then(|t| t.pool.as_ref())
            .map(|p| Arc::from(p.name())),
        backend: s.backend,
        method: req.method.as_str().to_string(),
        path: req
            .uri
            .path_and_query()
            .map_or_else(|| req.uri.path().to_string(), |pq| pq.to_string()),
        host: header(session, http::header::HOST),
        referer: header(session, http::header::REFERER),
        user_agent: header(session, http::header::USER_AGENT),
        status,
        duration: elapsed.as_secs_f64(),
        upstream_duration: s.upstream.map(|d| d.as_secs_f64()),
        bytes_in: session.body_bytes_read() as u64,
        bytes_out: session.body_bytes_sent() as u64,
        retries: s.retries,
    }
}
