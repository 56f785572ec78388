//! `tioga explain tcp://HOST:PORT`, `GET /explain?url=tcp://…` and `tcp://` config
//! `tests:` through the real binary: for 300 generated connections (a real rustls
//! ClientHello with a random server name, or plain bytes without one, from a random
//! 127.0.0.x), the route `explain --json` names is the route the proxy took (read from
//! its access log, matched by client address), and so is the `consistent_hash`
//! backend; the admin endpoint's JSON is the command's; a failing test is a config
//! error at `tests[i]` with its line, expected against actual.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tioga");

/// Routes by name and address together, by name alone, by address alone (to a hashed
/// pool), no catch-all (so some connections get none), plus a listener with one pool.
fn config(
    edge: SocketAddr,
    single: SocketAddr,
    admin: SocketAddr,
    a: SocketAddr,
    b: SocketAddr,
) -> String {
    format!(
        "admin: {{bind: '{admin}'}}
access_log: {{target: '@DIR@/access.log', format: json}}
pools:
  a: {{backends: ['{a}']}}
  b: {{backends: ['{b}']}}
  hashed: {{backends: ['{a}', '{b}'], balance: consistent_hash, hash_key: client_ip}}
listeners:
  edge:
    protocol: tcp
    bind: '{edge}'
    routes:
      - match: {{sni: '*.a.example', source: [127.0.0.2/32, 127.0.0.3]}}
        pool: a
      - match: {{sni: [b.example, '*.b.example']}}
        pool: b
      - match: {{source: 127.0.0.4/31}}
        pool: hashed
      - match: {{sni: c.example}}
        pool: a
  single:
    protocol: tcp
    bind: '{single}'
    pool: b
"
    )
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let n = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        from[(n >> 33) as usize % from.len()]
    }
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects from `from` to `to`, sends a ClientHello naming `sni` (or, for "", plain
/// bytes), half-closes and reads until Tioga closes; the client address.
/// One generated connection; returns its client address and the socket, which the caller
/// keeps open so that no later connection reuses the address (an access-log line is
/// keyed by it). Where Tioga closes first, the client's port would be free at once.
fn connect(
    tls: &Arc<rustls::ClientConfig>,
    from: &str,
    to: SocketAddr,
    sni: &str,
) -> (String, TcpStream) {
    let mut s = connect_from(from, to).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let client = s.local_addr().unwrap().to_string();
    if sni.is_empty() {
        s.write_all(b"plain bytes\n").unwrap();
    } else {
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(tls.clone(), name).unwrap();
        while conn.wants_write() {
            conn.write_tls(&mut s).unwrap();
        }
    }
    // Closed (no route) before this, the half-close may fail: that is fine.
    let _ = s.shutdown(Shutdown::Write);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    (client, s)
}

/// `tioga -c CONFIG explain …`: exit code and stdout (stderr when stdout is empty).
fn explain_cli(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("-c")
        .arg(config)
        .arg("explain")
        .args(args)
        .output()
        .expect("run tioga explain");
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

fn explain_json(config: &std::path::Path, url: &str, sni: &str, from: &str) -> (i32, Value) {
    let args = ["--json", url, "--sni", sni, "--from", from];
    let (code, out) = explain_cli(config, &args);
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"));
    (code, json)
}

fn explain_admin(admin: SocketAddr, url: &str, sni: &str, from: &str) -> Value {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("url", url)
        .append_pair("sni", sni)
        .append_pair("from", from);
    let resp = get(admin, &format!("/explain?{}", q.finish())).expect("GET /explain");
    assert_eq!(resp.status, 200, "{}", resp.text());
    serde_json::from_str(&resp.text()).expect("explain JSON")
}

#[test]
fn explain_agrees_with_the_proxy_on_300_generated_connections() {
    let (a, b) = (spawn_tcp_backend("a"), spawn_tcp_backend("b"));
    let (edge, single, admin) = (free_addr(), free_addr(), free_addr());
    let tioga = Tioga::start(
        &config(edge, single, admin, a.addr(), b.addr()),
        &[edge, single, admin],
    );
    // One Tioga for both checks: a second, started alongside, could lose its
    // free port to the 300 clients' ephemeral ones.
    explains_each_failed_condition(&tioga, (edge, single, admin), (a.addr(), b.addr()));
    let tls = client_config();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let names = [
        "x.a.example",
        "a.example",
        "Y.Z.A.EXAMPLE",
        "b.example",
        "q.b.example",
        "c.example",
        "other.test",
        "",
    ];
    let sources = [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
    ];
    let generated: Vec<(SocketAddr, &str, &str)> = (0..300)
        .map(|i| {
            let to = if i % 10 == 9 { single } else { edge };
            (to, rng.pick(&names), rng.pick(&sources))
        })
        .collect();
    let (clients, _open): (Vec<String>, Vec<TcpStream>) = generated
        .iter()
        .map(|(to, sni, from)| connect(&tls, from, *to, sni))
        .unzip();

    let log_path = tioga.dir().join("access.log");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Keyed by client address: the start-up's readiness probes are logged too.
    let ours = |log: &str| -> BTreeMap<String, Value> {
        log.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON log line"))
            .map(|v| (v["client"].as_str().unwrap_or_default().to_string(), v))
            .filter(|(client, _)| clients.contains(client))
            .collect()
    };
    wait_until(Duration::from_secs(30), "300 access-log lines", || {
        ours(&read_log()).len() >= 300
    });
    let logged = ours(&read_log());
    assert_eq!(logged.len(), 300, "one line per client address");

    let config = tioga.config_path().to_path_buf();
    let explained: Vec<(i32, Value)> = std::thread::scope(|s| {
        let chunks: Vec<_> = generated
            .chunks(75)
            .map(|chunk| {
                let config = &config;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(to, sni, from)| {
                            explain_json(config, &format!("tcp://{to}"), sni, from)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut seen = std::collections::BTreeSet::new();
    for (i, (((code, json), (to, sni, from)), client)) in
        explained.iter().zip(&generated).zip(&clients).enumerate()
    {
        let what = format!("connection {i}: to {to}, sni {sni:?}, from {from}");
        let line = &logged[client];
        assert_eq!(
            json["route"], line["route"],
            "{what}: explain {json} vs the proxy {line}"
        );
        assert_eq!(
            json["pool"], line["pool"],
            "{what}: explain {json} vs the proxy {line}"
        );
        if json["pool"] == "hashed" {
            assert_eq!(json["backend"], line["backend"], "{what}: {json} vs {line}");
        }
        let routed = !json["pool"].is_null();
        assert_eq!(*code, if routed { 0 } else { 3 }, "{what}");
        if !routed {
            assert_eq!(json["status"], 404, "{what}");
            assert_eq!(line["status"], 404, "{what}");
        }
        seen.insert(format!("{} {}", json["route"], json["pool"]));
        if i % 4 == 0 {
            let url = format!("tcp://{to}");
            assert_eq!(
                &explain_admin(admin, &url, sni, from),
                json,
                "{what}: GET /explain"
            );
        }
    }
    // Every route, the pool-only listener and no route.
    assert_eq!(seen.len(), 6, "{seen:?}");
}

/// The route, failed conditions and hash backend of a few connections, for a person
/// and in JSON; the errors of a request asked the wrong way.
fn explains_each_failed_condition(
    tioga: &Tioga,
    (edge, single, admin): (SocketAddr, SocketAddr, SocketAddr),
    (a, b): (SocketAddr, SocketAddr),
) {
    let conf = tioga.config_path();
    // The URL's host is the server name sent, as a TLS client sends it.
    let url = format!("tcp://x.a.example:{}", edge.port());
    let (code, out) = explain_cli(conf, &["--json", &url, "--from", "127.0.0.4"]);
    assert_eq!(code, 0, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["route"], "edge[2]");
    assert_eq!(json["pool"], "hashed");
    let failed: Vec<&str> = json["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["failed"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(failed, ["source", "sni", "-"]);
    let backend = json["backend"].as_str().unwrap();
    assert!([a, b].map(|x| x.to_string()).contains(&backend.to_string()));

    // For a person, and the no-route exit code.
    let url = format!("tcp://{edge}");
    let (code, text) = explain_cli(
        conf,
        &[&url, "--sni", "nothing.test", "--from", "127.0.0.9"],
    );
    assert_eq!(code, 3, "{text}");
    assert!(
        text.starts_with(&format!(
            "{url} with server name nothing.test from 127.0.0.9 on listener edge\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("edge[0]          no match: source\n"),
        "{text}"
    );
    assert!(text.contains("edge[1]          no match: sni\n"), "{text}");
    assert!(
        text.ends_with(
            "edge[3]          no match: sni\nno route: closed (404 in the access log)\n"
        ),
        "{text}"
    );
    let (code, text) = explain_cli(conf, &[&format!("tcp://localhost:{}", single.port())]);
    assert_eq!((code, text.ends_with("\npool b\n")), (0, true), "{text}");

    // Asked the wrong way: exit 2 and why.
    let (code, text) = explain_cli(conf, &[&url, "-H", "host: x"]);
    assert_eq!(
        (code, text.trim_end()),
        (
            2,
            "tioga explain: -H applies to HTTP requests, not to tcp:// connections"
        )
    );
    let (code, text) = explain_cli(conf, &["GET", &format!("http://{edge}/"), "--json"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(&format!(
            "port {} is the tcp listener edge's: ask with tcp://HOST:{}",
            edge.port(),
            edge.port()
        )),
        "{text}"
    );
    let resp = get(
        admin,
        &format!("/explain?url=tcp://127.0.0.1:{}&sni=b.example", edge.port()),
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let json: Value = serde_json::from_str(&resp.text()).unwrap();
    assert_eq!(
        (json["route"].as_str(), json["pool"].as_str()),
        (Some("edge[1]"), Some("b"))
    );
}

fn tests_config(expect_second: &str) -> String {
    format!(
        "pools:
  a: {{backends: ['127.0.0.1:9']}}
  b: {{backends: ['127.0.0.1:9']}}
listeners:
  edge:
    protocol: tcp
    bind: '127.0.0.1:{port}'
    routes:
      - match: {{sni: '*.a.example'}}
        pool: a
      - match: {{source: 10.0.0.0/8}}
        pool: b
tests:
  - request: tcp://127.0.0.1:{port}
    sni: x.a.example
    expect: {{route: 'edge[0]', pool: a}}
  - request: tcp://127.0.0.1:{port}
    from: 10.1.2.3
    expect: {expect_second}
  - request: tcp://edge.example:{port}
    expect: {{status: 404}}
",
        port = free_port()
    )
}

#[test]
fn tcp_config_tests_pass_and_fail_through_dash_t() {
    let (code, err) = check_config(&tests_config("{route: 'edge[1]', pool: b}"));
    assert_eq!(code, 0, "{err}");

    let yaml = tests_config("{route: 'edge[0]'}");
    let port = yaml
        .split("bind: '127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let (code, err) = check_config(&yaml);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{CONFIG_FILE}:17: tests[1]: tcp://127.0.0.1:{port}: expected route edge[0], got route edge[1], pool b, proxied"
        )),
        "{err}"
    );
    assert!(err.contains("1 problem(s)"), "{err}");
}
