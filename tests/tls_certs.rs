//! TLS listeners with several certificates, client certificates and `min_version`:
//! - three certificates on one listener: a client asking for each name gets that
//!   certificate (the presented leaf's names are read with x509-parser), a wildcard
//!   answers for its names, and an unknown name or no SNI gets the first one;
//! - `client_ca` (mTLS): a client without a certificate, or with one from another CA,
//!   gets no answer; with one signed by `client_ca` the request passes, the
//!   `client_cert_header` filter hands the verified subject to the backend, and the
//!   access log line carries it;
//! - `min_version: "1.3"` refuses a TLS 1.2-only client and serves a TLS 1.3 one;
//! - an upgrade (SIGQUIT + `-u`) reads the certificate files again.

mod common;

use common::pki::{inspecting_config, Issued, TestCa};
use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What one TLS exchange gave: the server's leaf certificate and the raw answer.
struct Exchange {
    leaf: CertificateDer<'static>,
    answer: String,
}

/// Connects to `addr` with `config`, asking for `name` (an IP sends no SNI), sends
/// `GET path` and reads the answer to the end.
fn exchange(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    name: &str,
    path: &str,
) -> io::Result<Exchange> {
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    if answer.is_empty() {
        return Err(io::Error::other("no answer"));
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or_else(|| io::Error::other("no server certificate"))?;
    Ok(Exchange {
        leaf,
        answer: String::from_utf8_lossy(&answer).into_owned(),
    })
}

/// The DNS names of a certificate.
fn dns_names(der: &CertificateDer<'_>) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

fn config(listener: &str, backend: SocketAddr, bind: SocketAddr) -> String {
    format!(
        "server: {{threads: 1, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}
access_log: {{target: '@DIR@/access.log'}}
pools:
  web: {{backends: [\"{backend}\"]}}
listeners:
  web:
    protocol: http
    bind: \"{bind}\"
{listener}"
    )
}

#[test]
fn each_name_gets_its_certificate_and_others_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "sni");
    let certs: Vec<Issued> = [
        ("a", &["a.example"][..]),
        ("b", &["*.b.example", "b.example"][..]),
        ("c", &["c.example"][..]),
    ]
    .iter()
    .map(|(file, names)| ca.issue(file, file, names))
    .collect();
    let backend = spawn_http_backend("a");
    let bind = free_addr();
    let listener = format!(
        "    tls:\n      certs:\n{}    routes: [{{pool: web}}]\n",
        certs
            .iter()
            .map(|c| format!(
                "        - {{cert: '{}', key: '{}'}}\n",
                c.cert.display(),
                c.key.display()
            ))
            .collect::<String>()
    );
    let _tioga = Tioga::start(&config(&listener, backend.addr(), bind), &[bind]);

    let tls13 = &[&rustls::version::TLS13][..];
    let presented = |name: &str| {
        let ex = exchange(bind, inspecting_config(tls13), name, "/").unwrap();
        assert!(ex.answer.starts_with("HTTP/1.1 200"), "{}", ex.answer);
        dns_names(&ex.leaf)
    };
    assert_eq!(presented("a.example"), ["a.example"]);
    assert_eq!(presented("x.b.example"), ["*.b.example", "b.example"]);
    assert_eq!(presented("b.example"), ["*.b.example", "b.example"]);
    assert_eq!(presented("c.example"), ["c.example"]);
    assert_eq!(
        presented("unknown.example"),
        ["a.example"],
        "no match: the first"
    );
    assert_eq!(presented("127.0.0.1"), ["a.example"], "no SNI: the first");
    // A client that checks names is satisfied for each of them.
    for name in ["a.example", "y.b.example", "c.example"] {
        let ex = exchange(bind, ca.client_config(), name, "/").unwrap();
        assert!(
            ex.answer.starts_with("HTTP/1.1 200"),
            "{name}: {}",
            ex.answer
        );
    }
}

#[test]
fn client_certificates_signed_by_client_ca_pass_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "server");
    let clients = TestCa::new(dir.path(), "clients");
    let stranger = TestCa::new(dir.path(), "stranger");
    let server = ca.issue("server", "server", &["localhost"]);
    let good = clients.issue("good", "alice", &["alice.clients"]);
    let forged = stranger.issue("forged", "mallory", &["mallory.clients"]);
    let backend = spawn_http_backend("a");
    let bind = free_addr();
    let listener = format!(
        "    tls: {{cert: '{}', key: '{}', client_ca: '{}'}}
    routes:
      - pool: web
        filters: [{{client_cert_header: x-client-cert}}]
",
        server.cert.display(),
        server.key.display(),
        clients.pem.display()
    );
    let tioga = Tioga::start(&config(&listener, backend.addr(), bind), &[bind]);

    let anonymous = exchange(bind, ca.client_config(), "localhost", "/anonymous");
    assert!(anonymous.is_err(), "no client certificate: no answer");
    let mut with_forged = ca.client_config_with_cert(&forged);
    with_forged.alpn_protocols.clear();
    assert!(
        exchange(bind, with_forged, "localhost", "/forged").is_err(),
        "a certificate from another CA: no answer"
    );
    assert_eq!(backend.requests(), 0);

    let ex = exchange(
        bind,
        ca.client_config_with_cert(&good),
        "localhost",
        "/mtls",
    )
    .unwrap();
    assert!(ex.answer.starts_with("HTTP/1.1 200"), "{}", ex.answer);
    assert!(
        ex.answer
            .to_ascii_lowercase()
            .contains("x-seen-h-x-client-cert: cn=alice, o=tioga tests"),
        "the backend sees the verified subject: {}",
        ex.answer
    );
    let log = tioga.dir().join("access.log");
    wait_until(Duration::from_secs(10), "the access log line", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("/mtls"))
    });
    let line = std::fs::read_to_string(&log).unwrap();
    let entry: serde_json::Value = line
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["path"] == "/mtls")
        .unwrap();
    assert_eq!(entry["tls_client"], "CN=alice, O=Tioga tests", "{line}");
}

#[test]
fn min_version_1_3_refuses_tls_1_2_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "v");
    let server = ca.issue("server", "server", &["localhost"]);
    let backend = spawn_http_backend("a");
    let (strict, lenient) = (free_addr(), free_addr());
    let yaml = config(
        &format!(
            "    tls: {{cert: '{cert}', key: '{key}', min_version: \"1.3\"}}
    routes: [{{pool: web}}]
  lenient:
    protocol: http
    bind: \"{lenient}\"
    tls: {{cert: '{cert}', key: '{key}'}}
    routes: [{{pool: web}}]
",
            cert = server.cert.display(),
            key = server.key.display()
        ),
        backend.addr(),
        strict,
    );
    let _tioga = Tioga::start(&yaml, &[strict, lenient]);
    let tls12 = &[&rustls::version::TLS12][..];
    let tls13 = &[&rustls::version::TLS13][..];
    assert!(exchange(strict, inspecting_config(tls12), "localhost", "/").is_err());
    let ex = exchange(strict, inspecting_config(tls13), "localhost", "/").unwrap();
    assert!(ex.answer.starts_with("HTTP/1.1 200"));
    let ex = exchange(lenient, inspecting_config(tls12), "localhost", "/").unwrap();
    assert!(
        ex.answer.starts_with("HTTP/1.1 200"),
        "1.2 is the default minimum"
    );
}

#[test]
fn an_upgrade_reads_the_certificate_files_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "renew");
    let old_cert = ca.issue("site", "old", &["old.example"]);
    let backend = spawn_http_backend("a");
    let bind = free_addr();
    let listener = format!(
        "    tls: {{cert: '{}', key: '{}'}}\n    routes: [{{pool: web}}]\n",
        old_cert.cert.display(),
        old_cert.key.display()
    );
    let mut old = Tioga::start(&config(&listener, backend.addr(), bind), &[bind]);
    let tls13 = &[&rustls::version::TLS13][..];
    let presented = || {
        let ex = exchange(bind, inspecting_config(tls13), "site.example", "/").unwrap();
        dns_names(&ex.leaf)
    };
    assert_eq!(presented(), ["old.example"]);
    // A renewed certificate in the same files, then the operator's upgrade.
    ca.issue("site", "new", &["new.example"]);
    let mut new = old.spawn_again(&["-u"]);
    old.signal("QUIT");
    assert_eq!(old.exit_code(Duration::from_secs(20)), Some(0));
    new.wait_ready(&[bind]);
    assert_eq!(presented(), ["new.example"]);
}
