//! Resilient upstreams with real backends: passive ejection of a backend answering
//! 500 (back after `base_ejection`, twice as long on relapse), retries bounded by the
//! budget during a total outage, and a backend process killed with SIGKILL under GET
//! and POST load (GETs all succeed; a POST fails only if it had reached the dead one;
//! the dead one is ejected with no health check).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SERVER: &str = "server:
  threads: 2
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
";

/// Pool `web` of `backends` with `pool_extra` (indented by 4), an HTTP listener on
/// `listen` and the admin endpoint on `admin`.
fn config(listen: SocketAddr, admin: SocketAddr, backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "{SERVER}admin:
  bind: \"{admin}\"
pools:
  web:
    backends: [{}]
{extra}
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

/// The `/status` document.
fn status(admin: SocketAddr) -> Value {
    let resp = get(admin, "/status").expect("GET /status");
    serde_json::from_slice(&resp.body).expect("status is JSON")
}

/// Backend `addr` of pool `web` in `/status`.
fn backend(admin: SocketAddr, addr: SocketAddr) -> Value {
    let doc = status(admin);
    let found = doc["pools"][0]["backends"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["address"] == addr.to_string()).cloned());
    found.expect("backend in /status")
}

fn out_reasons(b: &Value) -> Vec<String> {
    b["out"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|r| r.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends GETs from `clients` threads until `stop`; counts answers by status.
struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    answered: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl Traffic {
    fn start(listen: SocketAddr, clients: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
                std::thread::spawn(move || {
                    // Bounded: a minute of requests at most.
                    let end = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                        match Request::get("/")
                            .timeout(Duration::from_secs(10))
                            .send(listen)
                        {
                            Ok(_) => answered.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                failed.lock().unwrap().push(e.to_string());
                                0
                            }
                        };
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            threads,
            answered,
            failed,
        }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.answered.load(Ordering::SeqCst), failed)
    }
}

/// The first `n` pauses of more than 300 ms in the requests `b` receives, sampled
/// every 5 ms for at most 20 s: how long it was out of rotation each time.
fn pauses(b: &HttpBackend, n: usize) -> Vec<Duration> {
    let end = Instant::now() + Duration::from_secs(20);
    let (mut count, mut last_change) = (b.requests(), Instant::now());
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
        let now = b.requests();
        if now != count {
            let gap = last_change.elapsed();
            if gap > Duration::from_millis(300) && count > 0 {
                out.push(gap);
            }
            (count, last_change) = (now, Instant::now());
        }
    }
    out
}

#[test]
fn a_backend_answering_500_is_ejected_and_twice_as_long_on_relapse() {
    let (good, bad) = (spawn_http_backend("good"), spawn_http_backend("bad"));
    bad.set_status(500);
    let (listen, admin) = (free_addr(), free_addr());
    let extra = "    outlier: {consecutive_failures: 3, base_ejection: 1s, max_ejected: 50%}";
    let yaml = config(listen, admin, &[good.addr(), bad.addr()], extra);
    let _tioga = Tioga::start(&yaml, &[listen, admin]);
    let traffic = Traffic::start(listen, 2);

    let gaps = pauses(&bad, 2);
    let (answered, failed) = traffic.finish();
    assert_eq!(gaps.len(), 2, "two ejections seen at the backend: {gaps:?}");
    let (first, second) = (gaps[0], gaps[1]);
    eprintln!("ejections seen at the backend: {first:?} then {second:?}");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(answered > 0);
    // Sampled every 5 ms; the machine may be loaded.
    let ms = |d: Duration| d.as_millis() as u64;
    assert!(
        (700..=1600).contains(&ms(first)),
        "first ejection {first:?}"
    );
    assert!(
        (1700..=2600).contains(&ms(second)),
        "second ejection {second:?}"
    );
    let b = backend(admin, bad.addr());
    assert!(b["ejections"].as_u64().unwrap() >= 2);
    // The good one never left.
    assert!(out_reasons(&backend(admin, good.addr())).is_empty());
}

#[test]
fn a_total_outage_retries_within_the_budget_and_every_answer_arrives() {
    let backends: Vec<HttpBackend> = ["a", "b", "c"].map(spawn_http_backend).into();
    for b in &backends {
        b.set_status(503);
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let (listen, admin) = (free_addr(), free_addr());
    let extra = "    retries: 2
    retry_on: [502, 503]
    retry_budget: {ratio: 20%, min_per_second: 1}";
    let _tioga = Tioga::start(&config(listen, admin, &addrs, extra), &[listen, admin]);

    let n = 400;
    for i in 0..n {
        let resp = Request::get("/")
            .timeout(Duration::from_secs(10))
            .send(listen)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(
            resp.status, 503,
            "request {i}: the backends' answer arrives"
        );
    }
    let reached: usize = backends.iter().map(|b| b.requests()).sum();
    let retries = reached - n;
    // 20% of the requests, plus the floor: 1/s over the budget's 10 s window.
    let allowed = n / 5 + 10;
    assert!(retries <= allowed, "{retries} retries for {n} requests");
    assert!(retries >= n / 5, "the budget is used: {retries} retries");
    eprintln!("outage: {n} requests, {retries} retries (allowed {allowed})");
    let doc = status(admin);
    let pool = &doc["pools"][0];
    assert_eq!(pool["retries"]["503"].as_u64(), Some(retries as u64));
    assert!(pool["retry_budget_exhausted"].as_u64().unwrap() > 0);
}

/// Run as a child process by [`chaos`]: an HTTP backend that prints `listening ADDR`,
/// then `got ID` for each request, until killed. A no-op in a normal test run.
#[test]
fn backend_process() {
    let Ok(name) = std::env::var("TIOGA_TEST_BACKEND_PROCESS") else {
        return;
    };
    let b = spawn_http_backend(&name);
    b.announce();
    println!("listening {}", b.addr());
    // Killed by the parent; bounded in case the parent dies first.
    std::thread::sleep(Duration::from_secs(120));
}

/// A backend in its own process, so that it can be killed with SIGKILL.
struct BackendProcess {
    child: Child,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl BackendProcess {
    fn spawn(name: &str) -> BackendProcess {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "backend_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TIOGA_TEST_BACKEND_PROCESS", name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start backend process");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("backend output").expect("read");
            // The harness's `test backend_process ... ` precedes it on the line.
            if let Some((_, a)) = line.split_once("listening ") {
                break a.trim().parse().expect("address");
            }
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("got ") {
                    sink.lock().unwrap().push(id.to_string());
                }
            }
        });
        BackendProcess {
            child,
            addr,
            seen,
            reader: Some(reader),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
        // Everything it printed before dying, read to the end of the pipe.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One chaos request: its id, whether it was a POST, and its status or error.
type Outcome = (String, bool, Result<u16, String>);

#[test]
fn chaos_a_backend_killed_under_load_fails_no_get() {
    let mut procs: Vec<BackendProcess> = ["p0", "p1", "p2"].map(BackendProcess::spawn).into();
    let addrs: Vec<SocketAddr> = procs.iter().map(|p| p.addr).collect();
    let (listen, admin) = (free_addr(), free_addr());
    let extra = "    retries: 2
    retry_on: [connect_failure, reset, 502, 503, 504]
    outlier: {consecutive_failures: 5, base_ejection: 60s, max_ejected: 50%}";
    // The access log says which backend each request last went to.
    let yaml = format!(
        "access_log: {{target: \"@DIR@/access.log\", format: json}}\n{}",
        config(listen, admin, &addrs, extra)
    );
    let tioga = Tioga::start(&yaml, &[listen, admin]);

    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Outcome>>> = Default::default();
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let (stop, next_id, results) = (stop.clone(), next_id.clone(), results.clone());
            std::thread::spawn(move || {
                let post = c % 3 == 2;
                let end = Instant::now() + Duration::from_secs(60);
                let mut conn: Option<Conn> = None;
                while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                    let id = format!("r{}", next_id.fetch_add(1, Ordering::SeqCst));
                    let req = if post {
                        Request::post(&format!("/post?id={id}"), vec![b'x'; 2048])
                    } else {
                        Request::get(&format!("/get?id={id}"))
                    };
                    let req = req.header("x-id", &id).timeout(Duration::from_secs(10));
                    let c = match conn.take() {
                        Some(c) => Ok(c),
                        None => Conn::open(listen),
                    };
                    let result = c.and_then(|mut c| {
                        let r = c.send(&req);
                        if r.is_ok() && c.is_reusable() {
                            conn = Some(c);
                        }
                        r
                    });
                    let result = result.map(|r| r.status).map_err(|e| e.to_string());
                    results.lock().unwrap().push((id, post, result));
                }
            })
        })
        .collect();
    let total = || results.lock().unwrap().len();
    wait_until(Duration::from_secs(30), "load before the kill", || {
        total() > 300
    });
    let victim = 1;
    let dead = procs[victim].addr;
    procs[victim].kill9();
    let at_kill = total();
    wait_until(Duration::from_secs(30), "load after the kill", || {
        total() > at_kill + 600
    });
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }

    let results = results.lock().unwrap();
    let seen_by_dead = procs[victim].seen.lock().unwrap().clone();
    let mut failed_posts = Vec::new();
    for (id, post, result) in results.iter() {
        let ok = matches!(result, Ok(200));
        if !post {
            assert!(ok, "GET {id} failed: {result:?}");
        } else if !ok {
            failed_posts.push(id.clone());
        }
    }
    // A failed POST must have been sent to the killed backend: the access log names
    // the backend it last went to. (Whether the dying process read it first, its
    // own log tells, when it had time to write it.)
    let log_path = tioga.dir().join("access.log");
    let entry_of = |id: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let want = format!("/post?id={id}");
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["path"] == want.as_str())
    };
    for id in &failed_posts {
        wait_until(Duration::from_secs(10), "the access log entry", || {
            entry_of(id).is_some()
        });
        let entry = entry_of(id).unwrap();
        assert_eq!(
            entry["backend"],
            dead.to_string(),
            "POST {id} failed but had not gone to the killed backend: {entry}"
        );
    }
    let read_by_dead = failed_posts
        .iter()
        .filter(|id| seen_by_dead.contains(id))
        .count();
    let failed_posts = failed_posts.len();
    let b = backend(admin, dead);
    assert_eq!(out_reasons(&b), vec!["outlier".to_string()], "{b}");
    assert!(doc_has_no_health_check(admin));
    assert_eq!(b["ejections"], 1, "ejected once (60 s): {b}");
    let at = &b["last_ejection"];
    let count = |v: &Value, key: &str| v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"));
    // Its fifth consecutive failure ejected it.
    assert_eq!(count(at, "consecutive"), 5, "{b}");
    // No request chosen after the ejection went to it.
    assert_eq!(
        count(&b, "requests"),
        count(at, "requests"),
        "requests handed to the dead backend after its ejection: {b}"
    );
    // Failures recorded after the ejection belong to requests already under way to it
    // then (the ejecting one is among `in_flight`).
    let failures = count(&b, "connect_failures") + count(&b, "errors");
    let (before, after) = (count(at, "failures"), failures - count(at, "failures"));
    assert!(
        after < count(at, "in_flight").max(1),
        "{after} failures after the ejection, {} requests were under way then: {b}",
        count(at, "in_flight")
    );
    // Each recorded failure is one try that failed there, counted once: a retry (the
    // live backends never fail) or a request that failed outright.
    let entries = || -> Vec<Value> {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    wait_until(
        Duration::from_secs(10),
        "every request in the access log",
        || entries().len() >= results.len(),
    );
    let entries = entries();
    let retried: u64 = entries.iter().map(|e| count(e, "retries")).sum();
    assert_eq!(
        failures,
        retried + failed_posts as u64,
        "failures recorded on the dead backend vs. tries that failed there: {b}"
    );
    eprintln!(
        "chaos: {} requests, {failed_posts} POSTs failed (all sent to the killed backend, \
         {read_by_dead} of them logged as read by it); the dead one failed {before} times \
         until its ejection ({} consecutive) and {after} times after it (requests under way \
         then: {}), and got no request after it",
        results.len(),
        count(at, "consecutive"),
        count(at, "in_flight"),
    );
}

fn doc_has_no_health_check(admin: SocketAddr) -> bool {
    status(admin)["pools"][0]["health_check"].is_null()
}

#[test]
fn bad_resilience_settings_are_reported_with_their_key_path() {
    let yaml = "pools:
  web:
    backends: [\"127.0.0.1:9\"]
    outlier: {consecutive_failures: 0, base_ejection: soon, max_ejected: 150%}
    panic_threshold: half
    retry_on: [connect_failure, 500]
    retry_budget: {ratio: 20%, min_per_second: 1, burst: 3}
listeners:
  web:
    protocol: http
    bind: \"127.0.0.1:1\"
    routes:
      - pool: web
";
    let (code, stderr) = check_config(yaml);
    assert_ne!(code, 0);
    for path in [
        "pools.web.outlier.consecutive_failures",
        "pools.web.outlier.base_ejection",
        "pools.web.outlier.max_ejected",
        "pools.web.panic_threshold",
        "pools.web.retry_on[1]",
        "pools.web.retry_budget",
    ] {
        assert!(stderr.contains(path), "{path} not in:\n{stderr}");
    }
}
