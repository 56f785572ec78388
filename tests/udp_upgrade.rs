//! A zero-downtime upgrade (`-u`, then SIGQUIT) under continuous UDP traffic: the new
//! process takes over the very listening socket (datagrams queued in it during the
//! hand-over stay there for the new process), the old one stops reading it once the
//! sockets are sent and keeps relaying its flows' answers until it exits. Counted: the
//! requests that got no answer. The new config sends new flows to another backend, so
//! the answers show which process served.

mod common;

use common::udp::{free_udp_addr, spawn_udp_backend, UdpClient};
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client waits for an answer before counting its request lost.
const ANSWER: Duration = Duration::from_secs(2);
/// Clients sending at once, each one request at a time, without pause.
const CLIENTS: usize = 20;

fn yaml(backend: SocketAddr, listen: SocketAddr, admin: SocketAddr) -> String {
    format!(
        "server:
  threads: 2
  pid_file: '@DIR@/t.pid'
  upgrade_sock: '@DIR@/up.sock'
  grace_period: 1s
  graceful_shutdown_timeout: 1s
admin: {{bind: \"{admin}\"}}
pools:
  dns:
    backends: [\"{backend}\"]
listeners:
  dns:
    protocol: udp
    bind: \"{listen}\"
    pool: dns
"
    )
}

#[derive(Default)]
struct Counts {
    sent: AtomicUsize,
    answered: AtomicUsize,
    lost: AtomicUsize,
    /// Answers from the backend of the new config.
    from_new: AtomicUsize,
}

/// One client: a request at a time until `stop`, each answered or counted lost.
fn client(listen: SocketAddr, id: usize, stop: &AtomicBool, counts: &Counts) {
    let c = UdpClient::new(listen);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let request = format!("c{id}-{seq}");
        counts.sent.fetch_add(1, Ordering::Relaxed);
        c.send(request.as_bytes()).unwrap();
        let deadline = Instant::now() + ANSWER;
        let answered = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            match c.recv(left) {
                Ok(a) if a.ends_with(format!("|{request}").as_bytes()) => break Some(a),
                Ok(_) => continue, // a late answer to an earlier request
                Err(_) => break None,
            }
        };
        match answered {
            Some(a) => {
                counts.answered.fetch_add(1, Ordering::Relaxed);
                if a.starts_with(b"new|") {
                    counts.from_new.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                counts.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        seq += 1;
    }
}

#[test]
fn an_upgrade_under_continuous_udp_traffic_loses_no_datagram() {
    let (old_backend, new_backend) = (spawn_udp_backend("old"), spawn_udp_backend("new"));
    let (listen, admin) = (free_udp_addr(), free_addr());
    let mut old = Tioga::start(&yaml(old_backend.addr(), listen, admin), &[admin]);
    let ready = UdpClient::new(listen);
    wait_until(
        Duration::from_secs(10),
        "the udp listener to answer",
        || ready.ask(b"ready?", Duration::from_millis(200)).is_ok(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let threads: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::spawn(move || client(listen, id, &stop, &counts))
        })
        .collect();
    wait_until(
        Duration::from_secs(10),
        "traffic through the old process",
        || counts.answered.load(Ordering::Relaxed) >= 1000,
    );
    old.rewrite_config(&yaml(new_backend.addr(), listen, admin));
    let upgrade_started = Instant::now();
    let mut new = old.spawn_again(&["-u"]);
    old.signal("QUIT");
    assert_eq!(
        old.exit_code(Duration::from_secs(20)),
        Some(0),
        "the old process after SIGQUIT (None: still running)"
    );
    let upgrade_took = upgrade_started.elapsed();
    assert!(new.is_running(), "the new process exited");
    new.wait_ready(&[admin]);
    let answered = counts.answered.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(10),
        "traffic through the new process",
        || counts.answered.load(Ordering::Relaxed) >= answered + 1000,
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let (sent, answered, lost, from_new) = (
        counts.sent.load(Ordering::Relaxed),
        counts.answered.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
        counts.from_new.load(Ordering::Relaxed),
    );
    eprintln!(
        "udp upgrade: {sent} requests from {CLIENTS} clients across an upgrade taking \
         {upgrade_took:?}: {answered} answered, {lost} lost, {from_new} by the new process"
    );
    assert!(from_new >= 1000, "the new process served the clients");
    assert!(
        old_backend.datagrams() > 1000,
        "the old process served first"
    );
    assert_eq!(lost, 0, "requests without an answer");
    assert_eq!(sent, answered + lost);
}
