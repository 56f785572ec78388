//! Tests of the test harness itself (`tests/common/`): the HTTP and TCP backends and the
//! blocking client, checked against each other without starting Tioga, so a failure
//! here points at the harness rather than at the proxy.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use common::*;

/// Deterministic pseudo-random bytes (xorshift), generated as they are read.
struct Pattern {
    remaining: u64,
    state: u64,
}

impl Pattern {
    fn new(len: u64) -> Pattern {
        Pattern {
            remaining: len,
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// FNV-1a of the whole pattern, computed by reading it.
    fn hash(len: u64) -> String {
        let mut pattern = Pattern::new(len);
        let mut hash = Fnv::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = pattern.read(&mut buf).unwrap();
            if n == 0 {
                return hash.hex();
            }
            hash.update(&buf[..n]);
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.remaining as usize);
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[test]
fn backend_answers_with_its_name_and_health() {
    let a = spawn_http_backend("a");
    let resp = get(a.addr(), "/").unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "a\n");
    assert_eq!(resp.header("X-Backend"), Some("a"));
    assert_eq!(a.requests(), 1);

    assert_eq!(get(a.addr(), "/health").unwrap().status, 200);
    a.set_healthy(false);
    let sick = get(a.addr(), "/health").unwrap();
    assert_eq!(sick.status, 503);
    assert_eq!(sick.header("x-backend"), Some("a"));
    a.set_healthy(true);
    assert_eq!(get(a.addr(), "/health").unwrap().status, 200);
    assert_eq!(a.health_checks(), 3);
    assert_eq!(a.requests(), 4);
    // The backend counts a request as done just after the client has its answer.
    wait_until(Duration::from_secs(5), "no request in flight", || {
        a.active() == 0
    });
}

#[test]
fn backend_echoes_what_it_saw() {
    let a = spawn_http_backend("a");
    let resp = Request::get("/some/path?x=1&y=two")
        .method("DELETE")
        .header("Host", "api.example.test")
        .header("X-Dup", "1")
        .header("x-dup", "2")
        .header("X-Custom", "hello world")
        .send(a.addr())
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-seen-method"), Some("DELETE"));
    assert_eq!(resp.header("x-seen-path"), Some("/some/path?x=1&y=two"));
    assert_eq!(resp.header("x-seen-host"), Some("api.example.test"));
    assert_eq!(resp.header("x-seen-h-x-dup"), Some("1, 2"));
    assert_eq!(resp.header("x-seen-h-x-custom"), Some("hello world"));
    assert_eq!(resp.header("x-seen-h-connection"), Some("close"));

    // Without an explicit Host, the client sends the address.
    let resp = get(a.addr(), "/").unwrap();
    assert_eq!(
        resp.header("x-seen-host"),
        Some(a.addr().to_string().as_str())
    );
}

#[test]
fn streamed_body_is_hashed_not_buffered() {
    let a = spawn_http_backend("a");
    let len = 5 * 1024 * 1024;
    let resp = Request::new("PUT", "/upload")
        .body_stream(len, Pattern::new(len))
        .send(a.addr())
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.text(),
        format!("bytes={len} fnv={}", Pattern::hash(len))
    );
    assert_eq!(resp.header("x-seen-h-content-length"), Some("5242880"));
}

#[test]
fn chunked_and_small_bodies_are_hashed() {
    let a = spawn_http_backend("a");
    let len = 300_001;
    let resp = Request::new("POST", "/c")
        .body_chunked(Pattern::new(len))
        .send(a.addr())
        .unwrap();
    assert_eq!(
        resp.text(),
        format!("bytes={len} fnv={}", Pattern::hash(len))
    );
    assert_eq!(resp.header("x-seen-h-transfer-encoding"), Some("chunked"));

    let resp = Request::post("/p", "hello").send(a.addr()).unwrap();
    assert_eq!(
        resp.text(),
        format!("bytes=5 fnv={}", fnv1a64_hex(b"hello"))
    );
    let resp = Request::post("/p", "").send(a.addr()).unwrap();
    assert_eq!(resp.text(), "bytes=0 fnv=cbf29ce484222325");
}

#[test]
fn keep_alive_carries_several_requests() {
    let a = spawn_http_backend("a");
    let mut conn = Conn::open(a.addr()).unwrap();
    for i in 0..3 {
        let resp = conn.send(&Request::get(&format!("/{i}"))).unwrap();
        assert_eq!(resp.header("x-seen-path"), Some(format!("/{i}").as_str()));
        assert!(conn.is_reusable());
    }
    let resp = conn.send(&Request::post("/p", vec![7u8; 1000])).unwrap();
    assert!(resp.text().starts_with("bytes=1000 "));
    let head = conn.send(&Request::get("/").method("HEAD")).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("2"));
    assert!(head.body.is_empty());
    let last = conn
        .send(&Request::get("/").header("connection", "close"))
        .unwrap();
    assert_eq!(last.text(), "a\n");
    assert!(!conn.is_reusable());
    assert_eq!(a.connections(), 1);
    assert_eq!(a.requests(), 6);
}

#[test]
fn raw_requests_http10_and_garbage() {
    let a = spawn_http_backend("a");
    let mut conn = Conn::open(a.addr()).unwrap();
    conn.write_raw(b"GET /old HTTP/1.0\r\n\r\n").unwrap();
    let resp = conn.read_response(false).unwrap();
    assert_eq!(resp.text(), "a\n");
    assert_eq!(resp.header("connection"), Some("close"));

    let mut conn = Conn::open(a.addr()).unwrap();
    conn.write_raw(b"NONSENSE\r\n\r\n").unwrap();
    assert_eq!(conn.read_response(false).unwrap().status, 400);
}

#[test]
fn slow_and_stall_are_in_flight() {
    let a = spawn_http_backend("a");
    let addr = a.addr();
    let slow = std::thread::spawn(move || get(addr, "/slow?ms=300").unwrap());
    wait_until(Duration::from_secs(5), "the slow request in flight", || {
        a.active() == 1
    });
    let resp = slow.join().unwrap();
    assert_eq!(resp.text(), "a\n");
    wait_until(Duration::from_secs(5), "the slow request done", || {
        a.active() == 0
    });

    let stalled = Request::get("/stall")
        .timeout(Duration::from_millis(300))
        .send(addr)
        .unwrap_err();
    assert!(
        matches!(
            stalled.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{stalled:?}"
    );
    // The client closed its socket; the backend notices and lets go.
    wait_until(Duration::from_secs(5), "the stalled request to end", || {
        a.active() == 0
    });
}

#[test]
fn stop_closes_listener_and_connections() {
    let a = spawn_http_backend("a");
    let addr = a.addr();
    let mut conn = Conn::open(addr).unwrap();
    conn.send(&Request::get("/")).unwrap();
    a.stop();
    assert!(TcpStream::connect(addr).is_err(), "still accepting");
    assert!(
        conn.send(&Request::get("/")).is_err(),
        "open connection survived"
    );
    a.stop(); // idempotent
}

#[test]
fn tcp_backend_greets_echoes_and_half_closes() {
    let t = spawn_tcp_backend("t");
    let mut stream = TcpStream::connect(t.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"ping pong").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, "t\nping pong");
    assert_eq!(t.connections(), 1);
    drop(stream);
    wait_until(Duration::from_secs(5), "the echo connection to end", || {
        t.active() == 0
    });
    t.stop();
    assert!(TcpStream::connect(t.addr()).is_err());
}

#[test]
fn free_addr_is_bindable() {
    let addr = free_addr();
    assert_ne!(addr.port(), 0);
    TcpListener::bind(addr).unwrap();
    assert_ne!(free_port(), 0);
}

#[test]
#[should_panic(expected = "the impossible")]
fn wait_until_gives_up_with_a_message() {
    wait_until(Duration::from_millis(50), "the impossible", || false);
}
