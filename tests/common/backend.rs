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
//! The file is also compiled into `examples/demo_backend.rs` through `#[path]`, so it
//! depends on nothing but `std` and `tokio`.
#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
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

/// How the request body is framed.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    /// Header names lowercased, in order of first appearance, repeated ones joined.
    headers: Vec<(String, String)>,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self, key: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Whether to answer with the body's length and hash.
    fn has_body(&self) -> bool {
        let framed = !matches!(self.framing, Framing::None | Framing::Length(0));
        framed || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH")
    }
}

type Reader = BufReader<tokio::net::tcp::OwnedReadHalf>;

/// Reads one line ending in `\n` into `line`, refusing to exceed `budget` bytes.
async fn read_line(rd: &mut Reader, line: &mut Vec<u8>, budget: &mut usize) -> io::Result<usize> {
    line.clear();
    let limit = (*budget as u64).max(1);
    let n = (&mut *rd).take(limit).read_until(b'\n', line).await?;
    *budget = budget.saturating_sub(n);
    if n > 0 && !line.ends_with(b"\n") {
        return Err(invalid("request head too long or truncated"));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(n)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads a request head; `Ok(None)` means the peer closed cleanly between requests.
async fn read_head(rd: &mut Reader) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let mut line = Vec::new();
    // Tolerate blank lines before the request line (RFC 9112 section 2.2).
    loop {
        if read_line(rd, &mut line, &mut budget).await? == 0 {
            return Ok(None);
        }
        if !line.is_empty() {
            break;
        }
    }
    let request_line = String::from_utf8_lossy(&line).into_owned();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        if read_line(rd, &mut line, &mut budget).await? == 0 {
            return Err(invalid("connection closed inside the head"));
        }
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let (name, value) = text.split_once(':').ok_or_else(|| invalid("bad header"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    let mut head = Head {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        framing: Framing::None,
        keep_alive: true,
    };
    let connection = head.header("connection").unwrap_or("").to_ascii_lowercase();
    head.keep_alive = match version {
        "HTTP/1.1" => !connection.contains("close"),
        "HTTP/1.0" => connection.contains("keep-alive"),
        _ => return Err(invalid("unsupported HTTP version")),
    };
    let te = head
        .header("transfer-encoding")
        .unwrap_or("")
        .to_ascii_lowercase();
    head.framing = if te.contains("chunked") {
        Framing::Chunked
    } else if let Some(cl) = head.header("content-length") {
        Framing::Length(cl.parse().map_err(|_| invalid("bad content-length"))?)
    } else {
        Framing::None
    };
    Ok(Some(head))
}

/// Streams `n` bytes of `rd` into `hash`.
async fn read_exact_hashed(rd: &mut Reader, mut n: u64, hash: &mut Fnv) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    while n > 0 {
        let want = n.min(CHUNK as u64) as usize;
        let got = rd.read(&mut buf[..want]).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        hash.update(&buf[..got]);
        n -= got as u64;
    }
    Ok(())
}

/// Reads the whole body as framed, hashing it; returns its length.
async fn read_body(rd: &mut Reader, framing: &Framing, hash: &mut Fnv) -> io::Result<u64> {
    match *framing {
        Framing::None => Ok(0),
        Framing::Length(n) => read_exact_hashed(rd, n, hash).await.map(|()| n),
        Framing::Chunked => {
            let mut total = 0u64;
            let mut line = Vec::new();
            loop {
                let mut budget = MAX_HEAD;
                read_line(rd, &mut line, &mut budget).await?;
                let text = String::from_utf8_lossy(&line);
                let size = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    break;
                }
                read_exact_hashed(rd, size, hash).await?;
                total += size;
                read_line(rd, &mut line, &mut budget).await?;
                if !line.is_empty() {
                    return Err(invalid("chunk not followed by CRLF"));
                }
            }
            // Trailers, up to the empty line.
            let mut budget = MAX_HEAD;
            while read_line(rd, &mut line, &mut budget).await? > 0 && !line.is_empty() {}
            Ok(total)
        }
    }
}

/// Writes a response that echoes `head` in `x-seen-*` headers.
async fn respond<W: AsyncWrite + Unpin>(
    wr: &mut W,
    stats: &Stats,
    head: &Head,
    status: u16,
    body: &str,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        503 => "Service Unavailable",
        _ => "Other",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    let mut add = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    add("content-type", "text/plain");
    add("content-length", &body.len().to_string());
    add("x-backend", &stats.name);
    add("x-seen-method", &head.method);
    add("x-seen-path", &head.target);
    add("x-seen-host", head.header("host").unwrap_or(""));
    for (name, value) in &head.headers {
        add(&format!("x-seen-h-{name}"), value);
    }
    if !head.keep_alive {
        add("connection", "close");
    }
    out.push_str("\r\n");
    if head.method != "HEAD" {
        out.push_str(body);
    }
    wr.write_all(out.as_bytes()).await?;
    wr.flush().await
}

/// Waits until the peer closes (or errors), discarding what it sends.
async fn hold_until_closed<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn serve_http(stream: TcpStream, stats: Arc<Stats>) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(CHUNK, rd);
    loop {
        let head = match read_head(&mut rd).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let _ = wr.write_all(bad_request(&e).as_bytes()).await;
                return;
            }
        };
        stats.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = head.header("x-id") {
            stats.ids.lock().unwrap().push(id.to_string());
        }
        if stats.announce.load(Ordering::SeqCst) {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "got {}", head.header("x-id").unwrap_or("-"));
            let _ = out.flush();
        }
        let _active = ActiveGuard::new(&stats.active);
        stats
            .peak
            .fetch_max(stats.active.load(Ordering::SeqCst), Ordering::SeqCst);
        match serve_one(&mut rd, &mut wr, &stats, &head).await {
            Ok(true) if head.keep_alive => {}
            _ => return,
        }
    }
}

fn bad_request(e: &io::Error) -> String {
    let body = format!("bad request: {e}\n");
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers one request; `Ok(false)` means the connection must not be reused.
async fn serve_one<W: AsyncWrite + Unpin>(
    rd: &mut Reader,
    wr: &mut W,
    stats: &Stats,
    head: &Head,
) -> io::Result<bool> {
    let expects_continue = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue && !matches!(head.framing, Framing::None) {
        wr.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let mut hash = Fnv::default();
    let len = match read_body(rd, &head.framing, &mut hash).await {
        Ok(len) => len,
        Err(e) => {
            let _ = wr.write_all(bad_request(&e).as_bytes()).await;
            return Ok(false);
        }
    };
    let default_body = format!("{}\n", stats.name);
    if head.path() != "/health" {
        let delay = stats.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        let status = stats.status.load(Ordering::SeqCst);
        if status > 0 {
            respond(wr, stats, head, status as u16, &default_body).await?;
            return Ok(true);
        }
    }
    match head.path() {
        "/health" => {
            stats.health_checks.fetch_add(1, Ordering::SeqCst);
            let (status, body) = match stats.unhealthy.load(Ordering::SeqCst) {
                true => (503, "unhealthy\n"),
                false => (200, "ok\n"),
            };
            respond(wr, stats, head, status, body).await?;
        }
        "/stall" => {
            hold_until_closed(rd).await;
            return Ok(false);
        }
        "/slow" => {
            let ms = head
                .query("ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            respond(wr, stats, head, 200, &default_body).await?;
        }
        _ if head.has_body() => {
            let body = format!("bytes={len} fnv={}", hash.hex());
            respond(wr, stats, head, 200, &body).await?;
        }
        _ => respond(wr, stats, head, 200, &default_body).await?,
    }
    Ok(true)
}
