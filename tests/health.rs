//! Active health checks: a backend failing its HTTP probe is taken out of its pool and
//! comes back once it passes again; `expect_status` decides what passing means; a TCP
//! probe takes out a stopped backend; and a pool is probed by one stream of checks,
//! however many listeners share it (the contract: health checks run once per pool).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// Longest wait for a health transition; the probes run every 200 ms.
const TRANSITION: Duration = Duration::from_secs(5);

/// The `server:` section every test uses: one worker thread, files in the temp dir.
const SERVER: &str = "server:
  threads: 1
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
";

/// A config with pool `web` of `backends` (with `pool_extra` YAML, indented by 4) and
/// one http listener on `listen` sending everything to it.
fn config(listen: SocketAddr, backends: &[SocketAddr], pool_extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "{SERVER}pools:
  web:
    backends: [{}]
{pool_extra}
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - pool: web
",
        list.join(", ")
    )
}

/// Sends `GET /` to `listen`; returns the status and the backend that answered.
fn fetch(listen: SocketAddr) -> (u16, String) {
    let resp = get(listen, "/").expect("request through tioga");
    let backend = resp.header("x-backend").unwrap_or("-").to_string();
    (resp.status, backend)
}

/// The backends that answer `n` requests in a row, panicking on any non-200 answer.
fn served_by(listen: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match fetch(listen) {
            (200, backend) => backend,
            (status, _) => panic!("request {i}: status {status}"),
        })
        .collect()
}

/// Whether `n` requests in a row all get 200 from `name`.
fn all_served_by(listen: SocketAddr, n: usize, name: &str) -> bool {
    (0..n).all(|_| fetch(listen) == (200, name.to_string()))
}

#[test]
fn failing_backend_is_ejected_then_returns() {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let listen = free_addr();
    let hc = "    health_check: {type: http, path: /health, interval: 200ms, timeout: 200ms, \
              rise: 2, fall: 2}";
    let _tioga = Tioga::start(&config(listen, &[a.addr(), b.addr()], hc), &[listen]);

    let names = served_by(listen, 4);
    assert!(names.contains(&"a".to_string()) && names.contains(&"b".to_string()));

    a.set_healthy(false);
    wait_until(TRANSITION, "a to be taken out", || {
        all_served_by(listen, 6, "b")
    });
    let names = served_by(listen, 20);
    assert!(names.iter().all(|n| n == "b"), "a still served: {names:?}");
    let probes = a.health_checks();
    wait_until(TRANSITION, "a to be probed while out", || {
        a.health_checks() > probes + 1
    });

    a.set_healthy(true);
    wait_until(TRANSITION, "a to come back", || {
        served_by(listen, 2).contains(&"a".to_string())
    });
    let names = served_by(listen, 10);
    let from_a = names.iter().filter(|n| *n == "a").count();
    assert_eq!(from_a, 5, "round robin over both again: {names:?}");
}

#[test]
fn expect_status_decides_what_passes() {
    let c = spawn_http_backend("c");
    let listen = free_addr();
    // Two pools on the same backend, which answers its health path with 200.
    let yaml = format!(
        "{SERVER}pools:
  strict:
    backends: [\"{c}\"]
    health_check: {{type: http, path: /health, expect_status: 204, interval: 200ms, fall: 1}}
  plain:
    backends: [\"{c}\"]
    health_check: {{type: http, path: /health, expect_status: 200, interval: 200ms, fall: 1}}
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - match: {{path_prefix: /strict}}
        pool: strict
      - pool: plain
",
        c = c.addr()
    );
    let _tioga = Tioga::start(&yaml, &[listen]);

    let status = |path: &str| get(listen, path).expect("request through tioga").status;
    wait_until(TRANSITION, "pool strict to have no backend", || {
        status("/strict") == 503
    });
    let plain_probes = c.health_checks();
    wait_until(TRANSITION, "more probes", || {
        c.health_checks() >= plain_probes + 4
    });
    for _ in 0..3 {
        assert_eq!(status("/strict"), 503, "200 passed `expect_status: 204`");
        assert_eq!(
            fetch(listen),
            (200, "c".to_string()),
            "200 failed `expect_status: 200`"
        );
    }
}

#[test]
fn tcp_check_ejects_a_stopped_backend() {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let listen = free_addr();
    // Without retries, a request sent to the stopped backend would fail with 502: only
    // the health check keeps requests away from it.
    let extra = "    retries: 0
    health_check: {type: tcp, interval: 200ms, timeout: 200ms, fall: 1}";
    let _tioga = Tioga::start(&config(listen, &[a.addr(), b.addr()], extra), &[listen]);
    let names = served_by(listen, 4);
    assert!(names.contains(&"a".to_string()), "{names:?}");

    a.stop();
    wait_until(TRANSITION, "a to be taken out", || {
        all_served_by(listen, 6, "b")
    });
    for i in 0..20 {
        assert_eq!(fetch(listen), (200, "b".to_string()), "request {i}");
    }
}

#[test]
fn one_probe_stream_per_pool_whatever_the_listeners() {
    const INTERVAL: Duration = Duration::from_millis(200);
    const WINDOW: Duration = Duration::from_secs(2);
    let h = spawn_http_backend("h");
    let (web1, web2, raw) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        "{SERVER}pools:
  shared:
    backends: [\"{h}\"]
    health_check: {{type: http, path: /health, interval: 200ms, timeout: 200ms}}
listeners:
  web1:
    protocol: http
    bind: \"{web1}\"
    routes:
      - pool: shared
  web2:
    protocol: http
    bind: \"{web2}\"
    routes:
      - pool: shared
  raw:
    protocol: tcp
    bind: \"{raw}\"
    pool: shared
",
        h = h.addr()
    );
    let _tioga = Tioga::start(&yaml, &[web1, web2, raw]);
    wait_until(TRANSITION, "the first probe", || h.health_checks() > 0);

    let (start, before) = (Instant::now(), h.health_checks());
    wait_until(WINDOW * 3, "the measuring window to pass", || {
        start.elapsed() >= WINDOW
    });
    let (window, probes) = (start.elapsed(), h.health_checks() - before);
    let expected = window.as_secs_f64() / INTERVAL.as_secs_f64();
    eprintln!("{probes} probes in {window:?}; one stream every {INTERVAL:?} makes {expected:.1}");
    assert!(
        (probes as f64) < expected * 1.5,
        "{probes} probes in {window:?}: more than one stream for 3 listeners sharing a pool"
    );
    assert!(
        (probes as f64) > expected * 0.5,
        "{probes} probes in {window:?}: fewer than one every {INTERVAL:?}"
    );
    // All three listeners use the pool.
    assert_eq!(get(web1, "/").unwrap().header("x-backend"), Some("h"));
    assert_eq!(get(web2, "/").unwrap().header("x-backend"), Some("h"));
}
