//! The bytes `consistent_hash` hashes on, taken from a request or a connection.
//!
//! A request that lacks the configured header, cookie or query parameter hashes on
//! its client address instead, so such clients still stick to one backend.

use crate::config::{Balance, HashKey};
use pingora_proxy::Session;
use std::borrow::Cow;
use std::net::IpAddr;

/// The key of `balance` for an HTTP request.
pub(crate) fn http_key<'a>(balance: &Balance, session: &'a Session) -> Cow<'a, [u8]> {
    let Balance::ConsistentHash(key) = balance else {
        return Cow::Borrowed(b"");
    };
    let req = session.req_header();
    let found: Option<Cow<'a, [u8]>> = match key {
        HashKey::ClientIp => None,
        HashKey::Uri => Some(Cow::Borrowed(
            req.uri
                .path_and_query()
                .map_or(req.uri.path(), |pq| pq.as_str())
                .as_bytes(),
        )),
        HashKey::Header(name) => req.headers.get(name).map(|v| Cow::Borrowed(v.as_bytes())),
        HashKey::Cookie(name) => {
            crate::routing::cookie_value(&req.headers, name).map(Cow::Borrowed)
        }
        HashKey::Query(name) => req
            .uri
            .query()
            .and_then(|q| crate::routing::query_value(q, name))
            .map(Cow::Borrowed),
    };
    found.unwrap_or_else(|| {
        let ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        Cow::Owned(ip_key(ip))
    })
}

/// The key for a client address.
pub(crate) fn ip_key(ip: Option<IpAddr>) -> Vec<u8> {
    match ip {
        Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Some(IpAddr::V6(v6)) => v6.octets().to_vec(),
        None => Vec::new(),
    }
}
