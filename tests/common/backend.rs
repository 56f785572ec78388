//! Real backends for the integration tests: a small HTTP/1.1 server and a TCP echo
//! server, each listening on its own port and running on a tokio runtime that the
//! handle owns (a dedicated thread), so plain blocking `#[test]` functions can use them.
//!
//! The HTTP backend tells the test what it saw: every response carries `x-backend: NAME`
//! and echoes the request as `x-seen-*` headers. Request bodies are streamed and hashed
//! (FNV-1a 64), never buffered, so a 100 MB upload costs constant memory. Its routes:
//!
//! | request | answer |
//! |---|---|
//! | `GET /health` | 200, or 503 while [`HttpBackend::set_healthy`]`(false)` |
//! | `/slow?ms=N` | waits N ms (default 1000), then answers like `/` |
//! | `/stall` | never answers; holds the connection until the peer closes it |
//! | POST/PUT/PATCH, or any request with a body | `bytes=N fnv=HEX` |
//! | anything else | 200 `NAME\n` |
//!
//! A test can also make every request but `/health` answer a fixed status
//! ([`HttpBackend::set_status`]) or wait first ([`HttpBackend::set_delay`]), and read
//! the most requests it had in flight at once ([`HttpBackend::peak`]).
//!
//! The file (with `backend_http.rs`, the HTTP side of a connection) is also compiled
//! into `examples/demo_backend.rs` through `#[path]`, so it depends on nothing but
//! `std` and `tokio`.
#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Largest request head (request line plus headers) the HTTP backend accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer size used when streaming bodies.
const CHUNK: usize = 64 * 1024;

/// FNV-1a 64-bit hash, fed incrementally; the backend reports it for request bodies.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds `bytes` into the hash.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash as the backend prints it: lowercase hex, no padding.
    pub fn hex(&self) -> String {
        format!("{:x}", self.0)
    }
}

/// FNV-1a 64 of `bytes` as lowercase hex, for comparing with a backend's `fnv=` answer.
pub fn fnv1a64_hex(bytes: &[u8]) -> String {
    let mut h = Fnv::default();
    h.update(bytes);
    h.hex()
}

/// Counters and switches shared between a handle and its connection tasks.
#[derive(Default)]
struct Stats {
    name: String,
    requests: AtomicUsize,
    health_checks: AtomicUsize,
    active: AtomicUsize,
    connections: AtomicUsize,
    unhealthy: AtomicBool,
    /// Answer every request but `/health` with this status (0: as usual).
    status: AtomicUsize,
    /// Wait this long (ms) before answering any request but `/health`.
    delay_ms: AtomicUsize,
    /// The most requests in flight at once.
    peak: AtomicUsize,
    /// Print `got ID` (the `x-id` header) to stdout as each request head arrives.
    announce: AtomicBool,
    /// The `x-id` headers of the requests received, in order of arrival.
    ids: Mutex<Vec<String>>,
}

/// Counts one unit of work in `active` for as long as it lives, even if the task is
/// dropped mid-way (as happens when the backend stops).
struct ActiveGuard<'a>(&'a AtomicUsize);

impl<'a> ActiveGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(counter)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A listener running on its own thread and runtime; stopping drops the runtime, which
/// closes the listener and every connection at once.
struct Server {
    addr: SocketAddr,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    /// Binds `addr` now (so the port is known and bind errors surface here), then serves
    /// each accepted connection with `serve` on a fresh runtime thread.
    fn start<F, Fut>(addr: SocketAddr, stats: Arc<Stats>, serve: F) -> io::Result<Server>
    where
        F: Fn(TcpStream, Arc<Stats>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let std_listener = StdListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("backend-{}", stats.name))
            .enable_all()
            .build()?;
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("backend-{}", stats.name))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => return eprintln!("backend {}: {e}", stats.name),
                    };
                    let accept = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                // Out of descriptors or similar: back off, then retry.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            stats.connections.fetch_add(1, Ordering::SeqCst);
                            tokio::spawn(serve(stream, stats.clone()));
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime drops every connection task and its socket.
                drop(runtime);
            })?;
        Ok(Server {
            addr,
            shutdown: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Closes the listener and all connections; returns once they are closed.
    fn stop(&self) {
        if let Some(tx) = take(&self.shutdown) {
            let _ = tx.send(());
        }
        if let Some(thread) = take(&self.thread) {
            let _ = thread.join();
        }
    }
}

/// Takes the value out of a mutex-guarded slot, even if a panic poisoned it.
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Handle of a running HTTP backend; stops it on drop.
pub struct HttpBackend {
    server: Server,
    stats: Arc<Stats>,
}

/// Starts an HTTP backend named `name` on an ephemeral port of 127.0.0.1.
pub fn spawn_http_backend(name: &str) -> HttpBackend {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    HttpBackend::bind(name, any).expect("start HTTP backend")
}

impl HttpBackend {
    /// Starts an HTTP backend named `name` on `addr` (port 0 picks a free one).
    pub fn bind(name: &str, addr: SocketAddr) -> io::Result<HttpBackend> {
        let stats = Arc::new(Stats {
            name: name.to_string(),
            ..Stats::default()
        });
        let server = Server::start(addr, stats.clone(), serve_http)?;
        Ok(HttpBackend { server, stats })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Its name, as sent in `x-backend` and in default bodies.
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// Requests received so far (all routes, health checks included).
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Requests to `/health` received so far.
    pub fn health_checks(&self) -> usize {
        self.stats.health_checks.load(Ordering::SeqCst)
    }

    /// Requests currently in flight (received, not yet fully answered).
    pub fn active(&self) -> usize {
        self.stats.active.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Makes `GET /health` answer 200 (`true`) or 503 (`false`).
    pub fn set_healthy(&self, healthy: bool) {
        self.stats.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    /// Answers every request but `GET /health` with `status` (0: as usual).
    pub fn set_status(&self, status: u16) {
        self.stats
            .status
            .store(usize::from(status), Ordering::SeqCst);
    }

    /// Waits `delay` before answering every request but `GET /health`.
    pub fn set_delay(&self, delay: Duration) {
        let ms = delay.as_millis() as usize;
        self.stats.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The `x-id` headers of the requests received so far, in order of arrival.
    pub fn ids(&self) -> Vec<String> {
        self.stats.ids.lock().unwrap().clone()
    }

    /// The most requests it had in flight at once.
    pub fn peak(&self) -> usize {
        self.stats.peak.load(Ordering::SeqCst)
    }

    /// Prints `got ID` to stdout as each request head arrives (`ID`: its `x-id`
    /// header), so a parent process learns what reached a backend it then kills.
    pub fn announce(&self) {
        self.stats.announce.store(true, Ordering::SeqCst);
    }

    /// Closes the listener and every connection; later connects are refused.
    pub fn stop(&self) {
        self.server.stop();
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Handle of a running TCP echo backend; stops it on drop.
pub struct TcpBackend {
    server: Server,
    stats: Arc<Stats>,
}

/// Starts a TCP backend named `name` on an ephemeral port of 127.0.0.1: it greets each
/// connection with `NAME\n`, echoes every byte until the client half-closes, then
/// shuts down its own write side.
pub fn spawn_tcp_backend(name: &str) -> TcpBackend {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    TcpBackend::bind(name, any).expect("start TCP backend")
}

impl TcpBackend {
    /// Starts a TCP echo backend named `name` on `addr` (port 0 picks a free one).
    pub fn bind(name: &str, addr: SocketAddr) -> io::Result<TcpBackend> {
        let stats = Arc::new(Stats {
            name: name.to_string(),
            ..Stats::default()
        });
        let server = Server::start(addr, stats.clone(), serve_echo)?;
        Ok(TcpBackend { server, stats })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn active(&self) -> usize {
        self.stats.active.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection; later connects are refused.
    pub fn stop(&self) {
        self.server.stop();
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve_echo(mut stream: TcpStream, stats: Arc<Stats>) {
    let _active = ActiveGuard::new(&stats.active);
    let greeting = format!("{}\n", stats.name);
    if stream.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let (mut rd, mut wr) = stream.split();
    if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
        let _ = wr.shutdown().await;
    }
}

// The HTTP backend's request reading and answers. Named by path so that the examples
// that include this file by `#[path]` find it too.
#[path = "backend_http.rs"]
mod http;
use http::serve_http;
