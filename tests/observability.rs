//! Operations through the real binary: metric values move exactly with traffic and
//! health, `/status` reports pools and listeners, the admin endpoint answers 404 to
//! anything else, and the access log writes one line per request and per connection
//! with the documented fields, in both formats.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// The value of the sample `name{labels}` in a Prometheus text exposition (labels in
/// the exposition's own order, which is sorted by name).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

fn metrics(admin: SocketAddr) -> String {
    let resp = get(admin, "/metrics").expect("GET /metrics");
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain"));
    resp.text()
}

fn config(
    admin: SocketAddr,
    web: SocketAddr,
    raw: SocketAddr,
    a: SocketAddr,
    b: SocketAddr,
    log: &str,
) -> String {
    format!(
        "admin: {{bind: '{admin}'}}
access_log: {log}
pools:
  app:
    backends: ['{a}', '{b}']
    health_check: {{type: http, path: /health, interval: 200ms, timeout: 200ms}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    routes:
      - match: {{path_prefix: /api}}
        pool: app
  raw:
    protocol: tcp
    bind: '{raw}'
    pool: app
"
    )
}

/// Two backends in pool `app`, Tioga with an HTTP listener `web`, a TCP listener
/// `raw` on the same pool, the admin endpoint and the given `access_log` value.
struct Setup {
    a: HttpBackend,
    b: HttpBackend,
    admin: SocketAddr,
    web: SocketAddr,
    raw: SocketAddr,
    tioga: Tioga,
}

fn setup(access_log: &str) -> Setup {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let (admin, web, raw) = (free_addr(), free_addr(), free_addr());
    let yaml = config(admin, web, raw, a.addr(), b.addr(), access_log);
    let tioga = Tioga::start(&yaml, &[admin, web]);
    Setup {
        a,
        b,
        admin,
        web,
        raw,
        tioga,
    }
}

/// One raw HTTP/1.0 request through the TCP listener, read to EOF.
fn through_tcp(raw: SocketAddr) -> String {
    let mut s = TcpStream::connect(raw).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /tcp HTTP/1.0\r\n\r\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn counters_move_exactly_and_health_is_reported() {
    // Bound, not `_`: the backends and Tioga live until the end of the test.
    let Setup {
        a,
        b,
        admin,
        web,
        raw,
        tioga: _tioga,
    } = setup("{target: '@DIR@/access.log'}");

    let before = metrics(admin);
    let ok = r#"tioga_http_requests_total{class="2xx",listener="web",pool="app",route="web[0]"}"#;
    let missing = r#"tioga_http_requests_total{class="4xx",listener="web",pool="-",route="-"}"#;
    let n = 7;
    for _ in 0..n {
        assert_eq!(get(web, "/api/x").unwrap().status, 200);
    }
    assert_eq!(get(web, "/elsewhere").unwrap().status, 404);
    // Counted when each request has been logged, just after its response went out.
    let moved = |series: &str, by: f64| {
        let start = sample(&before, series).unwrap_or(0.0);
        wait_until(Duration::from_secs(5), series, || {
            sample(&metrics(admin), series).is_some_and(|v| v - start >= by)
        });
        let now = sample(&metrics(admin), series).unwrap();
        assert_eq!(now - start, by, "{series}");
    };
    moved(ok, n as f64);
    moved(missing, 1.0);
    let hist = r#"tioga_http_request_duration_seconds_count{listener="web",route="web[0]"}"#;
    moved(hist, n as f64);
    let after = metrics(admin);

    // TCP: one connection, its bytes counted both ways.
    let tcp_before = sample(
        &after,
        r#"tioga_tcp_connections_total{listener="raw",pool="app"}"#,
    )
    .unwrap_or(0.0);
    assert!(through_tcp(raw).contains("200 OK"));
    let tcp = metrics(admin);
    let conns = sample(
        &tcp,
        r#"tioga_tcp_connections_total{listener="raw",pool="app"}"#,
    )
    .unwrap();
    assert_eq!(conns - tcp_before, 1.0, "{tcp}");
    assert!(
        sample(
            &tcp,
            r#"tioga_tcp_bytes_total{direction="in",listener="raw"}"#
        )
        .unwrap()
            >= 21.0
    );
    assert!(
        sample(
            &tcp,
            r#"tioga_tcp_bytes_total{direction="out",listener="raw"}"#
        )
        .unwrap()
            > 0.0
    );

    // Health: both up, then a goes down: gauge 0 and exactly one transition.
    let up_a = format!(r#"tioga_backend_up{{backend="{}",pool="app"}}"#, a.addr());
    let up_b = format!(r#"tioga_backend_up{{backend="{}",pool="app"}}"#, b.addr());
    let trans_a = format!(
        r#"tioga_backend_health_transitions_total{{backend="{}",pool="app"}}"#,
        a.addr()
    );
    assert_eq!(sample(&tcp, &up_a), Some(1.0));
    assert_eq!(sample(&tcp, &trans_a), Some(0.0));
    a.set_healthy(false);
    wait_until(Duration::from_secs(5), "a reported down", || {
        sample(&metrics(admin), &up_a) == Some(0.0)
    });
    let down = metrics(admin);
    assert_eq!(sample(&down, &trans_a), Some(1.0), "{down}");
    assert_eq!(sample(&down, &up_b), Some(1.0));

    // /status agrees.
    let status = get(admin, "/status").unwrap();
    assert_eq!(status.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    let backends = doc["pools"][0]["backends"].as_array().unwrap();
    let row = |addr: SocketAddr| {
        backends
            .iter()
            .find(|x| x["address"] == addr.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(row(a.addr())["healthy"], false);
    assert_eq!(row(a.addr())["last_check"]["result"], "failed");
    assert_eq!(row(a.addr())["transitions"], 1);
    assert_eq!(row(b.addr())["healthy"], true);
    let web_doc = doc["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "web")
        .unwrap()
        .clone();
    assert_eq!(web_doc["requests"], n + 1);
    assert_eq!(web_doc["routes"][0]["requests"], n);

    // Anything else on the admin endpoint is 404; the page is HTML.
    assert_eq!(get(admin, "/nope").unwrap().status, 404);
    let page = get(admin, "/").unwrap();
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
}

#[test]
fn access_log_has_one_json_line_per_request_and_connection() {
    let Setup {
        a,
        b,
        admin: _admin,
        web,
        raw,
        tioga,
    } = setup("{target: '@DIR@/access.log', format: json}");
    let log = tioga.dir().join("access.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let baseline = read().lines().count(); // the readiness probe of `raw` may have logged
    assert_eq!(get(web, "/api/one?x=1").unwrap().status, 200);
    assert_eq!(get(web, "/nothing").unwrap().status, 404);
    through_tcp(raw);
    wait_until(Duration::from_secs(5), "three new access-log lines", || {
        read().lines().count() >= baseline + 3
    });
    let text = read();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .skip(baseline)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let one = lines
        .iter()
        .find(|l| l["path"] == "/api/one?x=1")
        .expect("the /api line");
    assert_eq!(one["protocol"], "http/1.1");
    assert_eq!(one["status"], 200);
    assert_eq!(one["listener"], "web");
    assert_eq!(one["route"], "web[0]");
    assert_eq!(one["pool"], "app");
    assert_eq!(one["method"], "GET");
    assert!(one["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let backend = one["backend"].as_str().unwrap();
    assert!(backend == a.addr().to_string() || backend == b.addr().to_string());
    assert!(one["duration"].as_f64().unwrap() > 0.0);
    assert!(one["upstream_duration"].as_f64().unwrap() > 0.0);
    assert_eq!(one["retries"], 0);
    assert!(one["time"].as_str().unwrap().ends_with('Z'));
    let missing = lines
        .iter()
        .find(|l| l["path"] == "/nothing")
        .expect("the 404 line");
    assert_eq!(missing["status"], 404);
    assert!(missing["route"].is_null());
    let tcp = lines
        .iter()
        .rev()
        .find(|l| l["protocol"] == "tcp")
        .expect("a tcp line");
    assert_eq!(tcp["listener"], "raw");
    assert_eq!(tcp["status"], 0);
    assert!(tcp["bytes_in"].as_u64().unwrap() >= 21);
    assert!(tcp["bytes_out"].as_u64().unwrap() > 0);
}

#[test]
fn access_log_combined_format() {
    let Setup {
        a: _a,
        b: _b,
        admin: _admin,
        web,
        raw: _raw,
        tioga,
    } = setup("{target: '@DIR@/access.log', format: combined}");
    let log = tioga.dir().join("access.log");
    let resp = Request::get("/api/c")
        .header("user-agent", "probe/1")
        .header("referer", "http://r/")
        .send(web)
        .unwrap();
    assert_eq!(resp.status, 200);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(Duration::from_secs(5), "the combined line", || {
        read().contains("/api/c")
    });
    let text = read();
    let line = text.lines().find(|l| l.contains("/api/c")).unwrap();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("] \"GET /api/c HTTP/1.1\" 200 2 \"http://r/\" \"probe/1\" protocol=http/1.1 listener=web route=web[0] pool=app backend=127.0.0.1:"), "{line}");
    assert!(line.contains(" retries=0"), "{line}");
}
