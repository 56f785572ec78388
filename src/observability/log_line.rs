//! Renders access-log lines, JSON or combined, straight into a byte buffer.
//!
//! This runs on the worker thread for every request, so it is written by hand rather
//! than through `serde_json` and `format!`: strings are copied whole unless they need
//! escaping, numbers go through `itoa`, and the timestamp's date and time are formatted
//! once a second per thread. A line costs about a tenth of what the serde version did.

use crate::vocab::Format;
use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One request or connection, borrowed from the request for as long as it is rendered.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    /// When it ended (RFC 3339).
    pub(crate) time: SystemTime,
    /// `http/1.1`, `http/1.0` or `h2` for an HTTP request; `tcp` for a connection.
    pub(crate) protocol: &'static str,
    /// Client address.
    pub(crate) client: Option<SocketAddr>,
    /// Listener name.
    pub(crate) listener: &'a str,
    /// Route name (`LISTENER[i]`), HTTP only.
    pub(crate) route: Option<&'a str>,
    /// Pool name.
    pub(crate) pool: Option<&'a str>,
    /// Backend that served it.
    pub(crate) backend: Option<SocketAddr>,
    /// Request method (HTTP).
    pub(crate) method: &'a str,
    /// Request path and query (HTTP).
    pub(crate) path: &'a str,
    /// Host header (HTTP).
    pub(crate) host: &'a str,
    /// Referer header (HTTP).
    pub(crate) referer: &'a str,
    /// User-Agent header (HTTP).
    pub(crate) user_agent: &'a str,
    /// Status sent (HTTP), or 0 for a TCP connection closed normally, 502/503 when it
    /// could not be relayed.
    pub(crate) status: u16,
    /// Total duration.
    pub(crate) duration: Duration,
    /// Time to the backend's response head (HTTP).
    pub(crate) upstream_duration: Option<Duration>,
    /// Bytes received from the client (body for HTTP).
    pub(crate) bytes_in: u64,
    /// Bytes sent to the client (body for HTTP).
    pub(crate) bytes_out: u64,
    /// Attempts on another backend after a connect failure.
    pub(crate) retries: u32,
    /// The verified subject of the client's TLS certificate (mTLS), when it sent one.
    pub(crate) tls_client: Option<&'a str>,
    /// A gRPC call's `grpc-status`, when the backend ended it with a non-zero one.
    pub(crate) grpc_status: Option<u32>,
}

/// Formats one entry, newline included.
pub(crate) fn render(e: &Entry<'_>, format: Format, out: &mut Vec<u8>) {
    match format {
        Format::Json => json(e, out),
        Format::Combined => combined(e, out),
    }
    out.push(b'\n');
}

fn json(e: &Entry<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    time(out, e.time);
    out.extend_from_slice(b"\",\"protocol\":");
    string(out, e.protocol);
    out.extend_from_slice(b",\"client\":");
    optional(out, e.client, quoted_addr);
    out.extend_from_slice(b",\"listener\":");
    string(out, e.listener);
    out.extend_from_slice(b",\"route\":");
    optional(out, e.route, string);
    out.extend_from_slice(b",\"pool\":");
    optional(out, e.pool, string);
    out.extend_from_slice(b",\"backend\":");
    optional(out, e.backend, quoted_addr);
    out.extend_from_slice(b",\"method\":");
    string(out, e.method);
    out.extend_from_slice(b",\"path\":");
    string(out, e.path);
    out.extend_from_slice(b",\"host\":");
    string(out, e.host);
    out.extend_from_slice(b",\"referer\":");
    string(out, e.referer);
    out.extend_from_slice(b",\"user_agent\":");
    string(out, e.user_agent);
    out.extend_from_slice(b",\"status\":");
    int(out, e.status);
    out.extend_from_slice(b",\"duration\":");
    seconds(out, e.duration);
    out.extend_from_slice(b",\"upstream_duration\":");
    optional(out, e.upstream_duration, seconds);
    out.extend_from_slice(b",\"bytes_in\":");
    int(out, e.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    int(out, e.bytes_out);
    out.extend_from_slice(b",\"retries\":");
    int(out, e.retries);
    // Written only when there is one: most requests have neither.
    if let Some(subject) = e.tls_client {
        out.extend_from_slice(b",\"tls_client\":");
        string(out, subject);
    }
    if let Some(status) = e.grpc_status {
        out.extend_from_slice(b",\"grpc_status\":");
        int(out, status);
    }
    out.push(b'}');
}

/// Apache's combined line, then Tioga's fields as `key=value`.
fn combined(e: &Entry<'_>, out: &mut Vec<u8>) {
    match e.client {
        Some(c) => ip(out, c),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    time(out, e.time);
    out.extend_from_slice(b"] \"");
    quoted(out, e.method);
    out.push(b' ');
    quoted(out, e.path);
    out.push(b' ');
    out.extend_from_slice(request_version(e.protocol).as_bytes());
    out.extend_from_slice(b"\" ");
    int(out, e.status);
    out.push(b' ');
    int(out, e.bytes_out);
    out.extend_from_slice(b" \"");
    quoted(out, e.referer);
    out.extend_from_slice(b"\" \"");
    quoted(out, e.user_agent);
    out.extend_from_slice(b"\" protocol=");
    out.extend_from_slice(e.protocol.as_bytes());
    out.extend_from_slice(b" listener=");
    out.extend_from_slice(e.listener.as_bytes());
    out.extend_from_slice(b" route=");
    out.extend_from_slice(e.route.unwrap_or("-").as_bytes());
    out.extend_from_slice(b" pool=");
    out.extend_from_slice(e.pool.unwrap_or("-").as_bytes());
    out.extend_from_slice(b" backend=");
    match e.backend {
        Some(b) => addr(out, b),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" duration=");
    seconds(out, e.duration);
    out.extend_from_slice(b" upstream_duration=");
    match e.upstream_duration {
        Some(d) => seconds(out, d),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" bytes_in=");
    int(out, e.bytes_in);
    out.extend_from_slice(b" retries=");
    int(out, e.retries);
    if let Some(status) = e.grpc_status {
        out.extend_from_slice(b" grpc_status=");
        int(out, status);
    }
    if let Some(subject) = e.tls_client {
        out.extend_from_slice(b" tls_client=\"");
        quoted(out, subject);
        out.push(b'"');
    }
}

/// The request line's version in a combined line.
fn request_version(protocol: &str) -> &'static str {
    match protocol {
        "h2" => "HTTP/2.0",
        "http/1.0" => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// `value` as JSON, or `null`.
fn optional<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(v) => write(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Almost nothing needs escaping; a branch-free scan (which vectorizes) says so.
    let plain = !bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut done = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[done..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        done = i + 1;
    }
    out.extend_from_slice(&bytes[done..]);
    out.push(b'"');
}

/// `s` for inside double quotes: `-` when empty, `"` and `\` escaped.
fn quoted(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.push(b'-');
        return;
    }
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Seconds with microseconds: `0.002384`.
fn seconds(out: &mut Vec<u8>, d: Duration) {
    int(out, d.as_secs());
    let micros = d.subsec_micros();
    let mut digits = [b'0'; 7];
    digits[0] = b'.';
    let mut buf = itoa::Buffer::new();
    let formatted = buf.format(micros).as_bytes();
    digits[7 - formatted.len()..].copy_from_slice(formatted);
    out.extend_from_slice(&digits);
}

fn ip(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            int(out, a);
            for octet in [b, c, d] {
                out.push(b'.');
                int(out, octet);
            }
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{}", v6.ip());
        }
    }
}

/// An address as a JSON string.
fn quoted_addr(out: &mut Vec<u8>, a: SocketAddr) {
    out.push(b'"');
    addr(out, a);
    out.push(b'"');
}

/// `1.2.3.4:80` or `[::1]:80`.
fn addr(out: &mut Vec<u8>, a: SocketAddr) {
    if a.is_ipv6() {
        out.push(b'[');
        ip(out, a);
        out.push(b']');
    } else {
        ip(out, a);
    }
    out.push(b':');
    int(out, a.port());
}

thread_local! {
    /// The second last formatted on this thread, and `YYYY-MM-DDTHH:MM:SS.` for it.
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

/// RFC 3339 UTC with milliseconds: `2026-11-28T04:40:22.185Z`.
fn time(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = since.as_secs();
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != second {
            let whole = UNIX_EPOCH + Duration::from_secs(second);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            // `YYYY-MM-DDTHH:MM:SSZ`: keep the first 19 bytes, then the dot.
            prefix[..19].copy_from_slice(&text.as_bytes()[..19]);
            prefix[19] = b'.';
            *cached = second;
        }
        out.extend_from_slice(&prefix[..]);
    });
    let millis = since.subsec_millis();
    out.extend_from_slice(&[
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_007),
            protocol: "http/1.1",
            client: Some("127.0.0.1:5000".parse().unwrap()),
            listener: "web",
            route: Some("web[0]"),
            pool: Some("api"),
            backend: Some("[::1]:9001".parse().unwrap()),
            method: "GET",
            path: "/a?b=1",
            host: "example.com",
            referer: "",
            user_agent: "curl/8",
            status: 200,
            duration: Duration::from_micros(12_500),
            upstream_duration: Some(Duration::from_micros(2_000_001)),
            bytes_in: 0,
            bytes_out: 42,
            retries: 1,
            tls_client: None,
            grpc_status: None,
        }
    }

    fn json_of(e: &Entry<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        render(e, Format::Json, &mut out);
        assert!(out.ends_with(b"}\n"));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn json_lines_carry_every_field() {
        let v = json_of(&entry());
        assert_eq!(v["time"], "2023-11-14T22:13:20.007Z");
        assert_eq!(v["protocol"], "http/1.1");
        assert_eq!(v["client"], "127.0.0.1:5000");
        assert_eq!(v["listener"], "web");
        assert_eq!(v["route"], "web[0]");
        assert_eq!(v["pool"], "api");
        assert_eq!(v["backend"], "[::1]:9001");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/a?b=1");
        assert_eq!(v["host"], "example.com");
        assert_eq!(v["referer"], "");
        assert_eq!(v["user_agent"], "curl/8");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration"], 0.0125);
        assert_eq!(v["upstream_duration"], 2.000001);
        assert_eq!(v["bytes_in"], 0);
        assert_eq!(v["bytes_out"], 42);
        assert_eq!(v["retries"], 1);
        assert_eq!(v.as_object().unwrap().len(), 18);
    }

    #[test]
    fn json_escapes_what_it_must_and_writes_null_for_nothing() {
        let mut e = entry();
        e.user_agent = "a\"b\\c\nd\u{1}é";
        e.route = None;
        e.client = None;
        e.upstream_duration = None;
        let v = json_of(&e);
        assert_eq!(v["user_agent"], "a\"b\\c\nd\u{1}é");
        assert!(v["route"].is_null() && v["client"].is_null());
        assert!(v["upstream_duration"].is_null());
    }

    #[test]
    fn combined_lines_start_like_apache() {
        let mut out = Vec::new();
        render(&entry(), Format::Combined, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line, "127.0.0.1 - - [2023-11-14T22:13:20.007Z] \"GET /a?b=1 HTTP/1.1\" 200 42 \"-\" \"curl/8\" protocol=http/1.1 listener=web route=web[0] pool=api backend=[::1]:9001 duration=0.012500 upstream_duration=2.000001 bytes_in=0 retries=1\n");
    }

    #[test]
    fn combined_quotes_escape_and_dash_empty_fields() {
        let mut e = entry();
        e.user_agent = r#"evil "agent""#;
        e.client = None;
        e.upstream_duration = None;
        let mut out = Vec::new();
        render(&e, Format::Combined, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("- - - ["), "{line}");
        assert!(line.contains(r#" "-" "evil \"agent\"" "#), "{line}");
        assert!(line.contains("upstream_duration=- "), "{line}");
    }

    #[test]
    fn the_cached_second_changes_with_the_time() {
        let mut out = Vec::new();
        time(&mut out, UNIX_EPOCH + Duration::from_millis(999));
        time(&mut out, UNIX_EPOCH + Duration::from_millis(1_000));
        assert_eq!(out, b"1970-01-01T00:00:00.999Z1970-01-01T00:00:01.000Z");
    }
}
