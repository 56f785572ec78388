//! `coalesce:` on HTTP listeners, through the real binary on a one-thread worker (where
//! coalescing defers answers to the end of the worker's pass): with it off, as with it
//! on, concurrent keep-alive connections get every answer whole and in request order,
//! answers larger than what coalescing holds included, and requests pipelined in one
//! write are answered in order; `-t` rejects a value that is not a boolean.

mod common;

use std::net::SocketAddr;
use std::thread;

use common::*;

/// Concurrent keep-alive connections, and requests on each.
const CONNECTIONS: usize = 8;
const REQUESTS: usize = 40;

/// A request header this long makes the backend's answer (which echoes it) larger than
/// what coalescing holds for a connection (16 KiB).
const PAD: usize = 20_000;

/// Tioga with one HTTP listener (`coalesce: {coalesce}`) routing to `backend`.
fn start(backend: &HttpBackend, coalesce: &str) -> (SocketAddr, Tioga) {
    let addr = free_addr();
    let yaml = format!(
        "server: {{threads: 1, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}\n\
         pools:\n  web:\n    backends: ['{}']\n\
         listeners:\n  web:\n    protocol: http\n    bind: '{addr}'\n    coalesce: {coalesce}\n\
         \x20   routes:\n      - pool: web\n",
        backend.addr()
    );
    let tioga = Tioga::start(&yaml, &[addr]);
    (addr, tioga)
}

/// `REQUESTS` requests on one keep-alive connection, each answer checked against its
/// request; every fifth answer is larger than what coalescing holds.
fn keep_alive_run(addr: SocketAddr, conn_no: usize) {
    let mut conn = Conn::open(addr).expect("connect to tioga");
    for i in 0..REQUESTS {
        let path = format!("/c{conn_no}/r{i}");
        let mut req = Request::get(&path);
        let pad = "x".repeat(PAD);
        if i % 5 == 0 {
            req = req.header("x-pad", &pad);
        }
        let resp = conn.send(&req).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(
            resp.header("x-seen-path"),
            Some(path.as_str()),
            "answers out of order"
        );
        if i % 5 == 0 {
            assert_eq!(resp.header("x-seen-h-x-pad"), Some(pad.as_str()), "{path}");
        }
        assert_eq!(resp.text(), "a\n", "{path}");
        assert!(
            conn.is_reusable(),
            "{path}: the connection was not kept alive"
        );
    }
}

/// Three requests in one write: every answer that comes is whole and in request order.
/// Pingora serves the first; it may close the connection after any answer (it does
/// not serve pipelined requests unless told to), but never answers out of order.
fn pipelined(addr: SocketAddr) {
    let mut conn = Conn::open(addr).expect("connect to tioga");
    let requests: String = (0..3)
        .map(|i| format!("GET /p{i} HTTP/1.1\r\nhost: t\r\n\r\n"))
        .collect();
    conn.write_raw(requests.as_bytes()).unwrap();
    let mut answered = 0;
    while answered < 3 {
        let Ok(resp) = conn.read_response(false) else {
            break;
        };
        assert_eq!(resp.status, 200);
        let path = format!("/p{answered}");
        assert_eq!(
            resp.header("x-seen-path"),
            Some(path.as_str()),
            "out of order"
        );
        assert_eq!(resp.text(), "a\n");
        answered += 1;
        if !conn.is_reusable() {
            break;
        }
    }
    assert!(answered >= 1, "the first pipelined request went unanswered");
}

fn answers_stay_whole_and_in_order(coalesce: &str) {
    let backend = spawn_http_backend("a");
    let (addr, _tioga) = start(&backend, coalesce);
    let runs: Vec<_> = (0..CONNECTIONS)
        .map(|n| thread::spawn(move || keep_alive_run(addr, n)))
        .collect();
    for run in runs {
        run.join().expect("a keep-alive connection failed");
    }
    pipelined(addr);
}

#[test]
fn with_coalescing_off_keep_alive_answers_stay_whole_and_in_order() {
    answers_stay_whole_and_in_order("false");
}

#[test]
fn with_coalescing_on_keep_alive_answers_stay_whole_and_in_order() {
    answers_stay_whole_and_in_order("true");
}

#[test]
fn check_rejects_a_coalesce_that_is_not_a_boolean() {
    let yaml = "pools: {web: {backends: ['127.0.0.1:1']}}\n\
                listeners: {web: {protocol: http, bind: '127.0.0.1:1', coalesce: 'yes', \
                routes: [{pool: web}]}}\n";
    let (code, stderr) = check_config(yaml);
    assert_ne!(code, 0, "accepted: {stderr}");
    assert!(stderr.contains("listeners.web.coalesce"), "{stderr}");
    assert!(stderr.contains("expected a boolean"), "{stderr}");
}
