//! TCP listeners with `routes`: by the TLS server name (`sni`, read from the ClientHello
//! while TLS passes through untouched) and by the client address (`source`).
//!
//! The TLS backends are rustls servers, each with its own certificate (made at test
//! time with rcgen); Tioga has neither key. A rustls client trusting only one
//! backend's certificate completes its handshake through Tioga only if it reached
//! that backend, so each check verifies the route end to end.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server named `name` with a self-signed certificate for `hosts`; answers each
/// HTTP request with its name. Its thread lives as long as the test process.
struct TlsBackend {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
}

fn spawn_tls_backend(name: &'static str, hosts: &[&str]) -> TlsBackend {
    let certified =
        rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("generate a certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("a server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || serve_tls(name, config, sock));
        }
    });
    TlsBackend { addr, cert }
}

fn serve_tls(name: &str, config: Arc<rustls::ServerConfig>, sock: TcpStream) {
    let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match tls.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
        name.len()
    );
    let _ = tls.write_all(answer.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn client_config(root: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("trust the test certificate");
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// GET / over TLS to `addr` with server name `sni`, trusting only `root`; the body.
/// With `one_byte_writes`, the ClientHello goes out one byte per write.
fn tls_get(
    addr: SocketAddr,
    sni: &str,
    root: &CertificateDer<'static>,
    one_byte_writes: bool,
) -> io::Result<String> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(client_config(root), name).unwrap();
    let mut sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_nodelay(true)?;
    if one_byte_writes {
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello)?;
        }
        for b in &hello {
            sock.write_all(&[*b])?;
            // Pacing, not waiting for anything: each byte leaves in its own segment.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(format!("GET / HTTP/1.1\r\nhost: {sni}\r\n\r\n").as_bytes())?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    Ok(text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// Tioga with a TCP listener routing `*.a.example` to backend a, `b.example` to b.
struct SniSetup {
    a: TlsBackend,
    b: TlsBackend,
    admin: SocketAddr,
    edge: SocketAddr,
    tioga: Tioga,
}

fn sni_setup() -> SniSetup {
    let a = spawn_tls_backend("a", &["api.a.example", "www.a.example"]);
    let b = spawn_tls_backend("b", &["b.example"]);
    let (admin, edge) = (free_addr(), free_addr());
    let yaml = format!(
        "server: {{threads: 2, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/upgrade.sock'}}
admin: {{bind: '{admin}'}}
access_log: {{target: '@DIR@/access.log'}}
pools:
  a: {{backends: ['{}']}}
  b: {{backends: ['{}']}}
listeners:
  edge:
    protocol: tcp
    bind: '{edge}'
    peek_timeout: 1s
    routes:
      - match: {{sni: '*.a.example'}}
        pool: a
      - match: {{sni: [b.example, b2.example]}}
        pool: b
",
        a.addr, b.addr
    );
    let tioga = Tioga::start(&yaml, &[admin, edge]);
    SniSetup {
        a,
        b,
        admin,
        edge,
        tioga,
    }
}

#[test]
fn sni_routes_tls_to_the_backend_named_and_its_certificate_verifies() {
    let SniSetup {
        a,
        b,
        admin,
        edge,
        tioga,
    } = sni_setup();
    assert_eq!(tls_get(edge, "api.a.example", &a.cert, false).unwrap(), "a");
    assert_eq!(tls_get(edge, "www.a.example", &a.cert, false).unwrap(), "a");
    assert_eq!(tls_get(edge, "b.example", &b.cert, false).unwrap(), "b");
    // Backend b's certificate does not name api.a.example: reaching b by mistake
    // would fail verification, so this also shows the route is not a coincidence.
    assert!(tls_get(edge, "api.a.example", &b.cert, false).is_err());
    // No route for this name: the connection is closed, counted and logged.
    assert!(tls_get(edge, "c.example", &a.cert, false).is_err());
    let log = tioga.dir().join("access.log");
    wait_until(Duration::from_secs(5), "the no-route line", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("\"status\":404") && l.contains("\"listener\":\"edge\""))
    });
    // The status page counts each route's connections.
    let status: serde_json::Value =
        serde_json::from_str(&get(admin, "/status").unwrap().text()).unwrap();
    let listener = status["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "edge")
        .unwrap();
    let routes = listener["routes"].as_array().unwrap();
    assert_eq!(routes[0]["name"], "edge[0]");
    assert_eq!(routes[0]["match"], "sni=*.a.example");
    assert_eq!(
        (
            routes[0]["requests"].as_u64(),
            routes[1]["requests"].as_u64()
        ),
        (Some(3), Some(1))
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(
        lines.contains("\"route\":\"edge[0]\"") && lines.contains("\"route\":\"edge[1]\""),
        "{lines}"
    );
}

#[test]
fn a_client_hello_sent_one_byte_per_write_still_routes() {
    let SniSetup {
        a,
        b,
        edge,
        tioga: _tioga,
        ..
    } = sni_setup();
    assert_eq!(tls_get(edge, "api.a.example", &a.cert, true).unwrap(), "a");
    assert_eq!(tls_get(edge, "b.example", &b.cert, true).unwrap(), "b");
}

#[test]
fn a_silent_client_is_closed_after_peek_timeout() {
    let SniSetup {
        edge,
        tioga: _tioga,
        ..
    } = sni_setup();
    let mut sock = TcpStream::connect(edge).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let read = sock.read(&mut buf);
    let waited = start.elapsed();
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "expected a close, got {read:?}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(8), "closed after {waited:?}");
}

#[test]
fn source_routes_by_client_address_without_reading() {
    let (a, b) = (spawn_tcp_backend("a"), spawn_tcp_backend("b"));
    let edge = free_addr();
    let yaml = format!(
        "server: {{threads: 2, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/upgrade.sock'}}
pools:
  a: {{backends: ['{}']}}
  b: {{backends: ['{}']}}
listeners:
  edge:
    protocol: tcp
    bind: '{edge}'
    routes:
      - match: {{source: [127.0.0.5/32, 10.0.0.0/8]}}
        pool: b
      - match: {{sni: never.example}}
        pool: b
      - pool: a
",
        a.addr(),
        b.addr()
    );
    let _tioga = Tioga::start(&yaml, &[edge]);
    // The echo backends greet first: a route decided by address alone must not wait
    // for the client to speak.
    let greeting = |from: &str| {
        let mut s = connect_from(from, edge).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).unwrap();
        String::from_utf8_lossy(&buf).to_string()
    };
    assert_eq!(greeting("127.0.0.5"), "b\n");
    // From elsewhere the sni route is asked first: the name is read (an HTTP request
    // is no ClientHello), then the catch-all takes it.
    let mut s = connect_from("127.0.0.6", edge).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"a\nhello");
}
