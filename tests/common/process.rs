//! Ports and child processes, for the tests' harness ([`super::tioga`]) and for
//! `examples/pgo_train.rs`, which includes this file with `#[path]` (it cannot use the
//! rest of the harness: that runs the binary Cargo builds for tests, and panics).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Pause between two readiness or exit probes.
pub const POLL: Duration = Duration::from_millis(20);

/// An address on 127.0.0.1 whose port was free a moment ago. Ports are drawn below the
/// kernel's ephemeral range (from 32768 on Linux), so that no client socket of this or
/// another test takes the port before Tioga binds it, and never twice in one process.
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = fastrand::u16(10_000..32_000);
        if given.contains(&port) {
            continue;
        }
        // Free for TCP and UDP alike: UDP listeners take these too.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(addr).is_ok() && std::net::UdpSocket::bind(addr).is_ok() {
            given.push(port);
            return addr;
        }
    }
    panic!("no free port on 127.0.0.1 below 32000 after 1000 tries")
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Whether a socket listens on TCP `port` (IPv4 or IPv6), from `/proc/net/tcp*`: a
/// readiness check that opens no connection, so it costs no `rate_limit` budget and a
/// TLS listener logs no aborted handshake.
pub fn listening(port: u16) -> bool {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // fields[1] = local address ADDR:PORT, fields[3] = state (0A = LISTEN).
            fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "0A"
        })
    })
}
