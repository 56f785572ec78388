//! `max_conns` and its queue with a real backend: never more than `max_conns` requests
//! in flight at the backend, the waiting ones served in order of arrival, and those
//! beyond the queue answered 503 with `Retry-After` at once.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn max_conns_caps_the_backend_and_the_queue_drains_in_order() {
    let backend = spawn_http_backend("slow");
    backend.set_delay(Duration::from_millis(400));
    let listen = free_addr();
    let yaml = format!(
        "server:
  threads: 2
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
pools:
  web:
    backends: [\"{}\"]
    max_conns: 2
    queue: {{size: 6, timeout: 10s}}
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - pool: web
",
        backend.addr()
    );
    let _tioga = Tioga::start(&yaml, &[listen]);

    // Ten requests, started in a known order: 2 in flight, 6 waiting, 2 refused.
    let mut clients = Vec::new();
    for i in 0..10 {
        let id = format!("{i}");
        clients.push(std::thread::spawn(move || {
            let start = Instant::now();
            let resp = Request::get("/")
                .header("x-id", &id)
                .timeout(Duration::from_secs(30))
                .send(listen)
                .expect("an answer");
            (
                resp.status,
                resp.header("retry-after").map(str::to_string),
                start.elapsed(),
            )
        }));
        // Let this one reach Tioga (and the backend or the queue) before the next.
        wait_until(Duration::from_secs(10), "request to arrive", || {
            i >= 2 || backend.requests() > i
        });
        std::thread::sleep(Duration::from_millis(40)); // spacing, for a known order
    }
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for (i, (status, retry_after, took)) in results.iter().enumerate() {
        if i < 8 {
            assert_eq!(*status, 200, "request {i}");
        } else {
            assert_eq!(*status, 503, "request {i}: beyond the queue");
            assert_eq!(retry_after.as_deref(), Some("10"), "request {i}");
            assert!(
                *took < Duration::from_millis(300),
                "refused at once: {took:?}"
            );
        }
    }
    assert_eq!(
        backend.peak(),
        2,
        "never more than max_conns at the backend"
    );
    let order: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    assert_eq!(backend.ids(), order, "served in order of arrival");
}

#[test]
fn a_wait_longer_than_the_queue_timeout_answers_503() {
    let backend = spawn_http_backend("stuck");
    let listen = free_addr();
    let yaml = format!(
        "server:
  threads: 2
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
pools:
  web:
    backends: [\"{}\"]
    max_conns: 1
    queue: {{size: 5, timeout: 300ms}}
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - pool: web
",
        backend.addr()
    );
    let _tioga = Tioga::start(&yaml, &[listen]);
    let hold = std::thread::spawn(move || Request::get("/slow?ms=3000").send(listen));
    wait_until(
        Duration::from_secs(10),
        "the first request at the backend",
        || backend.active() == 1,
    );
    let start = Instant::now();
    let resp = get(listen, "/").expect("an answer");
    let waited = start.elapsed();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    assert_eq!(hold.join().unwrap().expect("first answered").status, 200);
}

#[test]
fn a_tcp_connection_beyond_max_conns_and_a_full_queue_is_closed() {
    use std::io::{BufRead, BufReader, Read};
    let backend = spawn_tcp_backend("echo");
    let listen = free_addr();
    let yaml = format!(
        "server:
  threads: 2
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
pools:
  db:
    backends: [\"{}\"]
    max_conns: 1
    queue: {{size: 0}}
listeners:
  db:
    protocol: tcp
    bind: \"{listen}\"
    pool: db
",
        backend.addr()
    );
    let _tioga = Tioga::start(&yaml, &[listen]);
    // The readiness probe's connection is relayed too, and may hold the one place
    // for a moment: connect until the backend greets.
    let mut first = None;
    wait_until(
        Duration::from_secs(10),
        "a first connection to get through",
        || {
            let c = std::net::TcpStream::connect(listen).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut greeting = String::new();
            let _ = BufReader::new(&c).read_line(&mut greeting);
            let ok = greeting == "echo\n";
            if ok {
                first = Some(c);
            }
            ok
        },
    );
    let first = first.unwrap();
    let before = backend.connections();
    let mut second = std::net::TcpStream::connect(listen).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = second.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without reaching the backend");
    assert_eq!(backend.connections(), before, "the second never reached it");
    drop(first);
    // Once the first is gone, a new connection gets through again.
    wait_until(Duration::from_secs(10), "a place to free up", || {
        common::load::greeted_by(listen).is_ok_and(|g| g.starts_with("echo"))
    });
}
