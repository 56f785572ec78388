//! HTTP/2 downstream, with Debian's curl as the client:
//! - over TLS, h2 is chosen by ALPN and the request is routed exactly as over HTTP/1.1:
//!   `:authority` matches a host route like `Host`, and the backend sees the same
//!   `Host` and `X-Forwarded-*` either way; the access log says `h2` / `http/1.1`, and
//!   both count in the route's metrics;
//! - on a plain listener with `http2: true`, h2c prior knowledge and HTTP/1.1 share the
//!   port, and an h2 request whose backend refuses is retried on another; without
//!   `http2`, a plain listener speaks HTTP/1 only.

mod common;

use common::pki::TestCa;
use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// One answer as curl saw it: the HTTP version and the headers (names lowercase).
struct Seen {
    version: String,
    status: u16,
    headers: BTreeMap<String, String>,
}

/// Runs curl with `args` then `url`, printing the head and the version.
fn curl(args: &[&str], url: &str) -> Seen {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10"])
        .args(args)
        .args(["-w", "version=%{http_version}\n", url])
        .output()
        .expect("run curl (Debian package curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let mut headers = BTreeMap::new();
    let mut version = String::new();
    for line in lines {
        if let Some(v) = line.strip_prefix("version=") {
            version = v.to_string();
        } else if let Some((n, v)) = line.split_once(':') {
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Seen {
        version,
        status,
        headers,
    }
}

/// The access log's entries, once `n` are there.
fn log_entries(dir: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let log = dir.join("access.log");
    let read = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect::<Vec<serde_json::Value>>()
    };
    wait_until(Duration::from_secs(10), "access log lines", || {
        read().len() >= n
    });
    read()
}

#[test]
fn h2_over_tls_is_routed_and_forwarded_like_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "h2");
    let server = ca.issue("server", "server", &["localhost"]);
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let (bind, admin) = (free_addr(), free_addr());
    let yaml = format!(
        "server: {{threads: 2, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}
admin: {{bind: \"{admin}\"}}
access_log: {{target: '@DIR@/access.log'}}
pools:
  a: {{backends: [\"{a}\"]}}
  b: {{backends: [\"{b}\"]}}
listeners:
  web:
    protocol: http
    bind: \"{bind}\"
    tls: {{cert: '{cert}', key: '{key}'}}
    routes:
      - match: {{host: localhost}}
        pool: a
      - pool: b
",
        a = a.addr(),
        b = b.addr(),
        cert = server.cert.display(),
        key = server.key.display()
    );
    let tioga = Tioga::start(&yaml, &[bind, admin]);
    let url = format!("https://localhost:{}/x/y?z=1", bind.port());
    let resolve = format!("localhost:{}:127.0.0.1", bind.port());
    let cacert = ca.pem.display().to_string();
    let base = ["--cacert", &cacert, "--resolve", &resolve];
    let over = |version: &str| {
        let mut args = base.to_vec();
        args.push(version);
        curl(&args, &url)
    };
    let h2 = over("--http2");
    let h1 = over("--http1.1");
    assert_eq!(h2.version, "2", "ALPN chose h2");
    assert_eq!(h1.version, "1.1");
    for seen in [&h2, &h1] {
        assert_eq!(seen.status, 200);
        assert_eq!(
            seen.headers["x-backend"], "a",
            ":authority routes like Host"
        );
        assert_eq!(seen.headers["x-seen-path"], "/x/y?z=1");
    }
    for name in [
        "x-seen-host",
        "x-seen-h-x-forwarded-for",
        "x-seen-h-x-forwarded-proto",
        "x-seen-h-x-forwarded-host",
    ] {
        assert_eq!(h2.headers.get(name), h1.headers.get(name), "{name}");
    }
    assert_eq!(
        h2.headers["x-seen-host"],
        format!("localhost:{}", bind.port())
    );
    assert_eq!(h2.headers["x-seen-h-x-forwarded-proto"], "https");
    assert_eq!(h2.headers["x-seen-h-x-forwarded-for"], "127.0.0.1");

    let entries = log_entries(tioga.dir(), 2);
    let protocols: Vec<_> = entries.iter().map(|e| e["protocol"].clone()).collect();
    assert_eq!(protocols, ["h2", "http/1.1"]);
    for e in &entries {
        assert_eq!(e["host"], format!("localhost:{}", bind.port()));
        assert_eq!(e["route"], "web[0]");
        assert_eq!(e["status"], 200);
    }
    let metrics = get(admin, "/metrics").unwrap().text();
    let counted =
        r#"tioga_http_requests_total{class="2xx",listener="web",pool="a",route="web[0]"} 2"#;
    assert!(
        metrics.contains(counted),
        "both requests counted alike: {metrics}"
    );
}

#[test]
fn plain_listeners_speak_h2c_only_when_asked() {
    let a = spawn_http_backend("a");
    // Nothing listens there: half the requests retry on `a`.
    let dead = free_addr();
    let (h2c, plain) = (free_addr(), free_addr());
    let yaml = format!(
        "server: {{threads: 1, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}
pools:
  a: {{backends: [\"{dead}\", \"{a}\"], retries: 1}}
listeners:
  h2c:
    protocol: http
    bind: \"{h2c}\"
    http2: true
    routes: [{{pool: a}}]
  plain:
    protocol: http
    bind: \"{plain}\"
    routes: [{{pool: a}}]
",
        a = a.addr()
    );
    let _tioga = Tioga::start(&yaml, &[h2c, plain]);
    let url = |addr: SocketAddr| format!("http://{addr}/p");
    for _ in 0..4 {
        let seen = curl(&["--http2-prior-knowledge"], &url(h2c));
        assert_eq!(
            (seen.version.as_str(), seen.status),
            ("2", 200),
            "retried on a"
        );
        assert_eq!(seen.headers["x-seen-h-x-forwarded-proto"], "http");
    }
    let seen = curl(&["--http1.1"], &url(h2c));
    assert_eq!(
        (seen.version.as_str(), seen.status),
        ("1.1", 200),
        "HTTP/1.1 too"
    );
    // Without `http2`, the preface is no request: no h2 answer.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_version}", &url(plain)])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout), "2");
}
