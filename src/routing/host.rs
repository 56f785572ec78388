//! `host:` — the request's host, case-insensitive, without its port.
//!
//! The request's host is its `Host` header or, when it has none (HTTP/2 carries the
//! host as `:authority`), the URI's authority. Its port and a trailing dot
//! (`example.com.` is the same fully qualified name) are ignored. A configured
//! `*.example.com` matches any subdomain at any depth (`a.example.com`,
//! `a.b.example.com`) but not the apex `example.com`. IPv6 literals are configured as
//! `[::1]` or `::1` and compared as addresses, so `[0:0::1]:8080` matches `::1`.

use std::net::Ipv6Addr;

use http::request::Parts;

use super::{push_term, MatchError};

const KEY: &str = "host";

/// Longest DNS name, without the trailing dot.
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// A compiled `host:` condition.
#[derive(Debug, Clone)]
pub(super) enum HostMatch {
    /// A name or IPv4 address, lowercased.
    Exact(String),
    /// `*.example.com`, kept as `.example.com`, lowercased.
    Subdomain(String),
    /// An IPv6 literal.
    Ipv6(Ipv6Addr),
}

impl HostMatch {
    /// Compiles `raw`, or pushes what is wrong with it to `errors`.
    pub(super) fn compile(raw: &str, errors: &mut Vec<MatchError>) -> Option<Self> {
        match parse(raw) {
            Ok(host) => Some(host),
            Err(message) => {
                errors.push(MatchError::new(KEY, message));
                None
            }
        }
    }

    /// True when the request's host is this one.
    pub(super) fn matches(&self, req: &Parts) -> bool {
        request_host(req).is_some_and(|host| self.matches_name(host))
    }

    /// True when `host` (without port or trailing dot) is this one; also for a TLS
    /// server name.
    pub(super) fn matches_name(&self, host: &[u8]) -> bool {
        match self {
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
            HostMatch::Subdomain(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
            HostMatch::Ipv6(addr) => parse_ipv6(host) == Some(*addr),
        }
    }

    /// Appends `host=…` to a description.
    pub(super) fn describe(&self, out: &mut String) {
        match self {
            HostMatch::Exact(name) => push_term(out, KEY, name),
            HostMatch::Subdomain(suffix) => push_term(out, KEY, &format!("*{suffix}")),
            HostMatch::Ipv6(addr) => push_term(out, KEY, &format!("[{addr}]")),
        }
    }
}

/// Parses a configured host into its matcher, or says what is wrong with it.
fn parse(raw: &str) -> Result<HostMatch, String> {
    if raw.is_empty() {
        return Err("empty host; drop `host:` to match every host".to_string());
    }
    let lower = raw.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(format!("{raw:?}: unclosed `[` in an IPv6 literal"));
        };
        if after.starts_with(':') {
            return Err(port_message(raw, &format!("[{inner}]")));
        }
        if !after.is_empty() {
            return Err(format!("{raw:?}: unexpected text after the IPv6 literal"));
        }
        return inner
            .parse()
            .map(HostMatch::Ipv6)
            .map_err(|_| format!("{raw:?}: not a valid IPv6 address"));
    }
    if let Ok(addr) = lower.parse::<Ipv6Addr>() {
        return Ok(HostMatch::Ipv6(addr));
    }
    if let Some((name, port)) = lower.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(port_message(raw, name));
        }
        return Err(format!("{raw:?}: `:` is not allowed in a host name"));
    }
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(base) = name.strip_prefix("*.") {
        if base.contains('*') {
            return Err(wildcard_message(raw));
        }
        check_name(base).map_err(|why| format!("{raw:?}: {why}"))?;
        return Ok(HostMatch::Subdomain(format!(".{base}")));
    }
    if name.contains('*') {
        return Err(wildcard_message(raw));
    }
    check_name(name).map_err(|why| format!("{raw:?}: {why}"))?;
    Ok(HostMatch::Exact(name.to_string()))
}

fn port_message(raw: &str, without: &str) -> String {
    format!(
        "{raw:?} includes a port; write the host alone ({without}): \
         the request's port is ignored when matching"
    )
}

fn wildcard_message(raw: &str) -> String {
    format!(
        "{raw:?}: bad wildcard; `*` may only stand for the whole first label, \
         as in *.example.com"
    )
}

/// Checks a lowercased DNS name or IPv4 address, without a trailing dot.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty host name".to_string());
    }
    if name.len() > MAX_NAME {
        return Err(format!("longer than {MAX_NAME} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".to_string());
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "label {label:?} is longer than {MAX_LABEL} characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("{c:?} is not allowed in a host name"));
        }
    }
    Ok(())
}

/// The request's host without port or trailing dot: the `Host` header, else the
/// URI's authority.
pub(super) fn request_host(req: &Parts) -> Option<&[u8]> {
    let raw = match req.headers.get(http::header::HOST) {
        Some(value) => value.as_bytes(),
        None => req.uri.host()?.as_bytes(),
    };
    let host = strip_port(raw);
    Some(host.strip_suffix(b".").unwrap_or(host))
}

/// `example.com:8080` → `example.com`, `[::1]:8080` → `[::1]`. A bare IPv6 address
/// (several colons, no brackets) is left whole.
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().position(|&b| b == b':') {
        Some(colon) if !host[colon + 1..].contains(&b':') => &host[..colon],
        _ => host,
    }
}

/// Reads `[addr]` or a bare `addr` as an IPv6 address.
fn parse_ipv6(host: &[u8]) -> Option<Ipv6Addr> {
    let inner = match host.strip_prefix(b"[") {
        Some(rest) => rest.strip_suffix(b"]")?,
        None => host,
    };
    std::str::from_utf8(inner).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::request;

    fn host(raw: &str) -> HostMatch {
        let mut errors = Vec::new();
        let host = HostMatch::compile(raw, &mut errors);
        assert!(errors.is_empty(), "{raw}: {errors:?}");
        host.unwrap()
    }

    fn error(raw: &str) -> String {
        let mut errors = Vec::new();
        assert!(
            HostMatch::compile(raw, &mut errors).is_none(),
            "{raw} compiled"
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "host");
        errors.remove(0).message
    }

    fn with_host(value: &str) -> Parts {
        request("GET", "/", &[("host", value)])
    }

    #[test]
    fn exact_host_ignores_case_and_port() {
        let m = host("api.example.com");
        assert!(m.matches(&with_host("api.example.com")));
        assert!(m.matches(&with_host("API.Example.COM")));
        assert!(m.matches(&with_host("api.example.com:8080")));
        assert!(m.matches(&with_host("api.example.com.")));
        assert!(m.matches(&with_host("api.example.com.:443")));
        assert!(!m.matches(&with_host("www.example.com")));
        assert!(!m.matches(&with_host("api.example.com.evil")));
        assert!(!m.matches(&with_host("x.api.example.com")));
        assert!(!m.matches(&with_host("pi.example.com")));
    }

    #[test]
    fn configured_host_is_lowercased() {
        let m = host("API.Example.com");
        assert!(m.matches(&with_host("api.example.com")));
        assert!(m.matches(&with_host("api.EXAMPLE.com")));
        assert!(host("example.com.").matches(&with_host("example.com")));
    }

    #[test]
    fn wildcard_matches_subdomains_at_any_depth_but_not_the_apex() {
        let m = host("*.example.com");
        assert!(m.matches(&with_host("a.example.com")));
        assert!(m.matches(&with_host("a.b.example.com")));
        assert!(m.matches(&with_host("A.EXAMPLE.COM:80")));
        assert!(!m.matches(&with_host("example.com")));
        assert!(!m.matches(&with_host("example.com:80")));
        assert!(!m.matches(&with_host(".example.com")));
        assert!(!m.matches(&with_host("badexample.com")));
        assert!(!m.matches(&with_host("a.example.org")));
    }

    #[test]
    fn host_header_wins_over_uri_authority() {
        let m = host("a.example.com");
        let req = request(
            "GET",
            "http://b.example.com/x",
            &[("host", "a.example.com")],
        );
        assert!(m.matches(&req));
        let req = request(
            "GET",
            "http://a.example.com/x",
            &[("host", "b.example.com")],
        );
        assert!(!m.matches(&req));
    }

    #[test]
    fn uri_authority_is_used_without_host_header() {
        let m = host("a.example.com");
        assert!(m.matches(&request("GET", "https://a.example.com:8443/x", &[])));
        assert!(m.matches(&request("GET", "https://user@A.example.com/x", &[])));
        assert!(!m.matches(&request("GET", "https://b.example.com/x", &[])));
    }

    #[test]
    fn no_host_at_all_does_not_match() {
        assert!(!host("a.example.com").matches(&request("GET", "/x", &[])));
        assert!(!host("*.example.com").matches(&request("GET", "/x", &[])));
    }

    #[test]
    fn ipv6_literals_compare_as_addresses() {
        for configured in ["[::1]", "::1", "[0:0::1]"] {
            let m = host(configured);
            assert!(m.matches(&with_host("[::1]:8080")), "{configured}");
            assert!(m.matches(&with_host("[::1]")), "{configured}");
            assert!(m.matches(&with_host("[0::1]")), "{configured}");
            assert!(!m.matches(&with_host("[::2]:8080")), "{configured}");
            assert!(!m.matches(&with_host("localhost")), "{configured}");
        }
        let m = host("[2001:DB8::1]");
        assert!(m.matches(&with_host("[2001:db8::1]:443")));
        assert!(m.matches(&request("GET", "http://[2001:db8::1]:80/", &[])));
    }

    #[test]
    fn ipv4_hosts_match_exactly() {
        let m = host("10.0.0.1");
        assert!(m.matches(&with_host("10.0.0.1:8080")));
        assert!(!m.matches(&with_host("10.0.0.10")));
    }

    #[test]
    fn host_with_port_is_an_error() {
        assert!(error("api.example.com:8080").contains("includes a port"));
        assert!(error("[::1]:8080").contains("includes a port"));
        assert!(error("*.example.com:80").contains("includes a port"));
    }

    #[test]
    fn bad_wildcards_are_errors() {
        for raw in [
            "a.*.com",
            "*example.com",
            "*",
            "*.",
            "**.example.com",
            "*.*.com",
        ] {
            assert!(error(raw).contains("wildcard"), "{raw}");
        }
        assert!(error("example.*").contains("wildcard"));
    }

    #[test]
    fn malformed_names_are_errors() {
        assert!(error("").contains("empty"));
        assert!(error("a..example.com").contains("empty label"));
        assert!(error(".example.com").contains("empty label"));
        assert!(error("*..example.com").contains("empty label"));
        assert!(error("exa mple.com").contains("not allowed"));
        assert!(error("example.com/path").contains("not allowed"));
        assert!(error("[::1").contains("unclosed"));
        assert!(error("[::1]x").contains("unexpected"));
        assert!(error("[not-ipv6]").contains("IPv6"));
        assert!(error("a:b").contains("`:`"));
        assert!(error(&"a".repeat(64)).contains("longer than 63"));
        assert!(error(&["a"; 200].join(".")).contains("longer than 253"));
    }

    #[test]
    fn underscores_and_digits_are_allowed() {
        assert!(host("my_service-1.internal").matches(&with_host("MY_SERVICE-1.internal")));
    }

    #[test]
    fn strip_port_handles_every_form() {
        assert_eq!(strip_port(b"example.com:80"), b"example.com");
        assert_eq!(strip_port(b"example.com"), b"example.com");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(strip_port(b"::1"), b"::1");
        assert_eq!(strip_port(b"example.com:"), b"example.com");
    }

    #[test]
    fn describe_shows_the_configured_form() {
        let mut out = String::new();
        host("*.Example.com").describe(&mut out);
        assert_eq!(out, "host=*.example.com");
        let mut out = String::new();
        host("::1").describe(&mut out);
        assert_eq!(out, "host=[::1]");
    }
}
