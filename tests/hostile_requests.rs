//! Requests an attacker sends: paths that spell a route they should not reach, heads
//! too large to be honest, and heads RFC 9112 calls invalid. Each is refused (or
//! normalised) before routing, and counted.

mod common;

use std::net::SocketAddr;

use common::*;

/// `/public` goes to pool `a`; everything else is denied (access control by route).
/// `extra` is added to listener `web`.
fn config(listen: SocketAddr, admin: SocketAddr, a: SocketAddr, extra: &str) -> String {
    format!(
        "server: {{threads: 1, pid_file: '@DIR@/t.pid', upgrade_sock: '@DIR@/up.sock'}}
admin: {{bind: \"{admin}\"}}
pools:
  a:
    backends: [\"{a}\"]
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
{extra}    routes:
      - match: {{path_prefix: /public}}
        pool: a
      - filters:
          - deny: [0.0.0.0/0, \"::/0\"]
"
    )
}

fn start(extra: &str) -> (HttpBackend, SocketAddr, SocketAddr, Tioga) {
    let a = spawn_http_backend("a");
    let (listen, admin) = (free_addr(), free_addr());
    let tioga = Tioga::start(&config(listen, admin, a.addr(), extra), &[listen, admin]);
    (a, listen, admin, tioga)
}

/// Sends `raw` on a new connection and reads one response.
fn raw(listen: SocketAddr, raw: &str) -> Response {
    let mut conn = Conn::open(listen).unwrap();
    conn.write_raw(raw.as_bytes()).unwrap();
    conn.read_response(false).unwrap()
}

#[test]
fn dot_segments_and_escapes_do_not_reach_a_route_they_spell_around() {
    let (a, listen, _admin, _tioga) = start("");
    for path in [
        "/public/../admin",
        "/public/./../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/x/../../admin",
        "/public;/../admin",
    ] {
        let resp = get(listen, path).unwrap();
        assert_eq!(resp.status, 403, "{path} is /admin: denied, not pool a");
    }
    for path in ["/public/..;/admin", "/public/..%2fadmin", "/public/%zz"] {
        assert_eq!(get(listen, path).unwrap().status, 400, "{path}");
    }
    assert_eq!(a.requests(), 0, "pool a saw none of them");

    // What the backend receives is the normal form.
    let resp = get(listen, "/public//x/./y/../z?q=/../..").unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-seen-path"), Some("/public/x/z?q=/../.."));
}

#[test]
fn normalize_path_false_keeps_paths_as_sent() {
    let (_a, listen, _admin, _tioga) = start("    normalize_path: false\n");
    let resp = get(listen, "/public/x/../y").unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-seen-path"), Some("/public/x/../y"));
}

#[test]
fn oversized_heads_are_refused_with_431_and_414() {
    let (a, listen, admin, _tioga) = start("");
    let line = "x".repeat(100 * 1024);
    let resp = Request::get("/public")
        .header("x-big", &line)
        .send(listen)
        .unwrap();
    assert_eq!(resp.status, 431, "a 100 KB header line");
    let uri = format!("/public/{}", "u".repeat(9 * 1024));
    assert_eq!(get(listen, &uri).unwrap().status, 414);
    let mut many = Request::get("/public");
    for i in 0..101 {
        many = many.header(&format!("x-h{i}"), "1");
    }
    assert_eq!(many.send(listen).unwrap().status, 431, "101 header lines");
    let within = Request::get("/public").header("x-ok", &"y".repeat(60 * 1024));
    assert_eq!(
        within.send(listen).unwrap().status,
        200,
        "60 KiB is within 64 KiB"
    );
    assert_eq!(a.requests(), 1);

    let metrics = get(admin, "/metrics").unwrap().text();
    for reason in ["header_too_large", "uri_too_long", "too_many_headers"] {
        let line = format!("tioga_http_refused_total{{listener=\"web\",reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
}

#[test]
fn limits_are_per_listener() {
    let extra =
        "    max_request_header_size: 2KiB\n    max_uri_length: 100\n    max_header_count: 5\n";
    let (_a, listen, _admin, _tioga) = start(extra);
    let big = Request::get("/public").header("x", &"v".repeat(3000));
    assert_eq!(big.send(listen).unwrap().status, 431);
    assert_eq!(
        get(listen, &format!("/public/{}", "u".repeat(100)))
            .unwrap()
            .status,
        414
    );
    let mut six = Request::get("/public");
    for i in 0..5 {
        six = six.header(&format!("x-h{i}"), "1");
    }
    assert_eq!(six.send(listen).unwrap().status, 431, "Host and 5 more");
    assert_eq!(get(listen, "/public").unwrap().status, 200);
}

#[test]
fn http_1_1_without_exactly_one_host_is_a_bad_request() {
    let (a, listen, admin, _tioga) = start("");
    let resp = raw(listen, "GET /public HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 400, "no Host");
    let resp = raw(
        listen,
        "GET /public HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 400, "two Hosts");
    let resp = raw(listen, "GET /public HTTP/1.0\r\n\r\n");
    assert_eq!(resp.status, 200, "HTTP/1.0 may omit Host");
    assert_eq!(a.requests(), 1);
    let metrics = get(admin, "/metrics").unwrap().text();
    assert!(metrics.contains("reason=\"missing_host\"} 1"), "{metrics}");
}
