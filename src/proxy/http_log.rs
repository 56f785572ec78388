//! Builds the access-log entry of one HTTP request, borrowing from the request.

use super::http::RouteTarget;
use crate::observability::access_log::Entry;
use pingora_proxy::Session;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// The parts of the request context the entry needs.
pub(crate) struct Summary {
    pub client: Option<SocketAddr>,
    pub backend: Option<SocketAddr>,
    pub upstream: Option<Duration>,
    pub retries: u32,
}

fn header(session: &Session, name: http::HeaderName) -> &str {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The entry for a finished request.
pub(crate) fn entry<'a>(
    session: &'a Session,
    listener: &'a str,
    target: Option<&'a RouteTarget>,
    s: Summary,
    status: u16,
    elapsed: Duration,
) -> Entry<'a> {
    let req = session.req_header();
    Entry {
        time: SystemTime::now(),
        protocol: "http",
        client: s.client,
        listener,
        route: target.map(|t| &*t.name),
        pool: target.and_then(|t| t.pool.as_ref()).map(|p| p.name()),
        backend: s.backend,
        method: req.method.as_str(),
        path: req
            .uri
            .path_and_query()
            .map_or_else(|| req.uri.path(), |pq| pq.as_str()),
        host: header(session, http::header::HOST),
        referer: header(session, http::header::REFERER),
        user_agent: header(session, http::header::USER_AGENT),
        status,
        duration: elapsed,
        upstream_duration: s.upstream,
        bytes_in: session.body_bytes_read() as u64,
        bytes_out: session.body_bytes_sent() as u64,
        retries: s.retries,
    }
}
