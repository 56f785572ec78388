//! The `X-Forwarded-*` headers Tioga adds to a request on its way to a backend.
//!
//! This runs once per proxied request, so it avoids the generic paths that cost most
//! here: the header name to look up is a constant (a `&str` is parsed on every lookup),
//! and the client's address is written without `core::fmt`.

use http::header::{HeaderName, HeaderValue, HOST};
use pingora_core::Result;
use pingora_http::RequestHeader;
use std::net::IpAddr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Appends the client to `X-Forwarded-For` (after every earlier hop, whether sent on
/// one line or several), and sets `X-Forwarded-Proto` and `X-Forwarded-Host` (from
/// `Host`, else the request target's authority, as HTTP/2 carries it).
pub(crate) fn add(req: &mut RequestHeader, client: Option<IpAddr>, tls: bool) -> Result<()> {
    if let Some(ip) = client {
        let mut xff = String::with_capacity(48);
        for prev in req.headers.get_all(&X_FORWARDED_FOR) {
            let prev = String::from_utf8_lossy(prev.as_bytes());
            let prev = prev.trim();
            if !prev.is_empty() {
                xff.push_str(prev);
                xff.push_str(", ");
            }
        }
        push_ip(&mut xff, ip);
        req.insert_header("x-forwarded-for", xff)?;
    }
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    req.insert_header("x-forwarded-proto", proto)?;
    let host = req
        .headers
        .get(HOST)
        .cloned()
        .or_else(|| req.uri.authority().and_then(|a| a.as_str().parse().ok()));
    if let Some(host) = host {
        req.insert_header("x-forwarded-host", host)?;
    }
    Ok(())
}

/// `ip` as its `Display` writes it; IPv4 without the formatting machinery.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            // Writing into a String cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            req.append_header(*k, *v).unwrap();
        }
        req
    }

    fn all(req: &RequestHeader, name: &str) -> Vec<String> {
        let values = req.headers.get_all(name).iter();
        values.map(|v| v.to_str().unwrap().to_string()).collect()
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.255",
            "::1",
            "2001:db8::8:1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn earlier_hops_come_first_on_one_line() {
        let mut req = request(&[
            ("x-forwarded-for", " 1.1.1.1 "),
            ("X-Forwarded-For", "2.2.2.2, 3.3.3.3"),
            ("x-forwarded-for", ""),
            ("host", "example.com"),
        ]);
        add(&mut req, Some("192.0.2.7".parse().unwrap()), true).unwrap();
        assert_eq!(
            all(&req, "x-forwarded-for"),
            ["1.1.1.1, 2.2.2.2, 3.3.3.3, 192.0.2.7"]
        );
        assert_eq!(all(&req, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&req, "x-forwarded-host"), ["example.com"]);
    }

    #[test]
    fn without_host_the_authority_names_the_host_and_no_client_adds_no_hop() {
        // As HTTP/2 heads arrive: no header case kept, the authority in the URI.
        let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        req.set_uri("https://h2.example:8443/x".parse().unwrap());
        add(&mut req, None, false).unwrap();
        assert!(all(&req, "x-forwarded-for").is_empty());
        assert_eq!(all(&req, "x-forwarded-proto"), ["http"]);
        assert_eq!(all(&req, "x-forwarded-host"), ["h2.example:8443"]);
    }
}
