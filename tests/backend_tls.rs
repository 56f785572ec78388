//! Pools that speak TLS and HTTP/2 to their backends (`pools.NAME.protocol`, `tls`).
//! The backends are another Tioga (TLS listener with a certificate for
//! `backend.test` from a test CA, and a plain listener with `http2: true`) in front of
//! a plain HTTP backend; its access log shows what the front Tioga spoke.
//! - `tls: {sni: backend.test, verify: true, ca}` with `http1` and with `h2`: answered,
//!   and the h2 requests share one connection (one client port in the backend's log);
//! - `h2c`: HTTP/2 without TLS;
//! - a certificate for another name is refused: 502, and the reason is in the log.

mod common;

use common::pki::TestCa;
use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn tls_and_http2_to_backends_and_a_wrong_name_refused() {
    let files = tempfile::tempdir().unwrap();
    let ca = TestCa::new(files.path(), "backends");
    let cert = ca.issue("backend", "backend", &["backend.test"]);
    let origin = spawn_http_backend("origin");
    let (mid_tls, mid_h2c) = (free_addr(), free_addr());
    let mid = Tioga::start(
        &format!(
            "server: {{threads: 1, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}
access_log: {{target: '@DIR@/access.log'}}
pools:
  origin: {{backends: [\"{origin}\"]}}
listeners:
  tls:
    protocol: http
    bind: \"{mid_tls}\"
    tls: {{cert: '{cert}', key: '{key}'}}
    routes: [{{pool: origin}}]
  h2c:
    protocol: http
    bind: \"{mid_h2c}\"
    http2: true
    routes: [{{pool: origin}}]
",
            origin = origin.addr(),
            cert = cert.cert.display(),
            key = cert.key.display()
        ),
        &[mid_tls, mid_h2c],
    );
    let [h1, h2, h2c, wrong] = [free_addr(), free_addr(), free_addr(), free_addr()];
    let ca_file = ca.pem.display();
    let front = Tioga::start(
        &format!(
            "server: {{threads: 2, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}
pools:
  h1: {{backends: [\"{mid_tls}\"], tls: {{sni: backend.test, verify: true, ca: '{ca_file}'}}}}
  h2:
    backends: [\"{mid_tls}\"]
    protocol: h2
    tls: {{sni: backend.test, ca: '{ca_file}'}}
  h2c: {{backends: [\"{mid_h2c}\"], protocol: h2c}}
  wrong: {{backends: [\"{mid_tls}\"], retries: 0, tls: {{sni: other.test, ca: '{ca_file}'}}}}
listeners:
  h1: {{protocol: http, bind: \"{h1}\", routes: [{{pool: h1}}]}}
  h2: {{protocol: http, bind: \"{h2}\", routes: [{{pool: h2}}]}}
  h2c: {{protocol: http, bind: \"{h2c}\", routes: [{{pool: h2c}}]}}
  wrong: {{protocol: http, bind: \"{wrong}\", routes: [{{pool: wrong}}]}}
"
        ),
        &[h1, h2, h2c, wrong],
    );

    let mut sent = 0;
    for (addr, path) in [(h1, "/via/h1"), (h2, "/via/h2"), (h2c, "/via/h2c")] {
        for _ in 0..10 {
            let resp = Request::get(path).send(addr).unwrap();
            assert_eq!(resp.status, 200, "{path}: {}", resp.text());
            assert_eq!(resp.header("x-backend"), Some("origin"));
            assert_eq!(resp.header("x-seen-path"), Some(path));
            sent += 1;
        }
    }
    let log = mid.dir().join("access.log");
    let entries = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    wait_until(Duration::from_secs(10), "the backend's log", || {
        entries().len() >= sent
    });
    let entries = entries();
    let of = |path: &'static str| entries.iter().filter(move |e| e["path"] == path);
    assert!(of("/via/h1").all(|e| e["protocol"] == "http/1.1" && e["listener"] == "tls"));
    assert!(of("/via/h2").all(|e| e["protocol"] == "h2" && e["listener"] == "tls"));
    assert!(of("/via/h2c").all(|e| e["protocol"] == "h2" && e["listener"] == "h2c"));
    let ports: BTreeSet<_> = of("/via/h2").map(|e| e["client"].to_string()).collect();
    assert_eq!(
        ports.len(),
        1,
        "h2 requests share one connection: {ports:?}"
    );

    let resp = Request::get("/wrong").send(wrong).unwrap();
    assert_eq!(resp.status, 502);
    wait_until(Duration::from_secs(10), "the refusal in the log", || {
        front
            .log()
            .contains("certificate not valid for name \"other.test\"")
    });
    assert!(!entries.iter().any(|e| e["path"] == "/wrong"));
}
