//! The contract's behaviour table for HTTP listeners, through the real binary: 503 when
//! the pool has no eligible backend (health-checked down by a tcp or an http check),
//! retry on another backend when connecting fails and 502 when none is left (and
//! `retries: 0` turning the retry off), 504 when the backend is slower than
//! `read_timeout`, the headers the backend sees (`Host` unchanged, `X-Forwarded-For`
//! appended, `X-Forwarded-Proto`, `X-Forwarded-Host`), and a 50 MB request body that
//! streams through intact without Tioga's memory growing with it.

mod common;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Starts Tioga with one HTTP listener routing everything to pool `web`, whose body
/// (`backends:` and any other keys) is `pool`, indented by four spaces.
fn start(pool: &str) -> (SocketAddr, Tioga) {
    let addr = free_addr();
    let yaml = format!(
        "server: {{threads: 1, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}\n\
         pools:\n  web:\n{pool}\
         listeners:\n  web:\n    protocol: http\n    bind: '{addr}'\n    routes:\n      - pool: web\n"
    );
    let tioga = Tioga::start(&yaml, &[addr]);
    (addr, tioga)
}

/// The status of `GET path`, and the answering backend's name when there is one.
fn status_of(addr: SocketAddr, path: &str) -> (u16, Option<String>) {
    let resp = get(addr, path).expect("request through tioga");
    (resp.status, resp.header("x-backend").map(str::to_string))
}

/// Waits until `GET /` through `addr` answers `status`.
fn wait_for_status(addr: SocketAddr, status: u16, what: &str) {
    wait_until(Duration::from_secs(5), what, || {
        status_of(addr, "/").0 == status
    });
}

#[test]
fn backend_down_by_tcp_check_is_503() {
    let a = spawn_http_backend("a");
    let (addr, _tioga) = start(&format!(
        "    backends: ['{}']\n    health_check: {{type: tcp, interval: 200ms, timeout: 200ms}}\n",
        a.addr()
    ));
    assert_eq!(status_of(addr, "/"), (200, Some("a".into())));
    a.stop();
    wait_for_status(addr, 503, "503 once the stopped backend is checked down");
    for _ in 0..3 {
        assert_eq!(status_of(addr, "/x"), (503, None));
    }
}

#[test]
fn backend_down_by_http_check_is_503_while_it_still_accepts() {
    let a = spawn_http_backend("a");
    let (addr, _tioga) = start(&format!(
        "    backends: ['{}']\n    health_check: {{type: http, path: /health, interval: 200ms, \
         timeout: 200ms}}\n",
        a.addr()
    ));
    assert_eq!(status_of(addr, "/"), (200, Some("a".into())));
    a.set_healthy(false);
    wait_for_status(addr, 503, "503 once /health fails");
    for _ in 0..3 {
        // Tioga's own answer: the backend, which would add `x-backend`, is not asked.
        assert_eq!(status_of(addr, "/"), (503, None));
    }
    a.set_healthy(true);
    wait_for_status(addr, 200, "200 once /health passes again");
}

#[test]
fn failed_connect_is_retried_on_another_backend() {
    let live = spawn_http_backend("live");
    let dead = free_addr();
    let (addr, _tioga) = start(&format!(
        "    backends: ['{dead}', '{}']\n    connect_timeout: 500ms\n",
        live.addr()
    ));
    for i in 0..10 {
        assert_eq!(
            status_of(addr, &format!("/r{i}")),
            (200, Some("live".into())),
            "request {i}: the dead backend must be skipped by a retry"
        );
    }
    assert_eq!(live.requests(), 10);
}

#[test]
fn no_backend_left_after_retrying_is_502() {
    let (addr, _tioga) = start(&format!(
        "    backends: ['{}', '{}']\n    retries: 1\n",
        free_addr(),
        free_addr()
    ));
    for _ in 0..4 {
        assert_eq!(status_of(addr, "/").0, 502);
    }
    let (addr, _tioga) = start(&format!("    backends: ['{}']\n", free_addr()));
    assert_eq!(status_of(addr, "/").0, 502);
}

#[test]
fn retries_zero_gives_up_after_the_first_backend() {
    let live = spawn_http_backend("live");
    let dead = free_addr();
    let (addr, _tioga) = start(&format!(
        "    backends: ['{dead}', '{}']\n    retries: 0\n",
        live.addr()
    ));
    // Round robin alternates, so exactly every other request picks the dead one.
    let statuses: Vec<u16> = (0..10).map(|_| status_of(addr, "/").0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
}

#[test]
fn backend_slower_than_read_timeout_is_504() {
    let a = spawn_http_backend("a");
    let (addr, _tioga) = start(&format!(
        "    backends: ['{}']\n    read_timeout: 300ms\n",
        a.addr()
    ));
    assert_eq!(status_of(addr, "/slow?ms=50"), (200, Some("a".into())));
    let started = Instant::now();
    assert_eq!(status_of(addr, "/slow?ms=3000").0, 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2000),
        "504 came after {took:?}, expected about read_timeout (300ms)"
    );
    // The next request is served normally.
    assert_eq!(status_of(addr, "/"), (200, Some("a".into())));
}

#[test]
fn host_reaches_the_backend_with_forwarded_headers() {
    let a = spawn_http_backend("a");
    let (addr, _tioga) = start(&format!("    backends: ['{}']\n", a.addr()));
    let resp = Request::get("/p?q=1")
        .header("Host", "Shop.Example.com:8443")
        .send(addr)
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-seen-host"), Some("Shop.Example.com:8443"));
    assert_eq!(resp.header("x-seen-path"), Some("/p?q=1"));
    assert_eq!(resp.header("x-seen-h-x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(resp.header("x-seen-h-x-forwarded-proto"), Some("http"));
    assert_eq!(
        resp.header("x-seen-h-x-forwarded-host"),
        Some("Shop.Example.com:8443")
    );
}

#[test]
fn forwarded_for_is_appended_and_proto_host_are_not_spoofable() {
    let a = spawn_http_backend("a");
    let (addr, _tioga) = start(&format!("    backends: ['{}']\n", a.addr()));
    let resp = Request::get("/")
        .header("host", "api.example.com")
        .header("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "evil.example.net")
        .send(addr)
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-seen-host"), Some("api.example.com"));
    assert_eq!(
        resp.header("x-seen-h-x-forwarded-for"),
        Some("203.0.113.7, 10.0.0.1, 127.0.0.1")
    );
    assert_eq!(resp.header("x-seen-h-x-forwarded-proto"), Some("http"));
    assert_eq!(
        resp.header("x-seen-h-x-forwarded-host"),
        Some("api.example.com")
    );
}

#[test]
fn forwarded_for_sent_on_several_lines_keeps_every_value() {
    let a = spawn_http_backend("a");
    let (addr, _tioga) = start(&format!("    backends: ['{}']\n", a.addr()));
    let resp = Request::get("/")
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Forwarded-For", "198.51.100.2")
        .send(addr)
        .unwrap();
    assert_eq!(resp.status, 200);
    // The backend joins repeated lines with ", ", so one line or several read the same.
    assert_eq!(
        resp.header("x-seen-h-x-forwarded-for"),
        Some("203.0.113.7, 198.51.100.2, 127.0.0.1")
    );
}

/// Size of the streamed upload.
const BIG: u64 = 50 * 1024 * 1024;
/// How much Tioga's peak memory may grow while it streams [`BIG`] bytes.
const MAX_GROWTH_KIB: u64 = 16 * 1024;

/// `len` deterministic pseudo-random bytes, made as they are read and hashed on the way
/// into the shared [`Fnv`], so the upload never sits in memory.
struct HashedPattern {
    pos: u64,
    len: u64,
    hash: Arc<Mutex<Fnv>>,
}

impl Read for HashedPattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min((self.len - self.pos) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let x = (self.pos + i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            *b = (x >> 29) as u8 ^ (x >> 53) as u8;
        }
        self.pos += n as u64;
        self.hash.lock().unwrap().update(&buf[..n]);
        Ok(n)
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn large_body_streams_through_in_constant_memory() {
    let a = spawn_http_backend("a");
    let (addr, tioga) = start(&format!("    backends: ['{}']\n", a.addr()));
    // Warm up: first connections, buffers and pools are allocated once.
    let warm = Request::post("/warm", vec![7u8; 256 * 1024])
        .send(addr)
        .unwrap();
    assert_eq!(warm.status, 200);
    let pid = tioga.pid();
    let (rss_before, hwm_before) = (proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM"));

    let hash = Arc::new(Mutex::new(Fnv::default()));
    let body = HashedPattern {
        pos: 0,
        len: BIG,
        hash: hash.clone(),
    };
    let started = Instant::now();
    let resp = Request::new("PUT", "/upload")
        .body_stream(BIG, body)
        .timeout(Duration::from_secs(60))
        .send(addr)
        .unwrap();
    let took = started.elapsed();
    let (rss_after, hwm_after) = (proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM"));
    eprintln!(
        "tioga memory streaming {} MiB in {took:?}: VmRSS {rss_before} -> {rss_after} KiB \
         ({:+} KiB), VmHWM {hwm_before} -> {hwm_after} KiB ({:+} KiB)",
        BIG >> 20,
        rss_after as i64 - rss_before as i64,
        hwm_after as i64 - hwm_before as i64,
    );

    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-backend"), Some("a"));
    let expected = format!("bytes={BIG} fnv={}", hash.lock().unwrap().hex());
    assert_eq!(resp.text(), expected, "the body must arrive intact");
    // Linux updates VmHWM lazily, so it may read lower after the allocator has given
    // pages back: a drop is no growth.
    assert!(
        hwm_after.saturating_sub(hwm_before) < MAX_GROWTH_KIB,
        "peak memory grew by {} KiB while streaming {} MiB (limit {MAX_GROWTH_KIB} KiB)",
        hwm_after - hwm_before,
        BIG >> 20
    );
    assert!(
        rss_after.saturating_sub(rss_before) < MAX_GROWTH_KIB,
        "resident memory grew by {} KiB",
        rss_after - rss_before
    );
}
