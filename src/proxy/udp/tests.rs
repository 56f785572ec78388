//! A listening socket's receive task with real sockets, without the server around it:
//! flows keep their order both ways, a flow starts with its PROXY header when the
//! listener sends one, and answers and refusals feed passive health.

use super::listener::Receiver;
use super::{UdpProxy, UdpSettings};
use crate::filter::FilterChain;
use crate::observability::metrics::Metrics;
use crate::upstream::policy::{OutlierSpec, Resilience};
use crate::upstream::{BackendSpec, Pool, PoolSpec};
use crate::vocab::Balance;
use ppp::v2;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// A receiver on an ephemeral port forwarding to `backend`; its address, and the
/// sender that stops it.
async fn listen(
    backend: SocketAddr,
    proxy_protocol: bool,
) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let (addr, stop, _) = listen_with(backend, proxy_protocol, Default::default()).await;
    (addr, stop)
}

/// [`listen`] with the pool's `resilience`; the pool too.
async fn listen_with(
    backend: SocketAddr,
    proxy_protocol: bool,
    resilience: Resilience,
) -> (SocketAddr, tokio::sync::watch::Sender<bool>, Arc<Pool>) {
    let (pool, _) = Pool::build(PoolSpec {
        name: "p".into(),
        backends: vec![BackendSpec {
            addr: backend,
            weight: 1,
        }],
        balance: Balance::RoundRobin,
        health_check: None,
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        retries: 0,
        link: Default::default(),
        proxy_protocol: None,
        resilience,
        discovery: None,
    });
    let proxy = crate::proxy::live::slot(UdpProxy {
        name: "u".into(),
        pool: pool.clone(),
        filters: FilterChain::new([]),
        spec: UdpSettings {
            session_timeout: Duration::from_secs(30),
            max_flows: 10,
            proxy_protocol,
        },
        metrics: Metrics::new(true).udp("u", "p"),
        access_log: None,
        grace_period: Duration::ZERO,
    });
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (_phase_tx, phases) = tokio::sync::broadcast::channel(1);
    tokio::spawn(Receiver::new(proxy, socket).run(shutdown, phases));
    (addr, stop, pool)
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("a datagram within 5 s")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_keeps_its_order_both_ways_and_answers_come_from_the_listener() {
    let backend = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (listener, _stop) = listen(backend.local_addr().unwrap(), false).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..200u32 {
        client.send_to(&i.to_be_bytes(), listener).await.unwrap();
    }
    let mut upstream = None;
    for i in 0..200u32 {
        let (d, from) = recv(&backend).await;
        assert_eq!(d, i.to_be_bytes(), "datagram {i} in order");
        assert_eq!(*upstream.get_or_insert(from), from, "one flow, one socket");
        backend.send_to(&d, from).await.unwrap();
    }
    for i in 0..200u32 {
        let (d, from) = recv(&client).await;
        assert_eq!(from, listener, "answers come from the listener's address");
        assert_eq!(d, i.to_be_bytes(), "answer {i} in order");
    }
}

#[tokio::test]
async fn a_flow_starts_with_a_proxy_v2_header_when_the_listener_sends_one() {
    let backend = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (listener, _stop) = listen(backend.local_addr().unwrap(), true).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"first", listener).await.unwrap();
    client.send_to(b"second", listener).await.unwrap();
    let (first, _) = recv(&backend).await;
    let header = v2::Header::try_from(&first[..]).expect("a PROXY v2 header");
    assert_eq!(header.protocol, v2::Protocol::Datagram);
    let (SocketAddr::V4(c), SocketAddr::V4(l)) = (client.local_addr().unwrap(), listener) else {
        panic!("IPv4")
    };
    assert_eq!(
        header.addresses,
        v2::Addresses::IPv4(v2::IPv4::new(*c.ip(), *l.ip(), c.port(), l.port()))
    );
    assert_eq!(&first[header.len()..], b"first");
    let (second, _) = recv(&backend).await;
    assert_eq!(
        second, b"second",
        "only the first datagram carries the header"
    );
}

/// Polls `done` every 5 ms for up to 5 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < end, "{what} within 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_count_as_failures_and_answers_as_successes() {
    // A port nothing listens on: the kernel refuses it (ICMP port unreachable).
    let port = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let backend = port.local_addr().unwrap();
    drop(port);
    let resilience = Resilience {
        outlier: Some(OutlierSpec {
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(60),
            max_ejected_percent: 100,
        }),
        ..Default::default()
    };
    let (listener, _stop, pool) = listen_with(backend, false, resilience).await;
    let table = pool.table();
    let state = table.get(0);
    let errors = || state.errors.load(std::sync::atomic::Ordering::Relaxed);
    let ejections = || {
        state
            .outlier
            .ejections
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Each client is a flow of its own.
    let refused_flow = || async {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"ping", listener).await.unwrap();
        client
    };

    let _a = refused_flow().await;
    eventually("the first refusal recorded", || errors() == 1).await;
    // The backend comes up: its answer is a success, which ends the run of failures.
    let up = UdpSocket::bind(backend).await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    b.send_to(b"hello", listener).await.unwrap();
    let (d, from) = recv(&up).await;
    up.send_to(&d, from).await.unwrap();
    assert_eq!(recv(&b).await.0, b"hello");
    drop(up);
    // Down again: one refusal is not two in a row.
    let _c = refused_flow().await;
    eventually("the second refusal recorded", || errors() == 2).await;
    assert_eq!(ejections(), 0, "the answer reset the count");
    let _d = refused_flow().await;
    eventually("the third refusal recorded", || errors() == 3).await;
    assert_eq!(ejections(), 1, "two refusals in a row eject it");
}
