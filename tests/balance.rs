//! Every `balance` mode end to end over HTTP, with two named backends: `round_robin`
//! (exact alternation, the default, and weights), `random`, `consistent_hash` on a
//! header, a cookie, a query parameter, the URI and the client address, and
//! `least_conn` with one backend kept busy. Also one pool shared by an HTTP and a TCP
//! listener at once: both reach its backends, and a backend its health check takes out
//! is out for both.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// Common head of every config: one worker thread, files in the temp dir.
const SERVER: &str =
    "server: {threads: 1, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}\n";

/// Backends `a` and `b` behind pool `web` and an HTTP listener routing everything there.
struct Balanced {
    a: HttpBackend,
    b: HttpBackend,
    addr: SocketAddr,
    _tioga: Tioga,
}

impl Balanced {
    /// Starts it with weights `wa` for `a` and `wb` for `b`, and the pool's other keys
    /// in `pool`, each a `key: value` line such as `balance: random`.
    fn start(wa: usize, wb: usize, pool: &[&str]) -> Balanced {
        let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
        let addr = free_addr();
        let yaml = format!(
            "{SERVER}pools:\n  web:\n    backends: [{{address: '{}', weight: {wa}}}, \
             {{address: '{}', weight: {wb}}}]\n    {}\n\
             listeners:\n  web: {{protocol: http, bind: '{addr}', routes: [{{pool: web}}]}}\n",
            a.addr(),
            b.addr(),
            pool.join("\n    ")
        );
        let tioga = Tioga::start(&yaml, &[addr]);
        Balanced {
            a,
            b,
            addr,
            _tioga: tioga,
        }
    }

    /// Sends `req` and returns the name of the backend that answered it.
    fn who(&self, req: Request) -> String {
        backend_of(self.addr, req)
    }

    /// The backends that answer `n` requests made by `req(i)`, in order.
    fn sequence(&self, n: usize, req: impl Fn(usize) -> Request) -> Vec<String> {
        (0..n).map(|i| self.who(req(i))).collect()
    }
}

/// Sends `req` to `addr`, expects 200 and returns its `x-backend`.
fn backend_of(addr: SocketAddr, req: Request) -> String {
    let resp = req.send(addr).expect("request through tioga");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.header("x-backend").expect("x-backend").to_string()
}

/// How many times each name occurs.
fn counts(names: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    counts
}

fn plain(i: usize) -> Request {
    Request::get(&format!("/r{i}"))
}

#[test]
fn round_robin_alternates_between_backends() {
    let lb = Balanced::start(1, 1, &["balance: round_robin"]);
    let seq = lb.sequence(20, plain);
    for pair in seq.windows(2) {
        assert_ne!(pair[0], pair[1], "round robin must alternate: {seq:?}");
    }
    assert_eq!(counts(&seq), BTreeMap::from([("a", 10), ("b", 10)]));
    assert_eq!((lb.a.requests(), lb.b.requests()), (10, 10));
}

#[test]
fn round_robin_is_the_default() {
    let lb = Balanced::start(1, 1, &["retries: 1"]);
    let seq = lb.sequence(10, plain);
    for pair in seq.windows(2) {
        assert_ne!(pair[0], pair[1], "the default must be round robin: {seq:?}");
    }
}

#[test]
fn round_robin_follows_weights() {
    let lb = Balanced::start(1, 3, &["balance: round_robin"]);
    let seq = lb.sequence(40, plain);
    assert_eq!(
        counts(&seq),
        BTreeMap::from([("a", 10), ("b", 30)]),
        "{seq:?}"
    );
}

#[test]
fn random_sends_traffic_to_both() {
    let lb = Balanced::start(1, 1, &["balance: random"]);
    let seq = lb.sequence(100, plain);
    let counts = counts(&seq);
    // Each count is Binomial(100, 1/2): below 20 has odds of about 1e-9.
    for name in ["a", "b"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!(n >= 20, "{name} got {n} of 100 requests: {counts:?}");
    }
}

/// For a `consistent_hash` pool: each of 40 keys, sent by `req(key, i)`, sticks to one
/// backend over repeated requests, one key over 20, and the keys use both backends.
fn assert_sticky_and_spread(lb: &Balanced, req: impl Fn(&str, usize) -> Request) {
    let first = lb.who(req("alice", 0));
    for i in 1..20 {
        assert_eq!(
            lb.who(req("alice", i)),
            first,
            "request {i} of key alice moved"
        );
    }
    let mut used = BTreeSet::new();
    for k in 0..40 {
        let key = format!("user-{k}");
        let chosen = lb.who(req(&key, 0));
        assert_eq!(lb.who(req(&key, 1)), chosen, "key {key} moved");
        assert_eq!(lb.who(req(&key, 2)), chosen, "key {key} moved");
        used.insert(chosen);
    }
    assert_eq!(
        used.len(),
        2,
        "40 distinct keys all went to {used:?}: is the key hashed at all?"
    );
}

#[test]
fn consistent_hash_on_a_header() {
    let lb = Balanced::start(
        1,
        1,
        &["balance: consistent_hash", "hash_key: 'header:x-user'"],
    );
    assert_sticky_and_spread(&lb, |key, i| {
        Request::get(&format!("/h{i}")).header("X-User", key)
    });
    // Without the header the request hashes on the client address: still sticky.
    let first = lb.who(plain(0));
    for i in 1..10 {
        assert_eq!(lb.who(plain(i)), first);
    }
}

#[test]
fn consistent_hash_on_a_cookie() {
    let lb = Balanced::start(
        1,
        1,
        &["balance: consistent_hash", "hash_key: 'cookie:sid'"],
    );
    assert_sticky_and_spread(&lb, |key, i| {
        Request::get("/").header("cookie", &format!("theme=t{i}; sid={key}"))
    });
}

#[test]
fn consistent_hash_on_a_query_parameter() {
    let lb = Balanced::start(1, 1, &["balance: consistent_hash", "hash_key: 'query:uid'"]);
    assert_sticky_and_spread(&lb, |key, i| {
        Request::get(&format!("/items?page={i}&uid={key}"))
    });
}

#[test]
fn consistent_hash_on_uri_and_client_ip() {
    let lb = Balanced::start(1, 1, &["balance: consistent_hash", "hash_key: uri"]);
    assert_sticky_and_spread(&lb, |key, _| Request::get(&format!("/u/{key}")));
    // Every request of this test comes from 127.0.0.1: one backend takes them all.
    let lb = Balanced::start(1, 1, &["balance: consistent_hash", "hash_key: client_ip"]);
    let seq = lb.sequence(20, plain);
    assert_eq!(counts(&seq).len(), 1, "{seq:?}");
}

#[test]
fn least_conn_avoids_the_busy_backend() {
    let lb = Balanced::start(1, 1, &["balance: least_conn"]);
    let addr = lb.addr;
    let slow = std::thread::spawn(move || backend_of(addr, Request::get("/slow?ms=1500")));
    wait_until(Duration::from_secs(3), "the slow request to arrive", || {
        lb.a.active() + lb.b.active() == 1
    });
    let (busy, idle) = if lb.a.active() == 1 {
        ("a", "b")
    } else {
        ("b", "a")
    };
    for i in 0..10 {
        assert_eq!(
            lb.who(plain(i)),
            idle,
            "request {i} went to {busy}, which is busy with a slow request"
        );
    }
    assert_eq!(
        lb.a.active() + lb.b.active(),
        1,
        "the slow request ended early"
    );
    assert_eq!(slow.join().unwrap(), busy);
}

/// Sends a raw HTTP/1.0 request over a TCP listener and returns the `x-backend` of the
/// answer read to EOF; `None` if the listener refuses the connection.
fn try_backend_over_tcp(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"GET /tcp HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    let name = answer.lines().find_map(|l| l.strip_prefix("x-backend: "));
    Some(
        name.unwrap_or_else(|| panic!("no x-backend in {answer:?}"))
            .to_string(),
    )
}

/// [`try_backend_over_tcp`] on a listener known to be up.
fn backend_over_tcp(addr: SocketAddr) -> String {
    try_backend_over_tcp(addr).expect("connect to the TCP listener")
}

#[test]
fn one_pool_serves_an_http_and_a_tcp_listener() {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let (http, tcp) = (free_addr(), free_addr());
    let yaml = format!(
        "{SERVER}pools:\n  web:\n    backends: ['{}', '{}']\n    \
         health_check: {{type: http, path: /health, interval: 200ms, timeout: 200ms}}\n\
         listeners:\n  web: {{protocol: http, bind: '{http}', routes: [{{pool: web}}]}}\n  \
         raw: {{protocol: tcp, bind: '{tcp}', pool: web}}\n",
        a.addr(),
        b.addr()
    );
    // Readiness is checked by hand: the harness's probe of a TCP listener is a
    // connection too, and would take a round-robin turn at an unknown moment.
    let mut tioga = Tioga::spawn(&yaml, &[]);
    tioga.wait_ready(&[http]);
    wait_until(Duration::from_secs(10), "the TCP listener", || {
        try_backend_over_tcp(tcp).is_some()
    });

    let over_http: Vec<String> = (0..4).map(|i| backend_of(http, plain(i))).collect();
    assert_eq!(counts(&over_http), BTreeMap::from([("a", 2), ("b", 2)]));
    let over_tcp: Vec<String> = (0..4).map(|_| backend_over_tcp(tcp)).collect();
    assert_eq!(counts(&over_tcp), BTreeMap::from([("a", 2), ("b", 2)]));

    // Down for the pool's health check means down for both listeners.
    b.set_healthy(false);
    wait_until(Duration::from_secs(5), "b to be taken out", || {
        (0..2).all(|i| backend_of(http, plain(i)) == "a")
    });
    for i in 0..4 {
        assert_eq!(backend_of(http, plain(i)), "a");
        assert_eq!(backend_over_tcp(tcp), "a", "connection {i} over TCP");
    }
}
