//! Idle keep-alive connections are held small and still served: 5,000 connections each
//! get an answer, sit idle, then each gets a correct answer to a second request, and
//! Tioga's RSS grows by less than a bound per idle connection (3× what `make bench`
//! measures, see docs/performance.md, so that it holds on any machine and in the
//! debug build). The same through a TCP listener, where each idle client connection
//! also holds one to the backend.

mod common;

use std::time::Duration;

use common::*;

const CONNS: usize = 5_000;
/// KiB of RSS per idle keep-alive connection that the test allows.
const KIB_PER_CONN_BOUND: f64 = 12.0;
/// KiB of RSS per idle relayed connection (client and backend sockets) allowed: 3×
/// the 3.2 KiB `make bench` measures.
const L4_KIB_PER_CONN_BOUND: f64 = 10.0;
/// The idle period under test: how long the connections sit without a request.
const IDLE: Duration = Duration::from_secs(2);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Raises this process's open-file limit to `n` (within the hard limit) for the clients.
fn raise_nofile(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|current| current < n) {
        let current = Some(n.min(limit.maximum.unwrap_or(u64::MAX)));
        let raised = Rlimit {
            current,
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, raised).expect("setrlimit");
    }
}

#[test]
fn five_thousand_idle_keep_alive_connections_stay_small_and_are_served() {
    let listener = "protocol: http
    keepalive_timeout: 300s
    routes:
      - pool: web";
    idle_connections_stay_small_and_are_served(listener, KIB_PER_CONN_BOUND);
}

#[test]
fn five_thousand_idle_relayed_connections_stay_small_and_are_served() {
    let listener = "protocol: tcp
    pool: web";
    idle_connections_stay_small_and_are_served(listener, L4_KIB_PER_CONN_BOUND);
}

/// Opens [`CONNS`] connections to a listener (`listener`: its keys after `bind`) of a
/// pool with one HTTP backend, one request each; leaves them idle; asserts the RSS
/// growth per connection is under `bound` KiB and that each answers a second request.
fn idle_connections_stay_small_and_are_served(listener: &str, bound: f64) {
    // The clients, and the backend's side of each relayed connection.
    raise_nofile(2 * CONNS as u64 + 500);
    let backend = spawn_http_backend("idle");
    let listen = free_addr();
    let yaml = format!(
        "server:
  threads: 1
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
pools:
  web:
    backends: [\"{}\"]
listeners:
  web:
    bind: \"{listen}\"
    {listener}
",
        backend.addr()
    );
    let tioga = Tioga::start(&yaml, &[listen]);
    // Warm-up: lazy initialisation and the upstream connection, as the bench does.
    let mut warm = Conn::open(listen).expect("connect");
    for _ in 0..200 {
        assert_eq!(
            warm.send(&Request::get("/warm")).expect("answer").status,
            200
        );
    }
    drop(warm);
    let before = rss_kib(tioga.pid());

    let mut conns = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        let mut conn = Conn::open(listen).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let resp = conn
            .send(&Request::get(&format!("/first/{i}")))
            .unwrap_or_else(|e| panic!("first request on connection {i}: {e}"));
        assert_eq!(resp.status, 200, "first request on connection {i}");
        assert!(conn.is_reusable(), "connection {i} kept alive");
        conns.push(conn);
    }
    std::thread::sleep(IDLE);
    let loaded = rss_kib(tioga.pid());
    let per_conn = loaded.saturating_sub(before) as f64 / CONNS as f64;
    eprintln!("RSS {before} KiB before, {loaded} KiB with {CONNS} idle: {per_conn:.2} KiB/conn");

    for (i, conn) in conns.iter_mut().enumerate() {
        let path = format!("/second/{i}");
        let resp = conn
            .send(&Request::get(&path))
            .unwrap_or_else(|e| panic!("second request on connection {i}: {e}"));
        assert_eq!(resp.status, 200, "second request on connection {i}");
        assert_eq!(
            resp.header("x-seen-path"),
            Some(path.as_str()),
            "connection {i}"
        );
        assert_eq!(resp.text(), "idle\n", "connection {i}");
    }
    assert!(
        per_conn < bound,
        "{per_conn:.2} KiB of RSS per idle connection, bound {bound}"
    );
}
