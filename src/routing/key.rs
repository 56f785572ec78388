//! The bytes a request is keyed on, for `consistent_hash` and `rate_limit`.
//!
//! A request that lacks the configured header, cookie or query parameter is keyed on
//! its client address instead, so such clients still get one consistent key.

use crate::vocab::HashKey;
use http::request::Parts;
use std::borrow::Cow;
use std::net::IpAddr;

/// The key `key` picks out of `req`, from a client at `client`.
pub(crate) fn request_key<'a>(
    key: &HashKey,
    req: &'a Parts,
    client: Option<IpAddr>,
) -> Cow<'a, [u8]> {
    let found: Option<&'a [u8]> = match key {
        HashKey::ClientIp => None,
        HashKey::Uri => Some(
            req.uri
                .path_and_query()
                .map_or(req.uri.path(), |pq| pq.as_str())
                .as_bytes(),
        ),
        HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes()),
        HashKey::Cookie(name) => super::cookie_value(&req.headers, name),
        HashKey::Query(name) => req.uri.query().and_then(|q| super::query_value(q, name)),
    };
    found.map_or_else(|| Cow::Owned(ip_key(client)), Cow::Borrowed)
}

/// The key of a client address (its octets; empty when unknown).
pub(crate) fn ip_key(ip: Option<IpAddr>) -> Vec<u8> {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Some(IpAddr::V6(v6)) => v6.octets().to_vec(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn picks_each_kind_and_falls_back_to_the_client() {
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let req = parts(
            "/a?x=1&u=bob",
            &[("x-user", "ann"), ("cookie", "s=42; t=1")],
        );
        let key = |k: &str| request_key(&k.parse().unwrap(), &req, ip).into_owned();
        assert_eq!(key("uri"), b"/a?x=1&u=bob");
        assert_eq!(key("header:x-user"), b"ann");
        assert_eq!(key("cookie:s"), b"42");
        assert_eq!(key("query:u"), b"bob");
        assert_eq!(key("client_ip"), vec![10, 0, 0, 1]);
        assert_eq!(key("header:missing"), vec![10, 0, 0, 1]);
        let mapped: Option<IpAddr> = Some("::ffff:10.0.0.1".parse().unwrap());
        assert_eq!(ip_key(mapped), vec![10, 0, 0, 1]);
    }
}
