//! UDP for the tests: an echo backend that says who it is (a DNS-like request and
//! answer), answers health probes while healthy and counts what it saw; and a client
//! socket with a deadline on every answer.
//!
//! An answer is `NAME|` followed by the request, byte for byte; the probe `ping` is
//! answered `pong` while the backend is healthy and not at all otherwise.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The health probe a backend answers, and its answer.
pub const PROBE: &[u8] = b"ping";
pub const PROBE_ANSWER: &[u8] = b"pong";

/// What sockets here ask of the kernel for buffers, so bursts are not dropped in the
/// test's own sockets (the kernel caps it at `net.core.rmem_max`).
const BUFFER: usize = 4 * 1024 * 1024;

/// An address on 127.0.0.1 whose UDP port was free a moment ago.
pub fn free_udp_addr() -> SocketAddr {
    super::process::free_addr()
}

/// An address on 127.0.0.1 whose port was free for both TCP and UDP a moment ago (a
/// tcp and a udp listener sharing it).
pub fn free_tcp_udp_addr() -> SocketAddr {
    super::process::free_addr()
}

fn enlarge(socket: &UdpSocket) {
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket.as_fd(), BUFFER);
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(socket.as_fd(), BUFFER);
}

#[derive(Default)]
struct Seen {
    datagrams: AtomicUsize,
    probes: AtomicUsize,
    sources: Mutex<HashSet<SocketAddr>>,
}

/// A UDP echo backend on its own thread; stopped on drop.
pub struct UdpBackend {
    name: String,
    addr: SocketAddr,
    seen: Arc<Seen>,
    healthy: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Starts backend `name` on an ephemeral port of 127.0.0.1.
pub fn spawn_udp_backend(name: &str) -> UdpBackend {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp backend");
    enlarge(&socket);
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let addr = socket.local_addr().expect("local_addr");
    let seen = Arc::new(Seen::default());
    let healthy = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, h, st, prefix) = (
        seen.clone(),
        healthy.clone(),
        stop.clone(),
        format!("{name}|"),
    );
    let thread = thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut answer = prefix.clone().into_bytes();
        while !st.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if &buf[..n] == PROBE {
                s.probes.fetch_add(1, Ordering::Relaxed);
                if h.load(Ordering::Relaxed) {
                    let _ = socket.send_to(PROBE_ANSWER, from);
                }
                continue;
            }
            s.datagrams.fetch_add(1, Ordering::Relaxed);
            s.sources.lock().unwrap().insert(from);
            answer.truncate(prefix.len());
            answer.extend_from_slice(&buf[..n]);
            // A 65,507-byte request makes a longer answer than UDP carries: send the
            // request back alone then.
            let out = if answer.len() > 65_507 {
                &buf[..n]
            } else {
                &answer[..]
            };
            let _ = socket.send_to(out, from);
        }
    });
    UdpBackend {
        name: name.to_string(),
        addr,
        seen,
        healthy,
        stop,
        thread: Some(thread),
    }
}

impl UdpBackend {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its name, the prefix of its answers.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests answered (probes not counted).
    pub fn datagrams(&self) -> usize {
        self.seen.datagrams.load(Ordering::Relaxed)
    }

    /// Health probes received.
    pub fn probes(&self) -> usize {
        self.seen.probes.load(Ordering::Relaxed)
    }

    /// Distinct source addresses of requests: one per flow the proxy opened here.
    pub fn sources(&self) -> usize {
        self.seen.sources.lock().unwrap().len()
    }

    /// Whether it answers probes.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client socket, bound to `ip` on an ephemeral port.
pub struct UdpClient {
    socket: UdpSocket,
    to: SocketAddr,
}

impl UdpClient {
    /// A client of `to` on 127.0.0.1.
    pub fn new(to: SocketAddr) -> UdpClient {
        UdpClient::from_ip(to, "127.0.0.1")
    }

    /// A client of `to` sending from `ip` (any 127.x.y.z works on loopback).
    pub fn from_ip(to: SocketAddr, ip: &str) -> UdpClient {
        let socket = UdpSocket::bind((ip, 0)).expect("bind udp client");
        enlarge(&socket);
        UdpClient { socket, to }
    }

    /// Its own address (the flow's key).
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local_addr")
    }

    /// Sends `request`.
    pub fn send(&self, request: &[u8]) -> io::Result<()> {
        self.socket.send_to(request, self.to).map(drop)
    }

    /// The next answer within `timeout`.
    pub fn recv(&self, timeout: Duration) -> io::Result<Vec<u8>> {
        self.socket.set_read_timeout(Some(timeout))?;
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = self.socket.recv_from(&mut buf)?;
            if from == self.to {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }

    /// Sends `request` and returns the name of the backend that answered, checking
    /// that the answer carries the request unchanged.
    pub fn ask(&self, request: &[u8], timeout: Duration) -> io::Result<String> {
        self.send(request)?;
        let answer = self.recv(timeout)?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        match text.split_once('|') {
            Some((name, rest)) if rest.as_bytes() == request => Ok(name.to_string()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "unexpected answer {text:?} to {:?}",
                    String::from_utf8_lossy(request)
                ),
            )),
        }
    }
}
