//! Slow and silent clients cannot hold connections: a request head must be complete
//! within `request_header_timeout` of accept (the next one within `keepalive_timeout`
//! of the previous request's end), or the connection is closed and counted, while
//! normal clients are served all along.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE: Duration = Duration::from_secs(3);
/// The bound: closed within the timeout plus a second.
const SLACK: Duration = Duration::from_secs(1);

fn config(listen: SocketAddr, admin: SocketAddr, a: SocketAddr) -> String {
    format!(
        "server: {{threads: 1, pid_file: '@DIR@/t.pid', upgrade_sock: '@DIR@/up.sock'}}
admin: {{bind: \"{admin}\"}}
pools:
  a: {{backends: [\"{a}\"]}}
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    request_header_timeout: 2s
    keepalive_timeout: 3s
    routes: [{{pool: a}}]
"
    )
}

/// Lets this process (and the Tioga it starts) hold a few thousand descriptors.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum.map(|max| max.min(8192)).or(Some(8192));
    let _ = setrlimit(Resource::Nofile, limit);
}

/// A client connection and when the server closed it.
struct Client {
    stream: TcpStream,
    opened: Instant,
    closed: Option<Instant>,
}

impl Client {
    /// Whether the server has closed it (EOF or an error), noting when.
    fn poll_closed(&mut self) -> bool {
        if self.closed.is_none() {
            let mut buf = [0u8; 256];
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = Some(Instant::now()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => self.closed = Some(Instant::now()),
            }
        }
        self.closed.is_some()
    }
}

#[test]
fn a_thousand_slow_and_silent_connections_are_closed_in_time_while_others_are_served() {
    raise_fd_limit();
    let a = spawn_http_backend("a");
    let (listen, admin) = (free_addr(), free_addr());
    let _tioga = Tioga::start(&config(listen, admin, a.addr()), &[listen, admin]);

    // 500 that trickle a head one byte at a time, 500 that send nothing.
    let mut clients: Vec<Client> = (0..1000)
        .map(|i| {
            let mut stream = TcpStream::connect(listen).expect("connect");
            if i % 2 == 0 {
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                    .unwrap();
            }
            stream.set_nonblocking(true).unwrap();
            Client {
                stream,
                opened: Instant::now(),
                closed: None,
            }
        })
        .collect();

    let served = thread::spawn(move || {
        let end = Instant::now() + HEAD_TIMEOUT + SLACK;
        let mut n = 0;
        while Instant::now() < end {
            let resp = get(listen, "/").expect("a normal client is served");
            assert_eq!(resp.status, 200);
            n += 1;
        }
        n
    });

    let deadline = Instant::now() + HEAD_TIMEOUT + SLACK + Duration::from_secs(5);
    let mut round = 0;
    while Instant::now() < deadline {
        let mut open = 0;
        for (i, c) in clients.iter_mut().enumerate() {
            if c.poll_closed() {
                continue;
            }
            open += 1;
            // The slow ones send a byte every 250 ms.
            if i % 2 == 0 && round % 5 == 0 {
                let _ = c.stream.write(b"x");
            }
        }
        if open == 0 {
            break;
        }
        round += 1;
        thread::sleep(Duration::from_millis(50));
    }
    let late: Vec<Duration> = clients
        .iter()
        .filter_map(|c| match c.closed {
            Some(at) if at - c.opened <= HEAD_TIMEOUT + SLACK => None,
            Some(at) => Some(at - c.opened),
            None => Some(Duration::MAX),
        })
        .collect();
    assert!(
        late.is_empty(),
        "{} of 1000 connections were not closed within {:?} (MAX: still open): {:?}",
        late.len(),
        HEAD_TIMEOUT + SLACK,
        &late[..late.len().min(10)]
    );
    assert!(
        served.join().unwrap() > 0,
        "normal clients were served meanwhile"
    );
    let metrics = get(admin, "/metrics").unwrap().text();
    let line = "tioga_http_timeouts_total{listener=\"web\",phase=\"request_header\"} 1000";
    assert!(metrics.contains(line), "{line} in:\n{metrics}");
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_keepalive_timeout() {
    let a = spawn_http_backend("a");
    let (listen, admin) = (free_addr(), free_addr());
    let _tioga = Tioga::start(&config(listen, admin, a.addr()), &[listen, admin]);
    let mut conn = Conn::open(listen).unwrap();
    let resp = conn
        .send(&Request::get("/").header("connection", "keep-alive"))
        .unwrap();
    assert_eq!(resp.status, 200);
    let answered = Instant::now();
    // Well past the 2 s head timeout: an idle kept-alive connection is under 3 s.
    conn.set_timeout(KEEPALIVE + SLACK + Duration::from_secs(2))
        .unwrap();
    let mut rest = Vec::new();
    let _ = conn.stream().try_clone().unwrap().read_to_end(&mut rest);
    let idle = answered.elapsed();
    assert!(
        idle >= KEEPALIVE - Duration::from_millis(100) && idle <= KEEPALIVE + SLACK,
        "closed after {idle:?}"
    );
    let metrics = get(admin, "/metrics").unwrap().text();
    let line = "tioga_http_timeouts_total{listener=\"web\",phase=\"keepalive\"} 1";
    assert!(metrics.contains(line), "{line} in:\n{metrics}");
}
