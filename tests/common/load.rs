//! Background load for the upgrade and shutdown tests: HTTP clients (keep-alive or one
//! connection per request), short TCP echo connections, and long TCP streams whose
//! every echoed byte is checked. TCP clients read the echo backend's answer up to EOF
//! after half-closing, so they do not depend on how promptly small writes are relayed. Workers run on their own threads until [`Load::stop`]
//! (or drop) raises the stop flag, and each loop is bounded by [`MAX_ITERATIONS`] and
//! [`MAX_RUN`] as well, so a stuck test cannot spin forever.
//!
//! The keep-alive client follows RFC 9112 §9.3.1: when a *reused* connection closes
//! before any byte of the response arrives, the server may have closed it while idle,
//! so the (idempotent) request is retried once on a new connection and counted as a
//! stale-connection retry. Every other failure counts as a failed request.
//!
//! Workers are paced (a short pause between operations) so that a 2-core machine keeps
//! up and ephemeral ports do not run out; the pause shapes the rate, it waits for
//! nothing.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::client::{Conn, Request};

/// Upper bound on the operations of one worker.
pub const MAX_ITERATIONS: usize = 100_000;
/// Upper bound on how long a worker runs.
pub const MAX_RUN: Duration = Duration::from_secs(150);
/// Connect, read and write timeout of every load socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two operations of one worker.
const PACE: Duration = Duration::from_millis(4);
/// How many failure messages are kept for the report.
const KEPT_ERRORS: usize = 20;

/// What the workers did so far, as counted.
#[derive(Default)]
pub struct LoadStats {
    http_ok: AtomicUsize,
    http_failed: AtomicUsize,
    stale_retries: AtomicUsize,
    tcp_ok: AtomicUsize,
    tcp_refused: AtomicUsize,
    tcp_failed: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// A snapshot of [`LoadStats`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// HTTP requests answered with 200.
    pub http_ok: usize,
    /// HTTP requests that failed (error or another status), after any allowed retry.
    pub http_failed: usize,
    /// Requests retried because a reused keep-alive connection closed before answering.
    pub stale_retries: usize,
    /// Short TCP connections that echoed correctly.
    pub tcp_ok: usize,
    /// Short TCP connections whose connect failed.
    pub tcp_refused: usize,
    /// Short TCP connections that failed after connecting.
    pub tcp_failed: usize,
}

impl LoadStats {
    /// The counters now.
    pub fn totals(&self) -> Totals {
        let n = |c: &AtomicUsize| c.load(Ordering::SeqCst);
        Totals {
            http_ok: n(&self.http_ok),
            http_failed: n(&self.http_failed),
            stale_retries: n(&self.stale_retries),
            tcp_ok: n(&self.tcp_ok),
            tcp_refused: n(&self.tcp_refused),
            tcp_failed: n(&self.tcp_failed),
        }
    }

    /// The first failure messages, for assertion messages.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fail(&self, counter: &AtomicUsize, what: String) {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < KEPT_ERRORS {
            errors.push(what);
        }
    }
}

/// A set of load workers sharing one stop flag and one [`LoadStats`].
pub struct Load {
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
    threads: Vec<JoinHandle<()>>,
}

impl Default for Load {
    fn default() -> Self {
        Load::new()
    }
}

impl Load {
    /// No workers yet.
    pub fn new() -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(LoadStats::default()),
            threads: Vec::new(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }

    /// Starts `n` clients sending `GET path` to `addr` on keep-alive connections.
    pub fn http_keepalive(&mut self, addr: SocketAddr, path: &str, n: usize) {
        for _ in 0..n {
            let path = path.to_string();
            self.spawn(move |stats| {
                let mut conn = None;
                move || keepalive_request(&mut conn, addr, &path, &stats)
            });
        }
    }

    /// Starts `n` clients sending `GET path` to `addr`, one new connection each time.
    pub fn http_new_conn(&mut self, addr: SocketAddr, path: &str, n: usize) {
        for _ in 0..n {
            let path = path.to_string();
            self.spawn(move |stats| {
                move || match Request::get(&path).timeout(IO_TIMEOUT).send(addr) {
                    Ok(resp) if resp.status == 200 => {
                        stats.http_ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(resp) => stats.fail(&stats.http_failed, format!("status {}", resp.status)),
                    Err(e) => stats.fail(&stats.http_failed, format!("new connection: {e}")),
                }
            });
        }
    }

    /// Starts `n` clients making short TCP echo connections to `addr`: connect, send a
    /// few bytes, half-close, read the greeting and the echo up to EOF.
    pub fn tcp_short(&mut self, addr: SocketAddr, n: usize) {
        for _ in 0..n {
            self.spawn(move |stats| {
                let mut round = 0u64;
                move || {
                    round += 1;
                    let payload = format!("ping {round:016x}\n").into_bytes();
                    match connect(addr) {
                        Err(e) => stats.fail(&stats.tcp_refused, format!("tcp connect: {e}")),
                        Ok(stream) => match exchange(stream, &payload) {
                            Ok(_) => {
                                stats.tcp_ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => stats.fail(&stats.tcp_failed, format!("tcp exchange: {e}")),
                        },
                    }
                }
            });
        }
    }

    /// Runs the step that `make` builds, paced and bounded, until stopped.
    fn spawn<F, S>(&mut self, make: F)
    where
        F: FnOnce(Arc<LoadStats>) -> S + Send + 'static,
        S: FnMut(),
    {
        let stop = self.stop.clone();
        let stats = self.stats.clone();
        self.threads.push(thread::spawn(move || {
            let mut step = make(stats);
            let start = Instant::now();
            for _ in 0..MAX_ITERATIONS {
                if stop.load(Ordering::SeqCst) || start.elapsed() > MAX_RUN {
                    return;
                }
                step();
                thread::sleep(PACE);
            }
        }));
    }

    /// Stops every worker, waits for them, and returns the final counters.
    pub fn stop(mut self) -> Arc<LoadStats> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("a load worker panicked");
        }
        self.stats.clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Why one attempt on a keep-alive connection failed.
enum Attempt {
    /// The connection closed before any byte of the response arrived.
    NothingReceived(io::Error),
    /// Anything else.
    Failed(io::Error),
}

/// Sends `GET path` on `conn` and reads the answer, telling apart a connection that
/// closed before answering from other failures.
fn attempt(conn: &mut Conn, path: &str) -> Result<u16, Attempt> {
    let head = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", conn_addr(conn));
    conn.write_raw(head.as_bytes())
        .map_err(Attempt::NothingReceived)?;
    let mut first = [0u8; 1];
    match conn.stream().peek(&mut first) {
        Ok(0) => {
            let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "closed before answering");
            return Err(Attempt::NothingReceived(eof));
        }
        Ok(_) => {}
        Err(e) if is_close(&e) => return Err(Attempt::NothingReceived(e)),
        Err(e) => return Err(Attempt::Failed(e)),
    }
    conn.read_response(false)
        .map(|resp| resp.status)
        .map_err(Attempt::Failed)
}

fn conn_addr(conn: &Conn) -> String {
    conn.stream()
        .peer_addr()
        .map_or_else(|_| "localhost".to_string(), |a| a.to_string())
}

/// Whether `e` says the peer closed or reset the connection (not a timeout).
fn is_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// One request of a keep-alive client: reuses `conn` when it can, retries once on a
/// new connection when a reused one closed before answering.
fn keepalive_request(conn: &mut Option<Conn>, addr: SocketAddr, path: &str, stats: &LoadStats) {
    let reused = conn.is_some();
    let mut current = match conn.take() {
        Some(c) => c,
        None => match Conn::open_with_timeout(addr, IO_TIMEOUT) {
            Ok(c) => c,
            Err(e) => return stats.fail(&stats.http_failed, format!("keep-alive connect: {e}")),
        },
    };
    let mut outcome = attempt(&mut current, path);
    if let (true, Err(Attempt::NothingReceived(_))) = (reused, &outcome) {
        stats.stale_retries.fetch_add(1, Ordering::SeqCst);
        current = match Conn::open_with_timeout(addr, IO_TIMEOUT) {
            Ok(c) => c,
            Err(e) => return stats.fail(&stats.http_failed, format!("retry connect: {e}")),
        };
        outcome = attempt(&mut current, path);
    }
    match outcome {
        Ok(200) => {
            stats.http_ok.fetch_add(1, Ordering::SeqCst);
            if current.is_reusable() {
                *conn = Some(current);
            }
        }
        Ok(status) => stats.fail(&stats.http_failed, format!("keep-alive status {status}")),
        Err(Attempt::NothingReceived(e) | Attempt::Failed(e)) => {
            let how = if reused { "reused" } else { "new" };
            stats.fail(&stats.http_failed, format!("keep-alive ({how} conn): {e}"));
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Connects to `addr` with [`IO_TIMEOUT`] on every read and write.
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Splits what an echo backend sent back into its greeting `NAME` and the echo.
fn split_greeting(back: &[u8]) -> io::Result<(String, &[u8])> {
    let end = back.iter().take(64).position(|b| *b == b'\n');
    let end = end.ok_or_else(|| invalid(format!("no greeting line in {} bytes", back.len())))?;
    let name = String::from_utf8_lossy(&back[..end]).into_owned();
    Ok((name, &back[end + 1..]))
}

/// On a connected `stream`: sends `payload`, half-closes, reads to EOF and checks that
/// the answer is a greeting line followed by exactly `payload`; returns the greeting.
/// Reading to EOF keeps this independent of how promptly Tioga forwards small writes.
fn exchange(mut stream: TcpStream, payload: &[u8]) -> io::Result<String> {
    stream.write_all(payload)?;
    stream.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    let (name, echo) = split_greeting(&back)?;
    if echo != payload {
        let (got, sent) = (echo.len(), payload.len());
        return Err(invalid(format!(
            "echo of {got} bytes differs from the {sent} sent"
        )));
    }
    Ok(name)
}

/// A short TCP connection to an echo backend through `addr`; returns the greeting.
pub fn greeted_by(addr: SocketAddr) -> io::Result<String> {
    exchange(connect(addr)?, b"hello\n")
}

/// Deterministic pseudo-random bytes (xorshift64), one generator per stream.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// How a long TCP stream ended.
#[derive(Debug)]
pub struct StreamReport {
    /// The backend's greeting.
    pub greeting: String,
    /// Bytes echoed back intact, in order, before EOF or the first difference.
    pub intact: u64,
    /// Bytes the stream was meant to carry.
    pub planned: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// From connect to EOF.
    pub elapsed: Duration,
}

/// A long TCP stream in progress; see [`start_stream`].
pub struct StreamRun {
    received: Arc<AtomicUsize>,
    reader: JoinHandle<StreamReport>,
    writer: JoinHandle<io::Result<()>>,
}

impl StreamRun {
    /// Bytes received so far (greeting included): above zero once the stream flows.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits (bounded by the socket timeouts) for the stream to end.
    pub fn finish(self) -> StreamReport {
        let mut report = self.reader.join().expect("stream reader panicked");
        if let Err(e) = self.writer.join().expect("stream writer panicked") {
            report.error.get_or_insert(format!("writing: {e}"));
        }
        report
    }
}

/// Opens a TCP stream to `addr` and, on two threads, sends `chunks` chunks of `chunk`
/// pseudo-random bytes, one every `pace`, then half-closes; while reading everything
/// back to EOF and checking it is the greeting followed by exactly what was sent.
pub fn start_stream(
    addr: SocketAddr,
    seed: u64,
    chunk: usize,
    chunks: usize,
    pace: Duration,
) -> io::Result<StreamRun> {
    let start = Instant::now();
    let stream = connect(addr)?;
    let mut out = stream.try_clone()?;
    let writer = thread::spawn(move || {
        let mut pattern = Pattern(seed | 1);
        let mut buf = vec![0u8; chunk];
        for i in 0..chunks {
            if i > 0 {
                thread::sleep(pace);
            }
            pattern.fill(&mut buf);
            out.write_all(&buf)?;
        }
        out.shutdown(Shutdown::Write)
    });
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let planned = (chunk * chunks) as u64;
    let reader = thread::spawn(move || {
        let mut report = StreamReport {
            greeting: String::new(),
            intact: 0,
            planned,
            error: None,
            elapsed: Duration::ZERO,
        };
        let checked = check_echo(stream, seed, &counter, &mut report);
        if let Err(e) = checked {
            report.error = Some(e.to_string());
        } else if report.intact != planned {
            report.error = Some(format!("EOF after {} of {planned} bytes", report.intact));
        }
        report.elapsed = start.elapsed();
        report
    });
    Ok(StreamRun {
        received,
        reader,
        writer,
    })
}

/// Reads `stream` to EOF: a greeting line, then the pattern of `seed`.
fn check_echo(
    mut stream: TcpStream,
    seed: u64,
    received: &AtomicUsize,
    report: &mut StreamReport,
) -> io::Result<()> {
    let mut pattern = Pattern(seed | 1);
    let (mut buf, mut want) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut head = Vec::new();
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return match report.greeting.is_empty() {
                true => Err(invalid(format!("EOF before a greeting ({head:?})"))),
                false => Ok(()),
            };
        }
        received.fetch_add(n, Ordering::SeqCst);
        let mut data = &buf[..n];
        if report.greeting.is_empty() {
            head.extend_from_slice(data);
            let Ok((name, rest)) = split_greeting(&head) else {
                if head.len() > 64 {
                    return Err(invalid(format!("no greeting line: {head:?}")));
                }
                continue;
            };
            report.greeting = name;
            let skip = n - rest.len();
            data = &buf[skip..n];
        }
        if report.intact + data.len() as u64 > report.planned {
            return Err(invalid(format!(
                "more than the {} bytes sent",
                report.planned
            )));
        }
        pattern.fill(&mut want[..data.len()]);
        if let Some(at) = data.iter().zip(&want).position(|(a, b)| a != b) {
            let offset = report.intact + at as u64;
            return Err(invalid(format!("echo differs at byte {offset}")));
        }
        report.intact += data.len() as u64;
    }
}

/// Like [`super::wait_until`] but returns whether `f` became true before `deadline`,
/// so the caller can explain a timeout with what it knows.
pub fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
