//! Zero-downtime upgrades and graceful shutdown, end to end with the real binary.
//!
//! An upgrade is what an operator does: rewrite the config, start `tioga -c FILE -u`,
//! send the running process SIGQUIT. The old process hands its listening sockets over
//! `server.upgrade_sock`, keeps serving for Pingora's fixed 5 s, stops accepting, lets
//! connections run for `grace_period` and exits. Under continuous HTTP and TCP load,
//! five such upgrades in a row, each changing the config, must lose no request and no
//! byte, and each new config must be in effect once the old process is gone. A broken
//! config must never take the sockets, an upgrade with nobody to take them from must
//! fail clearly, and SIGTERM must let in-flight requests finish. These run with
//! `threads: 2` (work stealing); one hand-over runs with `threads: 1`, Tioga's
//! single-threaded runtime. (A start on an address in use is covered by
//! `tests/config_check.rs`.)

mod common;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::load::{greeted_by, poll_until, start_stream, Load, LoadStats, StreamRun};
use common::*;

/// How long an old process may take to exit after SIGQUIT: up to 5 s for the hand-over
/// wait, Pingora's 5 s, grace_period and graceful_shutdown_timeout (1 s each), slack.
const OLD_EXIT_DEADLINE: Duration = Duration::from_secs(15);
/// How long to wait for the load to show progress.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(10);
/// Size, count and pace of a long stream's chunks: 3 MiB over about 2.5 s, well inside
/// the 5 s + grace_period an old process keeps serving after SIGQUIT.
const STREAM_CHUNK: usize = 32 * 1024;
const STREAM_CHUNKS: usize = 96;
const STREAM_PACE: Duration = Duration::from_millis(25);

/// The `server:` block of every config here.
const SERVER: &str = "server:
  threads: 2
  pid_file: @DIR@/t.pid
  upgrade_sock: @DIR@/up.sock
  grace_period: 1s
  graceful_shutdown_timeout: 1s
";

/// One version of the upgrade test's config.
#[derive(Clone)]
struct Version {
    /// Sent back as `x-config: vN` by every route.
    n: u32,
    /// The backends of pool `web`.
    web: Vec<SocketAddr>,
    /// Pool `newpool` of this backend, and a route `/new` to it, when set.
    new_route: Option<SocketAddr>,
    /// The name and address of pool `raw`'s only backend.
    raw: (&'static str, SocketAddr),
    /// The name and address of the second http listener.
    extra: (&'static str, SocketAddr),
}

impl Version {
    /// The YAML: listener `l1` (http) on `l1`, listener `t` (tcp) on `t`, plus `extra`.
    fn yaml(&self, l1: SocketAddr, t: SocketAddr) -> String {
        let quoted: Vec<String> = self.web.iter().map(|b| format!("\"{b}\"")).collect();
        let headers = |route: &str| format!("{{x-config: v{}, x-route: {route}}}", self.n);
        let (mut new_pool, mut new_route) = (String::new(), String::new());
        if let Some(c) = self.new_route {
            new_pool = format!("  newpool:\n    backends: [\"{c}\"]\n");
            new_route = format!(
                "      - match: {{path_prefix: /new}}\n        pool: newpool\n        filters:\n          - set_response_headers: {}\n",
                headers("new")
            );
        }
        format!(
            "{SERVER}pools:
  web:
    backends: [{web}]
  raw:
    backends: [\"{raw}\"]
{new_pool}listeners:
  l1:
    protocol: http
    bind: \"{l1}\"
    routes:
{new_route}      - pool: web
        filters:
          - set_response_headers: {main}
  t:
    protocol: tcp
    bind: \"{t}\"
    pool: raw
  {extra}:
    protocol: http
    bind: \"{extra_addr}\"
    routes:
      - pool: web
        filters:
          - set_response_headers: {extra_headers}
",
            web = quoted.join(", "),
            raw = self.raw.1,
            main = headers("main"),
            extra = self.extra.0,
            extra_addr = self.extra.1,
            extra_headers = headers("extra"),
        )
    }
}

/// Upgrades `old` to `yaml` the operator's way and waits for the old process to exit
/// (code 0) and the new one to accept on `ready`. Returns the new process and the time
/// from starting it to the old one's exit.
fn upgrade(mut old: Tioga, yaml: &str, ready: &[SocketAddr]) -> (Tioga, Duration) {
    old.rewrite_config(yaml);
    let start = Instant::now();
    let mut new = old.spawn_again(&["-u"]);
    old.signal("QUIT");
    let code = old.exit_code(OLD_EXIT_DEADLINE);
    let took = start.elapsed();
    assert_eq!(
        code,
        Some(0),
        "the old process after SIGQUIT (None: still running)"
    );
    assert!(
        new.is_running(),
        "the new process exited: {:?}",
        new.wait_exit(Duration::ZERO)
    );
    new.wait_ready(ready);
    (new, took)
}

/// `GET path` on a new connection; asserts 200.
fn get_ok(addr: SocketAddr, path: &str) -> Response {
    let resp = get(addr, path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    assert_eq!(resp.status, 200, "GET {path} on {addr}: {}", resp.text());
    resp
}

/// Asserts that `addr` answers `GET path` from config version `n` and route `route`.
fn assert_answers(addr: SocketAddr, path: &str, n: u32, route: &str) -> Response {
    let resp = get_ok(addr, path);
    let want = format!("v{n}");
    assert_eq!(resp.header("x-config"), Some(want.as_str()), "{addr}{path}");
    assert_eq!(resp.header("x-route"), Some(route), "{addr}{path}");
    resp
}

/// Whether connecting to `addr` fails.
fn refuses(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

/// Waits until the load has served `http` more requests and `tcp` more connections.
fn wait_progress(stats: &LoadStats, http: usize, tcp: usize, when: &str) {
    let before = stats.totals();
    let progressed = poll_until(PROGRESS_DEADLINE, || {
        let now = stats.totals();
        now.http_ok >= before.http_ok + http && now.tcp_ok >= before.tcp_ok + tcp
    });
    assert!(
        progressed,
        "load did not progress {when} within {PROGRESS_DEADLINE:?}: {before:?} -> {:?}; errors: {:#?}",
        stats.totals(),
        stats.errors()
    );
}

/// Two long streams through the tcp listener, flowing before this returns.
fn open_streams(t: SocketAddr, round: u64) -> Vec<StreamRun> {
    let runs: Vec<StreamRun> = (0..2)
        .map(|i| {
            let seed = round * 2 + i + 1;
            start_stream(t, seed, STREAM_CHUNK, STREAM_CHUNKS, STREAM_PACE)
                .unwrap_or_else(|e| panic!("opening long stream {seed}: {e}"))
        })
        .collect();
    wait_until(PROGRESS_DEADLINE, "the long streams to flow", || {
        runs.iter().all(|r| r.received() > 0)
    });
    runs
}

/// The backends and listener addresses of the upgrade test.
struct Fixture {
    a: HttpBackend,
    b: HttpBackend,
    c: HttpBackend,
    t1: TcpBackend,
    t2: TcpBackend,
    /// Listener `l1` (http) and `t` (tcp), in every version.
    l1: SocketAddr,
    t: SocketAddr,
    /// Listener `old` (v1 to v3), then `new` (v4 on).
    old: SocketAddr,
    new: SocketAddr,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            a: spawn_http_backend("a"),
            b: spawn_http_backend("b"),
            c: spawn_http_backend("c"),
            t1: spawn_tcp_backend("t1"),
            t2: spawn_tcp_backend("t2"),
            l1: free_addr(),
            t: free_addr(),
            old: free_addr(),
            new: free_addr(),
        }
    }

    /// v1, then one change per upgrade: add route `/new` to pool newpool [c]; web from
    /// [a, b] to [b, c]; listener `old` replaced by `new`; raw from [t1] to [t2]; route
    /// `/new` and its pool removed.
    fn versions(&self) -> Vec<Version> {
        let v1 = Version {
            n: 1,
            web: vec![self.a.addr(), self.b.addr()],
            new_route: None,
            raw: ("t1", self.t1.addr()),
            extra: ("old", self.old),
        };
        let mut all = vec![v1];
        let next = |all: &Vec<Version>| {
            let mut v = all[all.len() - 1].clone();
            v.n += 1;
            v
        };
        let mut v = next(&all);
        v.new_route = Some(self.c.addr());
        all.push(v);
        let mut v = next(&all);
        v.web = vec![self.b.addr(), self.c.addr()];
        all.push(v);
        let mut v = next(&all);
        v.extra = ("new", self.new);
        all.push(v);
        let mut v = next(&all);
        v.raw = ("t2", self.t2.addr());
        all.push(v);
        let mut v = next(&all);
        v.new_route = None;
        all.push(v);
        all
    }

    /// Asserts that `v` is the config in effect, and only it.
    fn assert_in_effect(&self, v: &Version) {
        assert_answers(self.l1, "/", v.n, "main");
        assert_answers(v.extra.1, "/", v.n, "extra");
        let gone = if v.extra.1 == self.old {
            self.new
        } else {
            self.old
        };
        assert!(refuses(gone), "v{}: listener on {gone} accepts", v.n);
        match v.new_route {
            Some(_) => {
                let resp = assert_answers(self.l1, "/new", v.n, "new");
                assert_eq!(resp.header("x-backend"), Some("c"), "v{}: /new", v.n);
            }
            None => drop(assert_answers(self.l1, "/new", v.n, "main")),
        }
        let greeting = greeted_by(self.t).expect("a short connection through t");
        assert_eq!(
            greeting, v.raw.0,
            "v{}: backend of a new tcp connection",
            v.n
        );
    }
}

/// Waits for `grow` to gain `by` while `idle` stays at what it was; returns that value.
fn assert_replaced(idle: impl Fn() -> usize, grow: impl Fn() -> bool, what: &str) -> usize {
    let seen = idle();
    wait_until(
        PROGRESS_DEADLINE,
        &format!("{what}: the others to serve"),
        grow,
    );
    assert_eq!(idle(), seen, "{what}: still used");
    seen
}

#[test]
fn five_upgrades_under_load_lose_nothing() {
    let fx = Fixture::new();
    let (l1, t) = (fx.l1, fx.t);
    let versions = fx.versions();
    let mut tioga = Tioga::start(&versions[0].yaml(l1, t), &[l1, t, fx.old]);

    let mut load = Load::new();
    load.http_keepalive(l1, "/", 2);
    load.http_new_conn(l1, "/", 2);
    load.tcp_short(t, 1);
    wait_progress(load.stats(), 50, 10, "before the first upgrade");

    let (mut durations, mut stream_bytes, mut streams) = (Vec::new(), 0u64, 0usize);
    let (mut a_seen, mut t1_seen) = (None, None);
    for (round, pair) in versions.windows(2).enumerate() {
        let (previous, v) = (&pair[0], &pair[1]);
        let running = open_streams(t, round as u64);
        let (next, took) = upgrade(tioga, &v.yaml(l1, t), &[l1, t, v.extra.1]);
        tioga = next;
        durations.push(took);
        for run in running {
            let report = run.finish();
            assert!(
                report.error.is_none() && report.intact == report.planned,
                "long stream across the upgrade to v{}: {report:?}",
                v.n
            );
            assert_eq!(report.greeting, previous.raw.0, "long stream's backend");
            stream_bytes += report.intact;
            streams += 1;
        }
        fx.assert_in_effect(v);

        // A backend taken out gets nothing more, while the others keep serving.
        let (b, c, t2) = (&fx.b, &fx.c, &fx.t2);
        if !v.web.contains(&fx.a.addr()) && a_seen.is_none() {
            let (b0, c0) = (b.requests(), c.requests());
            let grow = || b.requests() >= b0 + 20 && c.requests() >= c0 + 20;
            a_seen = Some(assert_replaced(|| fx.a.requests(), grow, "backend a"));
        }
        if v.raw.1 == t2.addr() && t1_seen.is_none() {
            let t2_0 = t2.connections();
            let grow = || t2.connections() >= t2_0 + 10;
            t1_seen = Some(assert_replaced(|| fx.t1.connections(), grow, "backend t1"));
        }
        wait_progress(
            load.stats(),
            50,
            10,
            &format!("after the upgrade to v{}", v.n),
        );
        assert!(
            a_seen.is_none_or(|seen| fx.a.requests() == seen),
            "a used again"
        );
        assert!(
            t1_seen.is_none_or(|seen| fx.t1.connections() == seen),
            "t1 used again"
        );
    }
    assert!(tioga.is_running());

    let stats = load.stop();
    let n = stats.totals();
    eprintln!(
        "upgrade totals: HTTP requests served {}, failed {}, stale-connection retries {}; \
         short TCP connections ok {}, refused {}, failed {}; long TCP streams {streams}, \
         {stream_bytes} bytes echoed intact",
        n.http_ok, n.http_failed, n.stale_retries, n.tcp_ok, n.tcp_refused, n.tcp_failed,
    );
    for (i, d) in durations.iter().enumerate() {
        eprintln!(
            "upgrade {}: new process spawned → old exited in {d:.2?}",
            i + 1
        );
    }
    let errors = stats.errors();
    assert_eq!(n.http_failed, 0, "failed HTTP requests: {errors:#?}");
    assert_eq!(n.tcp_refused, 0, "refused TCP connections: {errors:#?}");
    assert_eq!(n.tcp_failed, 0, "failed TCP connections: {errors:#?}");
    assert_eq!(streams, 10);
}

/// One pool `web` of `backend` and one http listener `web` on `listen`.
fn simple_config(listen: SocketAddr, backend: SocketAddr, server: &str) -> String {
    format!(
        "{server}pools:
  web:
    backends: [\"{backend}\"]
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - pool: web
"
    )
}

#[test]
fn bad_config_upgrade_is_refused_and_old_keeps_serving() {
    let a = spawn_http_backend("a");
    let listen = free_addr();
    let mut tioga = Tioga::start(&simple_config(listen, a.addr(), SERVER), &[listen]);
    let mut load = Load::new();
    load.http_keepalive(listen, "/", 1);
    load.http_new_conn(listen, "/", 1);
    wait_progress(load.stats(), 30, 0, "before the upgrade");

    let bad = simple_config(listen, a.addr(), SERVER)
        .replace("grace_period: 1s", "grace_period: soon")
        .replace("- pool: web", "- pool: nopool");
    tioga.rewrite_config(&bad);
    let start = Instant::now();
    let mut new = tioga.spawn_again(&["-u"]);
    // Quickly: the config is checked before waiting for any socket.
    let code = new.exit_code(Duration::from_secs(3));
    let log = new.log();
    assert!(
        code.is_some_and(|c| c != 0),
        "tioga -u on a broken config gave {code:?} after {:?}; log:\n{log}",
        start.elapsed()
    );
    eprintln!(
        "bad upgrade: tioga -u exited {code:?} after {:.2?}",
        start.elapsed()
    );
    for key in ["server.grace_period", "listeners.web.routes[0].pool"] {
        assert!(
            log.lines()
                .any(|l| l.contains(CONFIG_FILE) && l.contains(key)),
            "no problem naming {CONFIG_FILE} and {key}; log:\n{log}"
        );
    }
    let sock = tioga.dir().join("up.sock");
    assert!(
        !sock.exists(),
        "the broken -u process bound {}",
        sock.display()
    );
    assert!(tioga.is_running());
    wait_progress(load.stats(), 30, 0, "after the refused upgrade");

    tioga.signal("QUIT");
    wait_until(
        Duration::from_secs(10),
        "the old process to log SIGQUIT ignored",
        || tioga.log().contains("SIGQUIT ignored"),
    );
    assert!(tioga.is_running(), "the old process exited after SIGQUIT");
    wait_progress(load.stats(), 30, 0, "after the ignored SIGQUIT");
    get_ok(listen, "/");

    let stats = load.stop();
    let n = stats.totals();
    eprintln!(
        "bad upgrade: HTTP requests served {}, failed {}, stale-connection retries {}",
        n.http_ok, n.http_failed, n.stale_retries
    );
    assert_eq!(n.http_failed, 0, "{:#?}", stats.errors());
}

#[test]
fn upgrade_without_old_process_fails_clearly() {
    let listen = free_addr();
    let mut tioga = Tioga::spawn(&simple_config(listen, free_addr(), SERVER), &["-u"]);
    let start = Instant::now();
    let code = tioga.exit_code(Duration::from_secs(10));
    let log = tioga.log();
    assert!(
        code.is_some_and(|c| c != 0),
        "tioga -u with no running instance gave {code:?} after {:?}; log:\n{log}",
        start.elapsed()
    );
    let sock = tioga.dir().join("up.sock").display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains(&sock)),
        "no error naming {sock} in the log:\n{log}"
    );
    assert!(refuses(listen), "{listen} is listening");
}

#[test]
fn sigterm_lets_slow_requests_finish() {
    const GRACE: Duration = Duration::from_secs(2);
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
    let a = spawn_http_backend("a");
    let listen = free_addr();
    let server = two_second_shutdown();
    let mut tioga = Tioga::start(&simple_config(listen, a.addr(), &server), &[listen]);

    let slow: Vec<_> = (0..3)
        .map(|_| thread::spawn(move || Request::get("/slow?ms=1500").send(listen)))
        .collect();
    wait_until(Duration::from_secs(5), "3 slow requests in flight", || {
        a.active() == 3
    });
    tioga.signal("TERM");
    let term = Instant::now();
    wait_until(
        Duration::from_secs(1),
        "new connections to be refused",
        || refuses(listen),
    );
    let refused_after = term.elapsed();
    for (i, handle) in slow.into_iter().enumerate() {
        let resp = handle.join().expect("client thread");
        let resp = resp.unwrap_or_else(|e| panic!("slow request {i}: {e}"));
        assert_eq!(resp.status, 200, "slow request {i}: {}", resp.text());
    }
    let limit = GRACE + SHUTDOWN_TIMEOUT + Duration::from_secs(1);
    let code = tioga.exit_code(limit.saturating_sub(term.elapsed()));
    let exited_after = term.elapsed();
    eprintln!("SIGTERM: refused new connections after {refused_after:.2?}, exited after {exited_after:.2?}");
    assert_eq!(
        code,
        Some(0),
        "exit within {limit:?} of SIGTERM (None: still running)"
    );
}

/// [`SERVER`] with a 2 s grace period and shutdown timeout.
fn two_second_shutdown() -> String {
    SERVER
        .replace("grace_period: 1s", "grace_period: 2s")
        .replace(
            "graceful_shutdown_timeout: 1s",
            "graceful_shutdown_timeout: 2s",
        )
}

#[test]
fn a_connection_accepted_before_shutdown_gets_its_first_request_answered() {
    use std::io::{Read, Write};
    let a = spawn_http_backend("a");
    let listen = free_addr();
    let server = two_second_shutdown();
    let mut tioga = Tioga::start(&simple_config(listen, a.addr(), &server), &[listen]);

    // A client that has connected, and been accepted, but has not sent its request yet.
    let mut early = TcpStream::connect(listen).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "tioga to accept the connection",
        || tioga.has_accepted(&early),
    );
    tioga.signal("TERM");
    wait_until(
        Duration::from_secs(1),
        "new connections to be refused",
        || refuses(listen),
    );

    // Shutdown has begun (Pingora has told connections waiting for a request to go);
    // the request sent now must still be answered.
    early
        .write_all(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match early.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&answer);
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "the first request of a connection accepted before shutdown: {head:?}"
    );
    assert_eq!(tioga.exit_code(Duration::from_secs(6)), Some(0));
}

/// `threads: 1` runs a single-threaded runtime (no work stealing): the hand-over and the
/// drain work there too, with a request in flight across the SIGQUIT.
#[test]
fn single_threaded_listener_hands_over_and_finishes_in_flight_work() {
    let a = spawn_http_backend("a");
    let listen = free_addr();
    let server = SERVER.replace("threads: 2", "threads: 1");
    let yaml = simple_config(listen, a.addr(), &server);
    let old = Tioga::start(&yaml, &[listen]);
    let slow = thread::spawn(move || Request::get("/slow?ms=1500").send(listen));
    wait_until(Duration::from_secs(5), "the slow request in flight", || {
        a.active() == 1
    });
    let (mut new, _) = upgrade(old, &yaml, &[listen]);
    let resp = slow
        .join()
        .expect("client thread")
        .expect("the slow request");
    assert_eq!(
        resp.status,
        200,
        "in flight across the hand-over: {}",
        resp.text()
    );
    get_ok(listen, "/after");
    assert!(new.is_running());
}
