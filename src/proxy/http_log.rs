//! Builds the access-log entry of one HTTP request, borrowing from the request.

use crate::observability::access_log::Entry;
use pingora_proxy::Session;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// The parts of the request context the entry needs.
pub(crate) struct Summary<'a> {
    /// The route's name and its pool's, when a route was chosen.
    pub(crate) route: Option<&'a str>,
    pub(crate) pool: Option<&'a str>,
    pub(crate) client: Option<SocketAddr>,
    pub(crate) backend: Option<SocketAddr>,
    pub(crate) upstream: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) tls_client: Option<&'a str>,
    pub(crate) grpc_status: Option<u32>,
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
    s: Summary<'a>,
    status: u16,
    elapsed: Duration,
) -> Entry<'a> {
    let req = session.req_header();
    Entry {
        time: SystemTime::now(),
        protocol: match req.version {
            http::Version::HTTP_2 => "h2",
            http::Version::HTTP_10 => "http/1.0",
            _ => "http/1.1",
        },
        client: s.client,
        listener,
        route: s.route,
        pool: s.pool,
        backend: s.backend,
        method: req.method.as_str(),
        path: req
            .uri
            .path_and_query()
            .map_or_else(|| req.uri.path(), |pq| pq.as_str()),
        // HTTP/2 carries the host as `:authority`.
        host: match header(session, http::header::HOST) {
            "" => req.uri.authority().map_or("", |a| a.as_str()),
            host => host,
        },
        referer: header(session, http::header::REFERER),
        user_agent: header(session, http::header::USER_AGENT),
        status,
        duration: elapsed,
        upstream_duration: s.upstream,
        bytes_in: session.body_bytes_read() as u64,
        bytes_out: session.body_bytes_sent() as u64,
        retries: s.retries,
        tls_client: s.tls_client,
        grpc_status: s.grpc_status,
    }
}
