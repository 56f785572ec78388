//! Checks of a request head before routing, by the listener's [`HeadRules`]: its size,
//! its target's length and its header count (RFC 9110's 431 and 414), `Host` as RFC
//! 9112 §3.2 requires (400 when missing on HTTP/1.1 or given twice), and the path,
//! normalised in place (see `routing::normalize_path`) so that routes, filters and the
//! backend all see the same one. Also the one header change made before routing: a
//! retired `Upgrade: h2c` is dropped ([`drop_h2c_upgrade`]).

use crate::routing::normalize_path;
use crate::vocab::HeadRules;
use pingora_http::RequestHeader;

/// Why a head was refused: the status to answer and the reason label of
/// `tioga_http_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Checks `req` against `rules`, normalising its path when they say so.
pub(crate) fn check(req: &mut RequestHeader, rules: &HeadRules) -> Result<(), Refusal> {
    let target = req.raw_path().len();
    if target > rules.max_uri_length {
        return Err(refuse(414, "uri_too_long"));
    }
    if req.headers.len() > rules.max_header_count {
        return Err(refuse(431, "too_many_headers"));
    }
    // The request line and each `name: value\r\n`, as sent.
    let size = req.method.as_str().len()
        + target
        + 12
        + req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > rules.max_header_size {
        return Err(refuse(431, "header_too_large"));
    }
    check_host(req)?;
    if rules.normalize_path {
        normalize(req)?;
    }
    Ok(())
}

/// Drops a client's request to switch to cleartext HTTP/2 (`Upgrade: h2c`), which RFC
/// 9113 retired: a backend that accepted it would take the connection's next requests
/// in h2c, past the listener's routes and filters ("h2c smuggling"). The request goes
/// on as plain HTTP/1.1.
pub(crate) fn drop_h2c_upgrade(req: &mut RequestHeader) {
    let asks_h2c = req.headers.get_all(http::header::UPGRADE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"))
    });
    if asks_h2c {
        req.remove_header(&http::header::UPGRADE);
        req.remove_header("http2-settings");
        req.remove_header(&http::header::CONNECTION);
    }
}

/// Exactly one `Host` on HTTP/1.1, even with an absolute-form target (RFC 9112
/// §3.2.2); HTTP/1.0 may omit it.
fn check_host(req: &RequestHeader) -> Result<(), Refusal> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Err(refuse(400, "duplicate_host")),
        (None, _) if req.version == http::Version::HTTP_11 => Err(refuse(400, "missing_host")),
        _ => Ok(()),
    }
}

/// Replaces the path with its normal form (the query is kept as sent).
fn normalize(req: &mut RequestHeader) -> Result<(), Refusal> {
    if !req.raw_path_is_utf8() {
        return Err(refuse(400, "bad_path"));
    }
    let normal = match normalize_path(req.uri.path()) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(normal)) => normal,
        Err(why) => {
            log::debug!("refused path {:?}: {why}", req.uri.path());
            return Err(refuse(400, "bad_path"));
        }
    };
    let path_and_query = match req.uri.query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| refuse(400, "bad_path"))?,
    );
    let uri = http::Uri::from_parts(parts).map_err(|_| refuse(400, "bad_path"))?;
    req.set_uri(uri);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (n, v) in headers {
            req.append_header(n.to_string(), *v).unwrap();
        }
        req
    }

    fn status(req: &mut RequestHeader, rules: &HeadRules) -> Option<u16> {
        check(req, rules).err().map(|r| r.status)
    }

    #[test]
    fn the_path_is_normalised_and_the_query_kept() {
        let mut req = head("/public/%2e%2e/admin?x=/../y", &[("host", "a")]);
        check(&mut req, &HeadRules::default()).unwrap();
        assert_eq!(req.raw_path(), b"/admin?x=/../y");
        let mut req = head("/public/../admin", &[("host", "a")]);
        let keep = HeadRules {
            normalize_path: false,
            ..HeadRules::default()
        };
        check(&mut req, &keep).unwrap();
        assert_eq!(req.raw_path(), b"/public/../admin", "kept as sent");
    }

    #[test]
    fn host_is_required_once_on_http_1_1() {
        let rules = HeadRules::default();
        assert_eq!(status(&mut head("/", &[]), &rules), Some(400));
        assert_eq!(
            status(&mut head("/", &[("host", "a"), ("host", "b")]), &rules),
            Some(400)
        );
        let mut old = head("/", &[]);
        old.set_version(http::Version::HTTP_10);
        assert_eq!(status(&mut old, &rules), None, "HTTP/1.0 may omit Host");
        assert_eq!(status(&mut head("http://a/x", &[]), &rules), Some(400));
    }

    #[test]
    fn limits_answer_414_and_431() {
        let rules = HeadRules {
            max_uri_length: 20,
            max_header_count: 2,
            max_header_size: 100,
            ..HeadRules::default()
        };
        let long = format!("/{}", "a".repeat(20));
        assert_eq!(
            status(&mut head(&long, &[("host", "a")]), &rules),
            Some(414)
        );
        let many = [("host", "a"), ("x-1", "1"), ("x-2", "2")];
        assert_eq!(status(&mut head("/", &many), &rules), Some(431));
        let big = "v".repeat(80);
        assert_eq!(
            status(&mut head("/", &[("host", "a"), ("x", &big)]), &rules),
            Some(431)
        );
        assert_eq!(status(&mut head("/", &[("host", "a")]), &rules), None);
    }

    #[test]
    fn an_ambiguous_path_is_refused() {
        let mut req = head("/public/..;/admin", &[("host", "a")]);
        assert_eq!(
            check(&mut req, &HeadRules::default()),
            Err(refuse(400, "bad_path"))
        );
    }
}

#[cfg(test)]
mod h2c_tests {
    use super::*;

    fn request(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            req.append_header(*k, *v).unwrap();
        }
        req
    }

    #[test]
    fn an_h2c_upgrade_goes_on_as_plain_http1() {
        let mut req = request(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "H2C"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ("host", "x"),
        ]);
        drop_h2c_upgrade(&mut req);
        for gone in ["connection", "upgrade", "http2-settings"] {
            assert!(req.headers.get(gone).is_none(), "{gone} removed");
        }
        assert_eq!(req.headers["host"], "x");
    }

    #[test]
    fn a_websocket_upgrade_is_left_alone() {
        let mut req = request(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        drop_h2c_upgrade(&mut req);
        assert_eq!(req.headers["upgrade"], "websocket");
        assert_eq!(req.headers["connection"], "Upgrade");
    }
}
