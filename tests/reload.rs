//! Reload in place (SIGHUP and `POST /reload`):
//! - 20 reloads under continuous keep-alive and new-connection load (plain and TLS),
//!   alternating route, backend, filter and certificate changes: no request fails, no
//!   connection is reset or closed, each change is served right after its reload, and
//!   the time from signal to the new config serving is measured (median, max);
//! - a pool unchanged across a reload keeps its health (a down backend stays down with
//!   no new probe) and its idle upstream connections (counted at the backend);
//! - a bad config, or one whose tests fail, is refused with every problem in the log
//!   and in `POST /reload`'s answer, the old config serving, no request failing;
//! - `POST /reload` needs the admin token: 401 without it, and nothing reloads.

mod common;

use common::pki::{inspecting_config, TestCa};
use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const TOKEN: &str = "reload-test-token-6d1f";

/// The config of generation `gen`: its response header says the generation; odd ones
/// send `/` to backend b, even ones to a; each adds route `/gen{gen}`; the TLS
/// listener's certificate is `cert-{gen % 2}`.
struct Setup {
    plain: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
    a: HttpBackend,
    b: HttpBackend,
    /// Certificates and the admin token.
    keys: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let keys = tempfile::tempdir().unwrap();
        std::fs::write(keys.path().join("token"), TOKEN).unwrap();
        Setup {
            plain: free_addr(),
            tls: free_addr(),
            admin: free_addr(),
            a: spawn_http_backend("a"),
            b: spawn_http_backend("b"),
            keys,
        }
    }
}

fn config(gen: usize, s: &Setup) -> String {
    let (main, other) = if gen.is_multiple_of(2) {
        ("a", "b")
    } else {
        ("b", "a")
    };
    let (plain, tls, admin, keys) = (s.plain, s.tls, s.admin, s.keys.path().display());
    format!(
        r#"
admin: {{bind: "{admin}", token_file: "{keys}/token"}}
pools:
  a: {{backends: ["{a}"]}}
  b: {{backends: ["{b}"]}}
listeners:
  plain:
    protocol: http
    bind: "{plain}"
    routes:
      - match: {{path_prefix: /gen{gen}}}
        pool: {other}
        filters: [{{set_response_headers: {{x-gen: "{gen}", x-route: "gen"}}}}]
      - pool: {main}
        filters: [{{set_response_headers: {{x-gen: "{gen}"}}}}]
  secure:
    protocol: http
    bind: "{tls}"
    tls: {{cert: "{keys}/cert-{c}.pem", key: "{keys}/cert-{c}.key"}}
    routes:
      - pool: {main}
        filters: [{{set_response_headers: {{x-gen: "{gen}"}}}}]
"#,
        a = s.a.addr(),
        b = s.b.addr(),
        c = gen % 2,
    )
}

/// Failures seen by the load, with what they were.
#[derive(Default)]
struct Seen {
    ok: AtomicUsize,
    failed: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Seen {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut e = self.errors.lock().unwrap();
        if e.len() < 20 {
            e.push(what);
        }
    }
}

/// Keep-alive clients that never reconnect (any close or reset is a failure) and
/// clients opening a connection per request, until `stop`; bounded either way.
fn load(
    addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut workers = Vec::new();
    for k in 0..4 {
        let (seen, stop) = (seen.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            let mut conn = Conn::open(addr).expect("connect");
            for i in 0..50_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match conn.send(&Request::get(&format!("/k{k}/{i}"))) {
                    Ok(r) if r.status == 200 => {
                        seen.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => seen.fail(format!("keep-alive: status {}", r.status)),
                    Err(e) => {
                        seen.fail(format!("keep-alive connection {k}: {e}"));
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        }));
    }
    for _ in 0..2 {
        let (seen, stop) = (seen.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..50_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match Request::get(&format!("/n/{i}")).send(addr) {
                    Ok(r) if r.status == 200 => {
                        seen.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => seen.fail(format!("new connection: status {}", r.status)),
                    Err(e) => seen.fail(format!("new connection: {e}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    workers
}

/// One TLS request to `addr`: the presented leaf certificate and the answer.
fn tls_get(addr: SocketAddr) -> io::Result<(CertificateDer<'static>, String)> {
    let config = inspecting_config(&[&rustls::version::TLS13]);
    let name = ServerName::try_from("reload.test".to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: reload.test\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned();
    let leaf = leaf.ok_or_else(|| io::Error::other("no certificate"))?;
    Ok((leaf, String::from_utf8_lossy(&answer).into_owned()))
}

/// A POST to the admin endpoint with `token` (none: no Authorization header).
fn post(admin: SocketAddr, path: &str, token: Option<&str>) -> Response {
    let mut req = Request::post(path, "");
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    req.timeout(Duration::from_secs(30))
        .send(admin)
        .expect("admin answers")
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Requests of the load that complete from the moment each reload is asked for.
const LOAD_PER_RELOAD: usize = 30;

#[test]
fn twenty_reloads_under_load_lose_nothing() {
    let s = Setup::new();
    let ca = TestCa::new(s.keys.path(), "reload");
    let certs = [
        ca.issue("cert-0", "zero", &["reload.test"]),
        ca.issue("cert-1", "one", &["reload.test"]),
    ];
    let (plain, tls, admin) = (s.plain, s.tls, s.admin);
    let tioga = Tioga::start(&config(0, &s), &[plain, tls, admin]);
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(plain, seen.clone(), stop.clone());
    wait_until(Duration::from_secs(10), "load flowing", || {
        seen.ok.load(Ordering::SeqCst) > 50
    });
    let mut took = Vec::new();
    for gen in 1..=20 {
        tioga.rewrite_config(&config(gen, &s));
        let ok_before = seen.ok.load(Ordering::SeqCst);
        let sent = Instant::now();
        if gen.is_multiple_of(2) {
            tioga.signal("HUP");
        } else {
            let r = post(admin, "/reload", Some(TOKEN));
            assert_eq!(r.status, 200, "POST /reload: {}", r.text());
        }
        // The new generation answers on a new connection; route, backend and filter
        // changed with it.
        let want = gen.to_string();
        let main = if gen.is_multiple_of(2) { "a" } else { "b" };
        // Polled every millisecond: the figure is the reload's, not the poll's.
        let deadline = sent + Duration::from_secs(5);
        let served = loop {
            let r = get(plain, "/").unwrap();
            if r.header("x-gen") == Some(want.as_str()) {
                break Some(sent.elapsed());
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(served.is_some(), "generation {gen} not served within 5 s");
        took.push(served.unwrap());
        // The load goes on across each reload, however fast the machine runs the loop.
        wait_until(Duration::from_secs(10), "load across the reload", || {
            seen.ok.load(Ordering::SeqCst) >= ok_before + LOAD_PER_RELOAD
        });
        let r = get(plain, "/").unwrap();
        assert_eq!(
            r.header("x-backend"),
            Some(main),
            "generation {gen}: backend"
        );
        let r = get(plain, &format!("/gen{gen}/x")).unwrap();
        assert_eq!(r.header("x-route"), Some("gen"), "generation {gen}: route");
        assert_ne!(
            r.header("x-backend"),
            Some(main),
            "generation {gen}: route's pool"
        );
        // Certificates are read again: the TLS listener presents this generation's.
        let (leaf, answer) = tls_get(tls).unwrap();
        assert_eq!(leaf, certs[gen % 2].der, "generation {gen}: certificate");
        assert!(
            answer.contains(&format!("x-gen: {gen}")),
            "generation {gen}: {answer}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let errors = seen.errors.lock().unwrap().clone();
    assert_eq!(
        seen.failed.load(Ordering::SeqCst),
        0,
        "failures: {errors:?}"
    );
    assert!(
        seen.ok.load(Ordering::SeqCst) >= 20 * LOAD_PER_RELOAD,
        "too little load to tell"
    );
    let max = *took.iter().max().unwrap();
    let med = median(&mut took);
    println!("signal to new config serving over 20 reloads: median {med:?}, max {max:?}");
    let log = tioga.log();
    assert_eq!(log.matches("in place in").count(), 20, "{log}");
    assert!(!log.contains("needs an upgrade"), "{log}");
}

#[test]
fn refused_reloads_change_nothing() {
    let s = Setup::new();
    let ca = TestCa::new(s.keys.path(), "reload");
    ca.issue("cert-0", "zero", &["reload.test"]);
    ca.issue("cert-1", "one", &["reload.test"]);
    let tioga = Tioga::start(&config(0, &s), &[s.plain, s.tls, s.admin]);
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(s.plain, seen.clone(), stop.clone());
    wait_until(Duration::from_secs(10), "load flowing", || {
        seen.ok.load(Ordering::SeqCst) > 50
    });

    // Two problems at once: both are named, nothing changes.
    let bad = config(1, &s)
        .replace("pool: a\n", "pool: nowhere\n")
        .replace("backends: [\"", "backends: [\"nonsense:xx\", \"");
    tioga.rewrite_config(&bad);
    let r = post(s.admin, "/reload", Some(TOKEN));
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.text();
    assert!(body.contains("nowhere"), "{body}");
    assert!(body.contains("nonsense:xx"), "{body}");
    assert!(body.contains("\"result\": \"refused\""), "{body}");
    // SIGHUP with the same file: refused, every problem logged.
    tioga.signal("HUP");
    wait_until(Duration::from_secs(10), "the refusal in the log", || {
        tioga
            .log()
            .contains("reload (SIGHUP) refused: the running config keeps serving")
    });
    let log = tioga.log();
    assert!(
        log.contains("nowhere") && log.contains("nonsense:xx"),
        "{log}"
    );

    // A config whose own tests fail is refused too.
    let failing = format!(
        "{}tests:\n  - request: GET http://x/gen1/y\n    expect: {{pool: b}}\n",
        config(1, &s)
    );
    tioga.rewrite_config(&failing);
    let r = post(s.admin, "/reload", Some(TOKEN));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("tests[0]"), "{}", r.text());

    assert_eq!(get(s.plain, "/").unwrap().header("x-gen"), Some("0"));
    let status = get(s.admin, "/status").unwrap().text();
    assert!(status.contains("\"result\": \"refused\""), "{status}");
    let metrics = get(s.admin, "/metrics").unwrap().text();
    assert!(
        metrics.contains("tioga_config_reloads_total{result=\"refused\"} 3"),
        "{metrics}"
    );
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let errors = seen.errors.lock().unwrap().clone();
    assert_eq!(
        seen.failed.load(Ordering::SeqCst),
        0,
        "failures: {errors:?}"
    );
}

#[test]
fn changes_need_the_token() {
    let s = Setup::new();
    let ca = TestCa::new(s.keys.path(), "reload");
    ca.issue("cert-0", "zero", &["reload.test"]);
    ca.issue("cert-1", "one", &["reload.test"]);
    let tioga = Tioga::start(&config(0, &s), &[s.plain, s.tls, s.admin]);
    tioga.rewrite_config(&config(1, &s));
    assert_eq!(post(s.admin, "/reload", None).status, 401);
    assert_eq!(post(s.admin, "/reload", Some("wrong")).status, 401);
    assert_eq!(post(s.admin, "/reload", Some(&TOKEN[1..])).status, 401);
    let drain = format!("/pools/a/backends/{}", s.a.addr());
    let r = Request::post(&drain, r#"{"state":"maint"}"#)
        .send(s.admin)
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(get(s.plain, "/").unwrap().header("x-gen"), Some("0"));
    assert_eq!(get(s.plain, "/").unwrap().header("x-backend"), Some("a"));
    assert!(!tioga.log().contains("reload ("), "{}", tioga.log());
    // With the token, it applies.
    assert_eq!(post(s.admin, "/reload", Some(TOKEN)).status, 200);
    assert_eq!(get(s.plain, "/").unwrap().header("x-gen"), Some("1"));
}

/// Pools whose settings are the same in both files keep their state.
#[test]
fn unchanged_pools_keep_health_and_connections() {
    let (up, down, kept) = (
        spawn_http_backend("up"),
        spawn_http_backend("down"),
        spawn_http_backend("kept"),
    );
    down.set_healthy(false);
    let (web, admin) = (free_addr(), free_addr());
    let yaml = |header: &str| {
        format!(
            r#"
admin: {{bind: "{admin}"}}
pools:
  checked:
    backends: ["{up}", "{down}"]
    health_check: {{type: http, path: /health, interval: 1h, timeout: 1s, fall: 1}}
  kept: {{backends: ["{kept}"]}}
listeners:
  web:
    protocol: http
    bind: "{web}"
    routes:
      - match: {{path_prefix: /kept}}
        pool: kept
        filters: [{{set_response_headers: {{x-gen: "{header}"}}}}]
      - pool: checked
        filters: [{{set_response_headers: {{x-gen: "{header}"}}}}]
"#,
            up = up.addr(),
            down = down.addr(),
            kept = kept.addr(),
        )
    };
    let tioga = Tioga::start(&yaml("0"), &[web, admin]);
    wait_until(Duration::from_secs(10), "the first probes", || {
        up.health_checks() >= 1 && down.health_checks() >= 1
    });
    wait_until(Duration::from_secs(10), "the down backend out", || {
        (0..4).all(|_| get(web, "/").unwrap().header("x-backend") == Some("up"))
    });
    let mut conn = Conn::open(web).unwrap();
    for i in 0..5 {
        assert_eq!(
            conn.send(&Request::get(&format!("/kept/{i}")))
                .unwrap()
                .status,
            200
        );
    }
    let (probes, connections) = (
        (up.health_checks(), down.health_checks()),
        kept.connections(),
    );

    tioga.rewrite_config(&yaml("1"));
    tioga.signal("HUP");
    wait_until(Duration::from_secs(10), "the reload", || {
        get(web, "/").unwrap().header("x-gen") == Some("1")
    });
    for i in 0..20 {
        let r = get(web, &format!("/{i}")).unwrap();
        assert_eq!(
            r.header("x-backend"),
            Some("up"),
            "the down backend stays out"
        );
    }
    for i in 0..5 {
        let r = conn
            .send(&Request::get(&format!("/kept/again/{i}")))
            .unwrap();
        assert_eq!(r.header("x-gen"), Some("1"));
    }
    assert_eq!(
        (up.health_checks(), down.health_checks()),
        probes,
        "no new probe"
    );
    assert_eq!(
        kept.connections(),
        connections,
        "the idle upstream connection is reused"
    );
    let status = get(admin, "/status").unwrap().text();
    assert!(status.contains("\"reloads\": 1"), "{status}");
}
