//! The PROXY protocol with real peers (Debian's haproxy and nginx, started here on
//! ephemeral ports and killed by PID).
//!
//! Receiving: HAProxy in front of Tioga sends `send-proxy-v2` / `send-proxy` from
//! 127.0.0.2, the one trusted sender; clients connect to HAProxy from 127.0.0.5, so the
//! backend and Tioga's access log showing 127.0.0.5 proves the header was used (plain
//! HTTP, TLS and TCP listeners). Anything else (an untrusted sender, a trusted one
//! without a header or with a garbled one) is closed before the backend sees a byte;
//! a trusted header's address is what `deny` judges.
//!
//! Sending: Tioga in front of nginx (`listen … proxy_protocol`) and of HAProxy
//! (`accept-proxy`): those peers log the original client address.

mod common;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a `GET path` (HTTP/1.1, close) on `stream`; the raw answer.
fn http_get_on(mut stream: impl Read + Write, path: &str) -> io::Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&answer).to_string())
}

/// `GET path` to `to` from the loopback address `from`.
fn get_from(from: &str, to: SocketAddr, path: &str) -> io::Result<String> {
    let s = connect_from(from, to)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    http_get_on(s, path)
}

/// `GET path` over TLS (server name localhost, trusting only `root`) to `to` from
/// `from`.
fn https_get_from(
    from: &str,
    to: SocketAddr,
    root: &CertificateDer<'static>,
    path: &str,
) -> io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let s = connect_from(from, to)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    http_get_on(rustls::StreamOwned::new(conn, s), path)
}

/// The value of header `name` (lowercase) in a raw answer.
fn header(answer: &str, name: &str) -> Option<String> {
    answer
        .split("\r\n\r\n")
        .next()?
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// Tioga behind HAProxy: plain HTTP, TLS and TCP listeners trusting 127.0.0.2 only.
struct Behind {
    backend: HttpBackend,
    admin: SocketAddr,
    web: SocketAddr,
    cert: CertificateDer<'static>,
    /// HAProxy frontends: plain HTTP with v2 and v1, TLS with v2, TCP with v1.
    http_v2: SocketAddr,
    http_v1: SocketAddr,
    tls_v2: SocketAddr,
    tcp_v1: SocketAddr,
    tioga: Tioga,
    _haproxy: PeerProcess,
    _tls_files: tempfile::TempDir,
    _echo: TcpBackend,
}

fn behind_haproxy() -> Behind {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    let backend = spawn_http_backend("a");
    let echo = spawn_tcp_backend("e");
    let (admin, web, secure, raw) = (free_addr(), free_addr(), free_addr(), free_addr());
    let yaml = format!(
        "server: {{threads: 2, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/upgrade.sock'}}
admin: {{bind: '{admin}'}}
access_log: {{target: '@DIR@/access.log'}}
pools:
  app: {{backends: ['{}']}}
  echo: {{backends: ['{}']}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    proxy_protocol: {{trusted: [127.0.0.2]}}
    routes: [{{pool: app, filters: [{{deny: [198.51.100.0/24]}}]}}]
  secure:
    protocol: http
    bind: '{secure}'
    tls: {{cert: '{}', key: '{}'}}
    proxy_protocol: {{trusted: [127.0.0.2/32]}}
    routes: [{{pool: app}}]
  raw:
    protocol: tcp
    bind: '{raw}'
    proxy_protocol: {{trusted: [127.0.0.2]}}
    pool: echo
",
        backend.addr(),
        echo.addr(),
        cert.display(),
        key.display()
    );
    let tioga = Tioga::start(&yaml, &[web, secure, raw]);
    let (http_v2, http_v1, tls_v2, tcp_v1) = (free_addr(), free_addr(), free_addr(), free_addr());
    let config = format!(
        "global
    pidfile @DIR@/haproxy.pid
defaults
    mode tcp
    timeout connect 5s
    timeout client 20s
    timeout server 20s
listen http_v2
    bind {http_v2}
    server tioga {web} send-proxy-v2 source 127.0.0.2
listen http_v1
    bind {http_v1}
    server tioga {web} send-proxy source 127.0.0.2
listen tls_v2
    bind {tls_v2}
    server tioga {secure} send-proxy-v2 source 127.0.0.2
listen tcp_v1
    bind {tcp_v1}
    server tioga {raw} send-proxy source 127.0.0.2
"
    );
    let haproxy = PeerProcess::start(
        "haproxy",
        "haproxy.cfg",
        &config,
        &["-f", "@CONFIG@", "-db"],
        &[http_v2, http_v1, tls_v2, tcp_v1],
    );
    Behind {
        backend,
        admin,
        web,
        cert: certified.cert.der().clone(),
        http_v2,
        http_v1,
        tls_v2,
        tcp_v1,
        tioga,
        _haproxy: haproxy,
        _tls_files: files,
        _echo: echo,
    }
}

/// Tioga's access-log line (JSON) holding every one of `needles`, once it is there.
fn access_log_line(tioga: &Tioga, needles: &[&str]) -> serde_json::Value {
    let log = tioga.dir().join("access.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let find = |text: &str| {
        text.lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
    };
    wait_until(
        Duration::from_secs(5),
        &format!("an access-log line with {needles:?}"),
        || find(&read()).is_some(),
    );
    serde_json::from_str(&find(&read()).unwrap()).unwrap()
}

#[test]
fn haproxy_send_proxy_v2_and_v1_carry_the_client_address_to_http_and_tcp() {
    let b = behind_haproxy();
    for (front, path) in [(b.http_v2, "/via-v2"), (b.http_v1, "/via-v1")] {
        let answer = get_from("127.0.0.5", front, path).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(
            header(&answer, "x-seen-h-x-forwarded-for").as_deref(),
            Some("127.0.0.5"),
            "{path}: {answer}"
        );
        let line = access_log_line(&b.tioga, &[path]);
        let client = line["client"].as_str().unwrap();
        assert!(client.starts_with("127.0.0.5:"), "{path}: {line}");
    }

    // A TLS listener: the header comes before the handshake.
    let answer = https_get_from("127.0.0.5", b.tls_v2, &b.cert, "/via-tls").unwrap();
    assert_eq!(
        header(&answer, "x-seen-h-x-forwarded-for").as_deref(),
        Some("127.0.0.5"),
        "{answer}"
    );
    assert_eq!(
        header(&answer, "x-seen-h-x-forwarded-proto").as_deref(),
        Some("https")
    );
    let line = access_log_line(&b.tioga, &["/via-tls"]);
    assert!(
        line["client"].as_str().unwrap().starts_with("127.0.0.5:"),
        "{line}"
    );

    // A TCP listener: the echo backend greets, and the access log names the client.
    let mut s = connect_from("127.0.0.5", b.tcp_v1).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut greeting = [0u8; 2];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"e\n");
    drop(s);
    let line = access_log_line(
        &b.tioga,
        &["\"client\":\"127.0.0.5:", "\"protocol\":\"tcp\""],
    );
    assert_eq!(line["protocol"], "tcp", "{line}");
    assert_eq!(line["listener"], "raw", "{line}");
}

/// `tioga_proxy_protocol_refused_total` of listener web for `reason`.
fn refused(admin: SocketAddr, reason: &str) -> u64 {
    let text = get(admin, "/metrics").unwrap().text();
    let series =
        format!("tioga_proxy_protocol_refused_total{{listener=\"web\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn untrusted_missing_or_garbled_headers_are_closed_unseen() {
    let b = behind_haproxy();
    let before = b.backend.requests();
    let (untrusted, invalid) = (refused(b.admin, "untrusted"), refused(b.admin, "invalid"));
    let closed = |from: &str, first: &[u8]| {
        let mut s = connect_from(from, b.web).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = s.write_all(first);
        // Closed without an answer (an EOF, or a reset for the unread request).
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "from {from}: got an answer: {}",
            String::from_utf8_lossy(&answer)
        );
    };
    let request = b"GET /sneaky HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";
    let mut forged = b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 80\r\n".to_vec();
    forged.extend_from_slice(request);
    // A header from an untrusted sender.
    closed("127.0.0.1", &forged);
    closed("127.0.0.6", &forged);
    // The trusted sender without a header, and with a garbled one.
    closed("127.0.0.2", request);
    let mut garbled = b"PROXY TCP4 203.0.113.9 nonsense 4000 80\r\n".to_vec();
    garbled.extend_from_slice(request);
    closed("127.0.0.2", &garbled);
    // The same forged header from the trusted sender is believed.
    let mut s = connect_from("127.0.0.2", b.web).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 80\r\n")
        .unwrap();
    let answer = http_get_on(s, "/trusted").unwrap();
    assert_eq!(
        header(&answer, "x-seen-h-x-forwarded-for").as_deref(),
        Some("203.0.113.9"),
        "{answer}"
    );
    // `deny` judges the carried address too.
    let mut s = connect_from("127.0.0.2", b.web).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 80\r\n")
        .unwrap();
    let answer = http_get_on(s, "/denied").unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(
        b.backend.requests(),
        before + 1,
        "only the trusted request arrived"
    );
    assert_eq!(refused(b.admin, "untrusted"), untrusted + 2);
    assert_eq!(refused(b.admin, "invalid"), invalid + 2);
    let log = std::fs::read_to_string(b.tioga.dir().join("access.log")).unwrap_or_default();
    assert!(!log.contains("/sneaky"), "{log}");
}

/// nginx answering with the address its PROXY header carried, and logging it. One
/// process (`master_process off`): the handle stops it by its PID, and a master's
/// workers would outlive a SIGKILL, holding the port.
fn nginx_with_proxy_protocol() -> (PeerProcess, SocketAddr) {
    let listen = free_addr();
    let config = format!(
        "master_process off;
daemon off;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format pp '$proxy_protocol_addr $remote_addr \"$request\"';
    access_log @DIR@/access.log pp;
    client_body_temp_path @DIR@/body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    server {{
        listen {listen} proxy_protocol;
        location / {{ return 200 \"nginx saw $proxy_protocol_addr\\n\"; }}
    }}
}}
"
    );
    let nginx = PeerProcess::start(
        "nginx",
        "nginx.conf",
        &config,
        &["-p", "@DIR@", "-e", "@DIR@/startup.log", "-c", "@CONFIG@"],
        &[listen],
    );
    (nginx, listen)
}

#[test]
fn tioga_sends_proxy_v1_and_v2_to_nginx_per_client_connection() {
    let (nginx, ng) = nginx_with_proxy_protocol();
    let web = free_addr();
    let yaml = format!(
        "server: {{threads: 2, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/upgrade.sock'}}
pools:
  ng2:
    backends: ['{ng}']
    proxy_protocol: v2
    health_check: {{type: http, path: /hc2, interval: 200ms}}
  ng1:
    backends: ['{ng}']
    proxy_protocol: v1
    health_check: {{type: http, path: /hc1, interval: 200ms}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    routes:
      - match: {{path_prefix: /v1}}
        pool: ng1
      - pool: ng2
"
    );
    let _tioga = Tioga::start(&yaml, &[web]);
    // Health checks send a header without addresses (v2 LOCAL, v1 UNKNOWN), which
    // nginx accepts: it answers them, and the backend stays up.
    wait_until(
        Duration::from_secs(10),
        "two health checks of each pool",
        || {
            let log = nginx.read("access.log");
            ["/hc1", "/hc2"].iter().all(|path| {
                log.lines()
                    .filter(|l| l.contains(&format!("\"GET {path} ")))
                    .count()
                    >= 2
            })
        },
    );
    // Clients from different addresses, one after another: each gets a backend
    // connection with its own header, never one opened for another client.
    for (from, path) in [
        ("127.0.0.5", "/v2/a"),
        ("127.0.0.6", "/v2/b"),
        ("127.0.0.5", "/v1/c"),
        ("127.0.0.7", "/v1/d"),
    ] {
        let answer = get_from(from, web, path).unwrap();
        assert!(
            answer.ends_with(&format!("nginx saw {from}\n")),
            "{path}: {answer}"
        );
        wait_until(Duration::from_secs(5), "nginx's access-log line", || {
            nginx
                .read("access.log")
                .lines()
                .any(|l| l.starts_with(&format!("{from} 127.0.0.1 \"GET {path} ")))
        });
    }
}

#[test]
fn tioga_tcp_sends_proxy_v1_and_v2_to_haproxy_accept_proxy() {
    let backend = spawn_http_backend("behind-haproxy");
    let (hp1, hp2) = (free_addr(), free_addr());
    let config = format!(
        "global
    pidfile @DIR@/haproxy.pid
    log stdout format raw local0
defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 5s
    timeout client 20s
    timeout server 20s
frontend v1
    bind {hp1} accept-proxy
    default_backend app
frontend v2
    bind {hp2} accept-proxy
    default_backend app
backend app
    server a {}
",
        backend.addr()
    );
    let haproxy = PeerProcess::start(
        "haproxy",
        "haproxy.cfg",
        &config,
        &["-f", "@CONFIG@", "-db"],
        &[hp1, hp2],
    );
    let (raw1, raw2) = (free_addr(), free_addr());
    let yaml = format!(
        "server: {{threads: 2, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/upgrade.sock'}}
pools:
  hp1: {{backends: ['{hp1}'], proxy_protocol: v1}}
  hp2: {{backends: ['{hp2}'], proxy_protocol: v2}}
listeners:
  raw1: {{protocol: tcp, bind: '{raw1}', pool: hp1}}
  raw2: {{protocol: tcp, bind: '{raw2}', pool: hp2}}
"
    );
    let _tioga = Tioga::start(&yaml, &[raw1, raw2]);
    for (from, listener, path) in [
        ("127.0.0.5", raw1, "/tcp-v1"),
        ("127.0.0.6", raw2, "/tcp-v2"),
    ] {
        let answer = get_from(from, listener, path).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        assert_eq!(
            header(&answer, "x-seen-h-x-forwarded-for").as_deref(),
            Some(from),
            "{path}: {answer}"
        );
        wait_until(Duration::from_secs(5), "HAProxy's log line", || {
            haproxy
                .output()
                .lines()
                .any(|l| l.contains(&format!("{from}:")) && l.contains(path))
        });
    }
}
