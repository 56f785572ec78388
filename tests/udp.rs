//! UDP listeners end to end: DNS-like requests and answers through the real binary to
//! real UDP backends (`common::udp`), balanced per flow (a client's address and port).
//!
//! Round robin spreads flows and keeps each on its backend; `consistent_hash` on
//! `client_ip` keeps a client's address on one backend across flows; a backend whose
//! `udp` health check fails gets no new flows; an idle flow is forgotten after
//! `session_timeout` (its access-log line written); filters refuse flows; a full flow
//! table drops new flows only; a 65,507-byte datagram passes; and 100,000 datagrams from 100 clients arrive all, intact, in order.

mod common;

use common::udp::{free_udp_addr, spawn_udp_backend, UdpBackend, UdpClient};
use common::*;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a client waits for one answer.
const ANSWER: Duration = Duration::from_secs(3);

/// A running Tioga with one UDP listener `dns` on pool `dns`, and its admin endpoint.
struct Udp {
    tioga: Tioga,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// Starts Tioga with pool `dns` of `backends` (`pool_extra` appended to the pool, and
/// `listener_extra` to the listener, as YAML lines) and waits until the listener answers
/// (that readiness flow is one flow, from its own client).
fn start(backends: &[&UdpBackend], pool_extra: &str, listener_extra: &str) -> Udp {
    let listen = free_udp_addr();
    let admin = free_addr();
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    let yaml = format!(
        "server: {{threads: 2, pid_file: '@DIR@/t.pid', upgrade_sock: '@DIR@/up.sock'}}
admin: {{bind: \"{admin}\"}}
access_log: {{target: '@DIR@/access.log', format: json}}
pools:
  dns:
    backends: [{}]
{pool_extra}listeners:
  dns:
    protocol: udp
    bind: \"{listen}\"
    pool: dns
{listener_extra}",
        list.join(", ")
    );
    let tioga = Tioga::start(&yaml, &[admin]);
    let ready = UdpClient::new(listen);
    wait_until(
        Duration::from_secs(10),
        "the udp listener to answer",
        || ready.ask(b"ready?", Duration::from_millis(200)).is_ok(),
    );
    Udp {
        tioga,
        listen,
        admin,
    }
}

fn metrics(admin: SocketAddr) -> String {
    get(admin, "/metrics").expect("GET /metrics").text()
}

/// The value of the metric line starting with `name` (labels included), or 0.
fn metric(admin: SocketAddr, name: &str) -> f64 {
    metrics(admin)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn round_robin_spreads_flows_and_keeps_each_on_its_backend() {
    let (a, b) = (spawn_udp_backend("a"), spawn_udp_backend("b"));
    let udp = start(&[&a, &b], "", "");
    let mut per_backend: HashMap<String, usize> = HashMap::new();
    for c in 0..6 {
        let client = UdpClient::new(udp.listen);
        let first = client.ask(format!("q{c}-0").as_bytes(), ANSWER).unwrap();
        for i in 1..5 {
            let name = client.ask(format!("q{c}-{i}").as_bytes(), ANSWER).unwrap();
            assert_eq!(name, first, "client {c}: a flow stays on its backend");
        }
        *per_backend.entry(first).or_default() += 1;
    }
    assert_eq!(per_backend.get("a"), Some(&3), "{per_backend:?}");
    assert_eq!(per_backend.get("b"), Some(&3), "{per_backend:?}");
    // One flow is one socket towards the backend: 7 flows (readiness included).
    assert_eq!(a.sources() + b.sources(), 7);
    let flows = metric(
        udp.admin,
        "tioga_udp_flows_total{listener=\"dns\",pool=\"dns\"}",
    );
    assert_eq!(flows, 7.0);
    let active = metric(udp.admin, "tioga_udp_active_flows{listener=\"dns\"}");
    assert_eq!(active, 7.0);
    let out = metric(
        udp.admin,
        "tioga_udp_datagrams_total{direction=\"out\",listener=\"dns\"}",
    );
    assert_eq!(out, 31.0, "30 answers and the readiness answer");
}

#[test]
fn consistent_hash_keeps_a_client_address_on_its_backend() {
    let (a, b) = (spawn_udp_backend("a"), spawn_udp_backend("b"));
    let udp = start(
        &[&a, &b],
        "    balance: consistent_hash\n    hash_key: client_ip\n",
        "    session_timeout: 200ms\n",
    );
    let mut chosen: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        for i in 1..=16 {
            let ip = format!("127.0.0.{}", i + 10);
            // A fresh socket each time: a new port, so a new flow.
            let client = UdpClient::from_ip(udp.listen, &ip);
            let name = client.ask(b"who?", ANSWER).unwrap();
            if let Some(before) = chosen.insert(ip.clone(), name.clone()) {
                assert_eq!(before, name, "{ip} moved in round {round}");
            }
        }
        // Let every flow expire: the next round's flows are new ones.
        wait_until(Duration::from_secs(10), "flows to expire", || {
            metric(udp.admin, "tioga_udp_active_flows{listener=\"dns\"}") == 0.0
        });
    }
    let used: HashSet<&String> = chosen.values().collect();
    assert_eq!(
        used.len(),
        2,
        "16 addresses spread over both backends: {chosen:?}"
    );
}

#[test]
fn a_backend_down_by_its_udp_health_check_gets_no_new_flows() {
    let (a, b) = (spawn_udp_backend("a"), spawn_udp_backend("b"));
    let udp = start(
        &[&a, &b],
        "    health_check: {type: udp, send: ping, expect: pong, interval: 100ms, timeout: 1s}\n",
        "",
    );
    wait_until(Duration::from_secs(10), "both backends probed", || {
        a.probes() > 0 && b.probes() > 0
    });
    b.set_healthy(false);
    let status = || get(udp.admin, "/status").unwrap().text();
    wait_until(Duration::from_secs(10), "b marked down", || {
        let s: serde_json::Value = serde_json::from_str(&status()).unwrap();
        s["pools"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["address"] == b.addr().to_string() && x["healthy"] == false)
    });
    let before = b.datagrams();
    for c in 0..8 {
        let client = UdpClient::new(udp.listen);
        let name = client.ask(format!("after-{c}").as_bytes(), ANSWER).unwrap();
        assert_eq!(name, "a", "new flow {c} went to the backend marked down");
    }
    assert_eq!(b.datagrams(), before);
    let up = metric(
        udp.admin,
        &format!("tioga_backend_up{{backend=\"{}\",pool=\"dns\"}}", b.addr()),
    );
    assert_eq!(up, 0.0);
}

#[test]
fn an_idle_flow_is_forgotten_after_session_timeout_with_its_log_line() {
    let a = spawn_udp_backend("a");
    let udp = start(&[&a], "", "    session_timeout: 500ms\n");
    let client = UdpClient::new(udp.listen);
    let started = Instant::now();
    assert_eq!(client.ask(b"first", ANSWER).unwrap(), "a");
    assert_eq!(client.ask(b"second", ANSWER).unwrap(), "a");
    let sources = a.sources();
    wait_until(Duration::from_secs(10), "the flows to be forgotten", || {
        metric(udp.admin, "tioga_udp_active_flows{listener=\"dns\"}") == 0.0
    });
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "forgotten before session_timeout"
    );
    let log = udp.tioga.dir().join("access.log");
    let me = client.local_addr().to_string();
    let line = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["client"] == me.as_str())
    };
    wait_until(Duration::from_secs(5), "the flow's access-log line", || {
        line().is_some()
    });
    let line = line().unwrap();
    assert_eq!(line["protocol"], "udp");
    assert_eq!(line["listener"], "dns");
    assert_eq!(line["pool"], "dns");
    assert_eq!(line["backend"], a.addr().to_string());
    assert_eq!(line["bytes_in"], 11, "first + second");
    assert_eq!(line["bytes_out"], 15, "a|first + a|second");
    // The same client again: a new flow, so a new socket towards the backend.
    assert_eq!(client.ask(b"third", ANSWER).unwrap(), "a");
    assert_eq!(a.sources(), sources + 1);
}

#[test]
fn filters_refuse_flows_and_the_refusals_are_counted() {
    let a = spawn_udp_backend("a");
    let udp = start(
        &[&a],
        "",
        "    filters:\n      - deny: [127.0.0.66]\n      - rate_limit: {rate: 3, per: 1m}\n",
    );
    // The readiness flow used one of the three flows a minute.
    let denied = UdpClient::from_ip(udp.listen, "127.0.0.66");
    denied.send(b"let me in").unwrap();
    assert!(denied.recv(Duration::from_millis(300)).is_err());
    let mut answered = 0;
    for _ in 0..4 {
        if UdpClient::new(udp.listen)
            .ask(b"q", Duration::from_millis(500))
            .is_ok()
        {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 2,
        "3 flows a minute from 127.0.0.1, readiness included"
    );
    let refused = metric(
        udp.admin,
        "tioga_udp_dropped_datagrams_total{listener=\"dns\",reason=\"refused\"}",
    );
    assert_eq!(refused, 3.0, "the denied address and two over the rate");
}

#[test]
fn a_full_flow_table_drops_new_flows_and_keeps_the_others() {
    let a = spawn_udp_backend("a");
    let udp = start(&[&a], "", "    max_flows: 2\n");
    // The readiness flow is the first of the two.
    let second = UdpClient::new(udp.listen);
    assert_eq!(second.ask(b"in", ANSWER).unwrap(), "a");
    let third = UdpClient::new(udp.listen);
    third.send(b"no room").unwrap();
    assert!(third.recv(Duration::from_millis(300)).is_err());
    assert_eq!(second.ask(b"still in", ANSWER).unwrap(), "a");
    let full = metric(
        udp.admin,
        "tioga_udp_dropped_datagrams_total{listener=\"dns\",reason=\"flow_table_full\"}",
    );
    assert_eq!(full, 1.0);
}

#[test]
fn the_largest_datagram_passes_both_ways() {
    let a = spawn_udp_backend("a");
    let udp = start(&[&a], "", "");
    let client = UdpClient::new(udp.listen);
    let big: Vec<u8> = (0..65_507u32).map(|i| (i % 251) as u8).collect();
    client.send(&big).unwrap();
    assert_eq!(client.recv(ANSWER).unwrap(), big);
}

/// One test datagram: client, sequence number, filler, and an FNV-1a of all that.
fn datagram(client: u16, seq: u32) -> Vec<u8> {
    let mut x = (u64::from(client) << 32 | u64::from(seq)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = 16 + (x % 1200) as usize;
    let mut d = Vec::with_capacity(len + 8);
    d.extend_from_slice(&client.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    while d.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d.push(x as u8);
    }
    let mut sum = Fnv::default();
    sum.update(&d);
    d.extend_from_slice(&sum.0.to_be_bytes());
    d
}

/// The client and sequence number of an intact datagram, else `None`.
fn check(d: &[u8]) -> Option<(u16, u32)> {
    let (body, sum) = d.split_at(d.len().checked_sub(8)?);
    let mut fnv = Fnv::default();
    fnv.update(body);
    (sum == fnv.0.to_be_bytes() && body.len() >= 6).then(|| {
        (
            u16::from_be_bytes([body[0], body[1]]),
            u32::from_be_bytes([body[2], body[3], body[4], body[5]]),
        )
    })
}

#[derive(Debug, Default)]
struct Tally {
    received: usize,
    lost: usize,
    corrupted: usize,
    reordered: usize,
}

/// Client `id` sends `n` datagrams keeping up to `window` unanswered, and checks what
/// comes back.
fn run_client(to: SocketAddr, id: u16, n: u32, window: u32) -> Tally {
    let client = UdpClient::new(to);
    let mut t = Tally::default();
    let (mut sent, mut next_expected) = (0u32, 0u32);
    while next_expected < n {
        while sent < n && sent - next_expected < window {
            client.send(&datagram(id, sent)).unwrap();
            sent += 1;
        }
        let Ok(answer) = client.recv(ANSWER) else {
            // Whatever is outstanding is lost; go on with the rest.
            t.lost += (sent - next_expected) as usize;
            next_expected = sent;
            continue;
        };
        let payload = match answer.iter().position(|&b| b == b'|') {
            Some(i) => &answer[i + 1..],
            None => &answer[..],
        };
        match check(payload) {
            Some((who, seq)) if who == id && seq == next_expected => {
                t.received += 1;
                next_expected += 1;
            }
            Some((who, seq)) if who == id && seq > next_expected => {
                // Skipped some: they are lost or come later (reordered).
                t.received += 1;
                t.reordered += 1;
                next_expected = seq + 1;
            }
            Some((who, _)) if who == id => {
                t.received += 1;
                t.reordered += 1;
            }
            _ => t.corrupted += 1,
        }
    }
    t.lost = (n as usize).saturating_sub(t.received);
    t
}

#[test]
fn a_hundred_thousand_datagrams_from_a_hundred_clients_arrive_intact_and_in_order() {
    let (a, b) = (spawn_udp_backend("a"), spawn_udp_backend("b"));
    let udp = start(&[&a, &b], "", "");
    let (clients, per_client, window) = (100u16, 1000u32, 8u32);
    let started = Instant::now();
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|id| s.spawn(move || run_client(udp.listen, id, per_client, window)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = started.elapsed();
    let total = |f: fn(&Tally) -> usize| tallies.iter().map(f).sum::<usize>();
    let (received, lost, corrupted, reordered) = (
        total(|t| t.received),
        total(|t| t.lost),
        total(|t| t.corrupted),
        total(|t| t.reordered),
    );
    eprintln!(
        "udp: {} datagrams from {clients} clients (window {window}) in {took:?}: \
         {received} answered, {lost} lost, {corrupted} corrupted, {reordered} reordered",
        u32::from(clients) * per_client
    );
    assert_eq!((lost, corrupted, reordered), (0, 0, 0));
    assert_eq!(received, 100_000);
    assert_eq!(a.datagrams() + b.datagrams(), 100_001, "readiness included");
    let dropped = metrics(udp.admin)
        .lines()
        .filter(|l| l.starts_with("tioga_udp_dropped_datagrams_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert_eq!(dropped, 0.0);
}
