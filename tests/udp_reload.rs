//! A reload in place (SIGHUP) and UDP flows: a reload that leaves a UDP listener's pool
//! as it was keeps every flow on its backend, with the same upstream socket (no new
//! flow is counted, the backends see no new source address); a reload that changes
//! the pool moves each flow to the new pool at its next datagram, and every request
//! is still answered.

mod common;

use common::udp::{free_udp_addr, spawn_udp_backend, UdpBackend, UdpClient};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

const ANSWER: Duration = Duration::from_secs(3);

fn config(listen: SocketAddr, admin: SocketAddr, pool: &str, extra_pool: &str) -> String {
    format!(
        "admin: {{bind: \"{admin}\"}}
pools:
  dns:
    backends: [{pool}]
{extra_pool}listeners:
  dns:
    protocol: udp
    bind: \"{listen}\"
    pool: dns
"
    )
}

fn flows(admin: SocketAddr) -> String {
    let metrics = get(admin, "/metrics").unwrap().text();
    metrics
        .lines()
        .find(|l| l.starts_with("tioga_udp_flows_total{"))
        .unwrap_or("none")
        .to_string()
}

fn reload(tioga: &Tioga, yaml: &str, count: usize) {
    tioga.rewrite_config(yaml);
    tioga.signal("HUP");
    wait_until(Duration::from_secs(10), "the reload", || {
        tioga.log().matches("in place in").count() == count
    });
}

#[test]
fn flows_stay_while_their_pool_does() {
    let (a, b) = (spawn_udp_backend("a"), spawn_udp_backend("b"));
    let (listen, admin) = (free_udp_addr(), free_addr());
    let pool = format!("\"{}\", \"{}\"", a.addr(), b.addr());
    let tioga = Tioga::start(&config(listen, admin, &pool, ""), &[admin]);
    let clients: Vec<UdpClient> = (0..4).map(|_| UdpClient::new(listen)).collect();
    let first: Vec<String> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| c.ask(format!("q{i}").as_bytes(), ANSWER).unwrap())
        .collect();
    let sources = |a: &UdpBackend, b: &UdpBackend| a.sources() + b.sources();
    let (before, counted) = (sources(&a, &b), flows(admin));
    assert_eq!(before, 4);

    // Another pool added: this listener's pool is the same one.
    let other = "  other:\n    backends: [\"127.0.0.1:9\"]\n";
    reload(&tioga, &config(listen, admin, &pool, other), 1);
    for (i, c) in clients.iter().enumerate() {
        for k in 0..5 {
            let name = c.ask(format!("r{i}-{k}").as_bytes(), ANSWER).unwrap();
            assert_eq!(name, first[i], "client {i} keeps its backend");
        }
    }
    assert_eq!(sources(&a, &b), before, "no new flow towards the backends");
    assert_eq!(flows(admin), counted, "no new flow counted");

    // The pool changes (one backend only): each flow moves at its next datagram.
    let b_before = b.sources();
    let only_b = format!("\"{}\"", b.addr());
    reload(&tioga, &config(listen, admin, &only_b, other), 2);
    for (i, c) in clients.iter().enumerate() {
        let name = c.ask(format!("s{i}").as_bytes(), ANSWER).unwrap();
        assert_eq!(name, "b", "client {i} moved to the new pool");
    }
    assert_eq!(b.sources(), b_before + 4, "each moved flow is a new one");
    assert!(tioga.log().contains("move to pool dns"), "{}", tioga.log());
}
