//! TLS termination on an http listener (`tls: {cert, key}`): a certificate for
//! `localhost` is made at test time (rcgen), an HTTPS request made with rustls, trusting
//! only that certificate, is proxied to a plain HTTP backend, and the backend sees
//! `X-Forwarded-Proto: https` (and `http` through a plain listener of the same config).
//! A client that leaves before its ClientHello is logged at INFO, not ERROR.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `GET path` over TLS to `addr` (SNI and `Host`: localhost), trusting only
/// `root`; returns the status and the headers of the answer, names lowercased.
fn https_get(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    path: &str,
) -> (u16, Vec<(String, String)>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .expect("TLS handshake and request");
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // A server may close without close_notify once the answer is complete.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => panic!("reading the answer failed: {e}"),
    }
    parse_head(&answer)
}

/// The status and headers of a raw HTTP/1.1 answer.
fn parse_head(answer: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(answer);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// The value of header `name` (lowercase) in `headers`.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn https_is_terminated_and_proxied_as_forwarded_https() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a certificate");
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    let a = spawn_http_backend("a");
    let (secure, plain) = (free_addr(), free_addr());
    let yaml = format!(
        "server:
  threads: 1
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
pools:
  web:
    backends: [\"{a}\"]
listeners:
  secure:
    protocol: http
    bind: \"{secure}\"
    tls:
      cert: {cert}
      key: {key}
    routes:
      - pool: web
  plain:
    protocol: http
    bind: \"{plain}\"
    routes:
      - pool: web
",
        a = a.addr(),
        cert = cert.display(),
        key = key.display()
    );
    let tioga = Tioga::start(&yaml, &[secure, plain]);

    let (status, headers) = https_get(secure, certified.cert.der(), "/over/tls?x=1");
    assert_eq!(status, 200, "{headers:?}");
    assert_eq!(header(&headers, "x-backend"), Some("a"));
    assert_eq!(header(&headers, "x-seen-path"), Some("/over/tls?x=1"));
    assert_eq!(header(&headers, "x-seen-host"), Some("localhost"));
    assert_eq!(
        header(&headers, "x-seen-h-x-forwarded-proto"),
        Some("https")
    );
    assert_eq!(
        header(&headers, "x-seen-h-x-forwarded-host"),
        Some("localhost")
    );

    let resp = get(plain, "/").unwrap();
    assert_eq!(resp.header("x-seen-h-x-forwarded-proto"), Some("http"));

    // A client that connects and leaves without a ClientHello (a scanner, a TCP health
    // check) fails its handshake by its own doing: INFO in Tioga's log, not ERROR.
    drop(TcpStream::connect_timeout(&secure, IO_TIMEOUT).expect("connect"));
    let info = " INFO  pingora_core::services::listening] Downstream handshake error";
    wait_until(IO_TIMEOUT, "the abandoned handshake in the log", || {
        tioga.log().contains(info)
    });
    let log = tioga.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}
