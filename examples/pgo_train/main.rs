//! The training run of the profile-guided release build (`make build`, which runs
//! `examples/pgo_build.sh`): drives a profile-instrumented `tioga` through the work a
//! load balancer does, so the compiler learns which paths are hot.
//!
//! ```text
//! cargo run --example pgo_train -- path/to/instrumented/tioga
//! ```
//!
//! It starts two HTTP backends and a TCP echo backend on 127.0.0.1 ephemeral ports (the
//! integration tests' backends, `tests/common/backend.rs`), writes a config with the
//! usual shapes — a catch-all route, host and path routes with header and path filters,
//! a redirect, a 404, round robin, least connections and consistent hashing, HTTP and
//! TCP health checks, a TCP listener, the admin endpoint and a JSON access log — and
//! runs Tioga twice (one worker thread per listener, then two), each time under
//! keep-alive and one-connection-per-request HTTP clients, short and bulk TCP
//! connections and a few admin reads. Tioga then gets SIGINT and writes its profile as
//! it exits. Every loop is bounded in count, every socket has a timeout, and any
//! failed request or unexpected status ends the run with an error: a profile of error
//! paths would train the wrong code.

#[path = "../../tests/common/backend.rs"]
mod backend;
// The integration tests' HTTP client; the trainer uses only part of it.
#[allow(dead_code)]
#[path = "../../tests/common/client.rs"]
mod client;
#[path = "../../tests/common/process.rs"]
mod process;
// The TLS tests' certificate authority; the trainer uses only part of it.
#[allow(dead_code)]
#[path = "../../tests/common/pki.rs"]
mod pki;
mod tls;

use client::{Conn, Request};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// Keep-alive clients per run, and the requests each sends.
const KEEPALIVE_CLIENTS: usize = 8;
const KEEPALIVE_REQUESTS: usize = 4_000;
/// One-connection-per-request clients per run, and the requests each sends.
const CLOSE_CLIENTS: usize = 2;
const CLOSE_REQUESTS: usize = 400;
/// Short TCP connections per run.
const TCP_SHORT: usize = 300;
/// Bytes sent (and echoed back) through the TCP listener in one long connection.
const TCP_BULK: usize = 64 << 20;
/// Timeout of every socket operation and of Tioga's start and exit.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A request of the mix: method, path, extra headers, body, expected status.
struct Shape {
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
}

impl Shape {
    fn request(&self) -> Request {
        let req = self
            .headers
            .iter()
            .fold(Request::new(self.method, self.path), |r, (n, v)| {
                r.header(n, v)
            });
        if self.body.is_empty() {
            req
        } else {
            req.body(self.body)
        }
    }

    /// Checks an answer's status against the expected one.
    fn check(&self, status: u16) -> Result<()> {
        if status == self.status {
            return Ok(());
        }
        let (method, path, expected) = (self.method, self.path, self.status);
        Err(format!("{method} {path}: status {status}, expected {expected}").into())
    }
}

/// One in every `MIX.len()` requests takes each shape: the catch-all route most often.
const MIX: &[Shape] = &[
    shape("GET", "/", &[], "", 200),
    shape("GET", "/static/app.js?v=3", &[("accept", "*/*")], "", 200),
    shape("GET", "/", &[("user-agent", "train/1")], "", 200),
    shape(
        "GET",
        "/api/users/42",
        &[("host", "api.example.com"), ("authorization", "Bearer x")],
        "",
        200,
    ),
    shape("GET", "/", &[], "", 200),
    shape(
        "GET",
        "/v2/items?id=7",
        &[("x-user", "u-1234"), ("cookie", "session=abc; beta=yes")],
        "",
        200,
    ),
    shape(
        "POST",
        "/form",
        &[("content-type", "application/x-www-form-urlencoded")],
        "name=tioga&kind=lb",
        200,
    ),
    shape("GET", "/", &[], "", 200),
    shape(
        "GET",
        "/shop/cart",
        &[
            ("host", "shop.example.com"),
            ("x-forwarded-for", "10.1.2.3"),
        ],
        "",
        200,
    ),
    shape("GET", "/old/page?x=1", &[], "", 301),
    shape("GET", "/", &[], "", 200),
    shape("DELETE", "/", &[], "", 404),
];

const fn shape(
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
) -> Shape {
    Shape {
        method,
        path,
        headers,
        body,
        status,
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("pgo_train: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(tioga), None) = (args.next(), args.next()) else {
        return Err("usage: pgo_train PATH_TO_TIOGA".into());
    };
    let a = backend::spawn_http_backend("a");
    let b = backend::spawn_http_backend("b");
    let echo = backend::spawn_tcp_backend("echo");
    let dir = std::env::temp_dir().join(format!("tioga-pgo-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let ca = pki::TestCa::new(&dir, "train");
        let cert = ca.issue("listener", tls::SERVER_NAME, &[tls::SERVER_NAME]);
        for threads in [1, 2] {
            let ports = Ports::new();
            let config = dir.join(format!("train-{threads}.yaml"));
            let backends = [a.addr(), b.addr()];
            let yaml = config_yaml(threads, &ports, &dir, &cert, backends, echo.addr());
            std::fs::write(&config, yaml)?;
            let started = Instant::now();
            let mut child = start(&tioga, &config, &ports)?;
            let load = drive(&ports, ca.client_config());
            let stopped = stop(&mut child);
            load?;
            stopped?;
            println!(
                "pgo_train: threads {threads}: done in {:.1?}",
                started.elapsed()
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The listeners' ports, chosen free by binding port 0.
struct Ports {
    http: SocketAddr,
    /// TLS, h2 offered by ALPN.
    https: SocketAddr,
    tcp: SocketAddr,
    admin: SocketAddr,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            http: process::free_addr(),
            https: process::free_addr(),
            tcp: process::free_addr(),
            admin: process::free_addr(),
        }
    }
}

fn config_yaml(
    threads: usize,
    p: &Ports,
    dir: &Path,
    cert: &pki::Issued,
    http: [SocketAddr; 2],
    echo: SocketAddr,
) -> String {
    let [a, b] = http;
    let log = dir.join(format!("access-{threads}.log"));
    format!(
        r#"server:
  threads: {threads}
  grace_period: 1s
  graceful_shutdown_timeout: 1s
admin:
  bind: {admin}
access_log:
  target: {log}
  format: json
pools:
  web:
    backends: [{a}, {b}]
    balance: round_robin
    health_check: {{type: http, path: /health, interval: 1s, timeout: 500ms}}
  api:
    backends: [{a}, {{address: {b}, weight: 2}}]
    balance: least_conn
  sticky:
    backends: [{a}, {b}]
    balance: consistent_hash
    hash_key: header:x-user
  echo:
    backends: [{echo}]
    health_check: {{type: tcp, interval: 1s, timeout: 500ms}}
listeners:
  web:
    protocol: http
    bind: {http}
{routes}  secure:
    protocol: http
    bind: {https}
    tls:
      cert: {cert}
      key: {key}
{routes}  raw:
    protocol: tcp
    bind: {tcp}
    pool: echo
"#,
        admin = p.admin,
        log = log.display(),
        http = p.http,
        https = p.https,
        cert = cert.cert.display(),
        key = cert.key.display(),
        tcp = p.tcp,
        routes = ROUTES,
    )
}

/// The routes of both HTTP listeners, plain and TLS.
const ROUTES: &str = r#"    routes:
      - match: {host: api.example.com, path_prefix: /api/}
        pool: api
        filters:
          - strip_prefix: /api
          - set_request_headers: {x-env: train}
          - remove_request_headers: [authorization]
          - set_response_headers: {x-served-by: tioga}
      - match: {path_regex: "^/v[0-9]+/", method: [GET, HEAD]}
        pool: sticky
        filters:
          - rewrite_path: {regex: "^/v([0-9]+)/(.*)$", replace: "/$2?api=$1"}
      - match: {path_prefix: /old/}
        filters:
          - redirect: {to: "https://example.com$path", status: 301}
      - match: {host: "*.example.com"}
        pool: web
        filters:
          - remove_response_headers: [x-seen-path]
      - match: {method: [GET, HEAD, POST]}
        pool: web
"#;

/// Starts `tioga -c config` and waits until its listeners listen (checked without
/// connecting: a bare connection to the TLS listener is an aborted handshake in its log).
fn start(tioga: &str, config: &Path, p: &Ports) -> Result<Child> {
    let mut child = Command::new(tioga)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(|e| format!("start {tioga}: {e}"))?;
    let deadline = Instant::now() + IO_TIMEOUT;
    for addr in [p.http, p.https, p.tcp, p.admin] {
        while !process::listening(addr.port()) {
            if let Some(status) = child.try_wait()? {
                return Err(format!("tioga exited before listening on {addr}: {status}").into());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("tioga did not listen on {addr} within {IO_TIMEOUT:?}").into());
            }
            thread::sleep(process::POLL);
        }
    }
    Ok(child)
}

/// SIGINT (fast shutdown: Tioga exits and writes its profile), then waits for the exit.
fn stop(child: &mut Child) -> Result<()> {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    if !status.success() {
        return Err("kill -INT tioga failed".into());
    }
    match process::wait_child(child, IO_TIMEOUT) {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("tioga exited with {status} after SIGINT").into()),
        None => {
            let _ = child.kill();
            Err("tioga did not exit after SIGINT (no profile written)".into())
        }
    }
}

/// Runs the whole mix against one Tioga; the first failure is the result. `tls` trusts
/// the TLS listener's certificate.
fn drive(p: &Ports, tls: rustls::ClientConfig) -> Result<()> {
    let mut workers: Vec<thread::JoinHandle<Result<()>>> = Vec::new();
    let https = p.https;
    workers.push(thread::spawn(move || tls::drive(https, tls)));
    for i in 0..KEEPALIVE_CLIENTS {
        let addr = p.http;
        workers.push(thread::spawn(move || keepalive_client(addr, i)));
    }
    for i in 0..CLOSE_CLIENTS {
        let addr = p.http;
        workers.push(thread::spawn(move || {
            (0..CLOSE_REQUESTS).try_for_each(|n| {
                let shape = &MIX[(i + n) % MIX.len()];
                shape.check(shape.request().send(addr)?.status)
            })
        }));
    }
    let tcp = p.tcp;
    workers.push(thread::spawn(move || {
        (0..TCP_SHORT).try_for_each(|n| tcp_short(tcp, n))
    }));
    workers.push(thread::spawn(move || tcp_bulk(tcp)));
    let admin = p.admin;
    workers.push(thread::spawn(move || {
        ["/metrics", "/status", "/", "/metrics"]
            .iter()
            .try_for_each(|path| admin_get(admin, path))
    }));
    let mut first_error = None;
    for w in workers {
        let outcome = w.join().map_err(|_| "a load thread panicked")?;
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A plain TCP connection with the trainer's timeouts.
fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn keepalive_client(addr: SocketAddr, offset: usize) -> Result<()> {
    let mut conn = Conn::open(addr)?;
    for n in 0..KEEPALIVE_REQUESTS {
        let shape = &MIX[(offset + n) % MIX.len()];
        shape.check(conn.send(&shape.request())?.status)?;
        if !conn.is_reusable() {
            // The answer said `Connection: close`.
            conn = Conn::open(addr)?;
        }
    }
    Ok(())
}

fn admin_get(addr: SocketAddr, path: &str) -> Result<()> {
    match client::get(addr, path)?.status {
        200 => Ok(()),
        status => Err(format!("admin {path}: status {status}").into()),
    }
}

/// A short TCP exchange: the echo backend's greeting, then a small message echoed.
fn tcp_short(addr: SocketAddr, n: usize) -> Result<()> {
    let mut conn = connect(addr)?;
    let message = format!("ping {n}\n");
    conn.write_all(message.as_bytes())?;
    conn.shutdown(Shutdown::Write)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    if answer != format!("echo\n{message}").as_bytes() {
        return Err(format!("tcp exchange {n}: unexpected answer").into());
    }
    Ok(())
}

/// A long TCP connection: [`TCP_BULK`] bytes out and echoed back (the splice path).
fn tcp_bulk(addr: SocketAddr) -> Result<()> {
    let mut reader = connect(addr)?;
    let mut writer = reader.try_clone()?;
    let sender = thread::spawn(move || -> std::io::Result<()> {
        let chunk = vec![b'x'; 128 << 10];
        for _ in 0..TCP_BULK / chunk.len() {
            writer.write_all(&chunk)?;
        }
        writer.shutdown(Shutdown::Write)
    });
    let mut buf = vec![0; 256 << 10];
    let mut received = 0;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        received += n;
    }
    sender.join().map_err(|_| "bulk sender panicked")??;
    let expected = "echo\n".len() + TCP_BULK;
    if received != expected {
        return Err(format!("bulk: {received} bytes back, expected {expected}").into());
    }
    Ok(())
}
