//! A listening socket's receive task with real sockets, without the server around it:
//! flows keep their order both ways and a flow starts with its PROXY header when the
//! listener sends one.

use super::listener::Receiver;
use super::{UdpProxy, UdpSettings};
use crate::filter::FilterChain;
use crate::observability::metrics::Metrics;
use crate::upstream::{BackendSpec, Pool, PoolSpec};
use crate::vocab::Balance;
use ppp::v2;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// A receiver on an ephemeral port forwarding to `backend`; its address, and the
/// sender that stops it.
async fn listen(
    backend: SocketAddr,
    proxy_protocol: bool,
) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
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
        resilience: Default::default(),
        discovery: None,
    });
    let proxy = crate::proxy::live::slot(UdpProxy {
        name: "u".into(),
        pool,
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
    (addr, stop)
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
