//! `max_connections`: a listener with that many connections open closes new ones at
//! once, counts them, and takes new ones again when one closes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

fn config(http: SocketAddr, tcp: SocketAddr, admin: SocketAddr, a: SocketAddr) -> String {
    format!(
        "server: {{threads: 1, pid_file: '@DIR@/t.pid', upgrade_sock: '@DIR@/up.sock'}}
admin: {{bind: \"{admin}\"}}
pools:
  a: {{backends: [\"{a}\"]}}
listeners:
  web: {{protocol: http, bind: \"{http}\", max_connections: 2, routes: [{{pool: a}}]}}
  raw: {{protocol: tcp, bind: \"{tcp}\", max_connections: 2, pool: a}}
"
    )
}

/// Whether the server closes `stream` without a byte (refused), within 5 s.
fn closed_at_once(mut stream: TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn beyond_max_connections_new_connections_are_closed_at_once() {
    let a = spawn_http_backend("a");
    let (http, tcp, admin) = (free_addr(), free_addr(), free_addr());
    let _tioga = Tioga::start(&config(http, tcp, admin, a.addr()), &[http, tcp, admin]);
    // A readiness probe may still hold a slot: the first connections are retried.
    for addr in [http, tcp] {
        let mut held: Vec<Conn> = Vec::new();
        // Each held connection completes one request, so it is surely open.
        wait_until(Duration::from_secs(10), "two held connections", || {
            let Ok(mut conn) = Conn::open(addr) else {
                return false;
            };
            if conn
                .send(&Request::get("/").header("connection", "keep-alive"))
                .is_ok()
            {
                held.push(conn);
            }
            held.len() == 2
        });
        let mut third = TcpStream::connect(addr).unwrap();
        let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(
            closed_at_once(third),
            "{addr}: a third connection is closed"
        );
        held.pop();
        wait_until(Duration::from_secs(10), "room for one more", || {
            Request::get("/").send(addr).is_ok_and(|r| r.status == 200)
        });
    }
    let metrics = get(admin, "/metrics").unwrap().text();
    for listener in ["web", "raw"] {
        let refused =
            format!("tioga_listener_connections_refused_total{{listener=\"{listener}\"}}");
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&refused))
            .unwrap_or_else(|| panic!("{refused} in:\n{metrics}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1, "{line}");
    }
}
