//! Real DNS through a UDP listener: two Debian `dnsmasq` servers on ephemeral ports
//! answer `svc.test` with different addresses; DNS queries through Tioga are balanced
//! per flow (round robin), each client's queries stay on its server, and a server that
//! stops is taken out by the pool's `tcp` health check (dnsmasq serves TCP on the same
//! port), after which every new flow goes to the other. A TCP listener on the same
//! address and pool serves DNS over TCP and sees the same health.

mod common;

use common::udp::UdpClient;
use common::*;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `dnsmasq` answering `svc.test` with `answer`; killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    fn start(answer: Ipv4Addr) -> Dnsmasq {
        let addr = free_addr(); // free for TCP; dnsmasq binds UDP and TCP there
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--user=root",
                &format!("--port={}", addr.port()),
                &format!("--address=/svc.test/{answer}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (apt-get install dnsmasq-base)");
        let server = Dnsmasq { child, addr };
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        wait_until(Duration::from_secs(10), "dnsmasq to answer", || {
            probe.send_to(&query(1), server.addr).unwrap();
            let mut buf = [0u8; 512];
            probe.recv_from(&mut buf).is_ok()
        });
        server
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS query for `svc.test`, type A, with id `id`.
fn query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    q.extend_from_slice(b"\x03svc\x04test\x00\x00\x01\x00\x01"); // svc.test A IN
    q
}

/// The address a DNS answer to query `id` carries (its last record, an A record).
fn answer_to(id: u16, answer: &[u8]) -> Option<Ipv4Addr> {
    let ok = answer.len() >= 16
        && answer[..2] == id.to_be_bytes()
        && answer[2] & 0x80 != 0 // a response
        && answer[3] & 0x0f == 0 // NOERROR
        && answer[6..8] != [0, 0]; // at least one answer
    let a: [u8; 4] = answer[answer.len() - 4..].try_into().ok()?;
    ok.then(|| Ipv4Addr::from(a))
}

fn resolve(client: &UdpClient, id: u16) -> Ipv4Addr {
    client.send(&query(id)).unwrap();
    let answer = client.recv(Duration::from_secs(3)).expect("a DNS answer");
    answer_to(id, &answer).unwrap_or_else(|| panic!("not an answer to query {id}: {answer:?}"))
}

#[test]
fn dns_queries_through_tioga_to_two_dnsmasq_servers() {
    let (one, two) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let a = Dnsmasq::start(one);
    let mut b = Some(Dnsmasq::start(two));
    let listen = common::udp::free_tcp_udp_addr();
    let admin = free_addr();
    let yaml = format!(
        "server: {{threads: 2, pid_file: '@DIR@/t.pid', upgrade_sock: '@DIR@/up.sock'}}
admin: {{bind: \"{admin}\"}}
pools:
  dns:
    backends: [\"{}\", \"{}\"]
    health_check: {{type: tcp, interval: 100ms, timeout: 1s, fall: 2}}
listeners:
  dns:
    protocol: udp
    bind: \"{listen}\"
    pool: dns
  dns_tcp:
    protocol: tcp
    bind: \"{listen}\"
    pool: dns
",
        a.addr,
        b.as_ref().unwrap().addr
    );
    // The TCP listener shares the pool's round robin: a readiness probe connecting to
    // it could be routed late, in the middle of the six flows below. It is waited for
    // without a connection.
    let _tioga = Tioga::start(&yaml, &[admin]);
    wait_until(Duration::from_secs(10), "the TCP listener", || {
        listening(listen.port())
    });
    let ready = UdpClient::new(listen);
    wait_until(Duration::from_secs(10), "DNS through tioga", || {
        ready.send(&query(7)).unwrap();
        ready.recv(Duration::from_millis(200)).is_ok()
    });
    let mut per_server: HashMap<Ipv4Addr, usize> = HashMap::new();
    for c in 0..6u16 {
        let client = UdpClient::new(listen);
        let first = resolve(&client, c * 10);
        for q in 1..4 {
            assert_eq!(resolve(&client, c * 10 + q), first, "client {c} moved");
        }
        *per_server.entry(first).or_default() += 1;
    }
    // Round robin over six flows: three each. (The check above has room for a loaded
    // machine, so it does not take a server out for a moment.)
    assert_eq!(per_server.get(&one), Some(&3), "{per_server:?}");
    assert_eq!(per_server.get(&two), Some(&3), "{per_server:?}");

    drop(b.take()); // the second server stops: its TCP port refuses the health check
    wait_until(
        Duration::from_secs(10),
        "the stopped server marked down",
        || {
            get(admin, "/metrics")
                .unwrap()
                .text()
                .lines()
                .any(|l| l.starts_with("tioga_backend_up{") && l.ends_with(" 0"))
        },
    );
    for c in 0..6u16 {
        let client = UdpClient::new(listen);
        assert_eq!(resolve(&client, 100 + c), one, "new flow {c}");
        assert_eq!(resolve_tcp(listen, 200 + c), one, "TCP connection {c}");
    }
}

/// Resolves over TCP (each message after its 2-byte length) on a new connection.
fn resolve_tcp(addr: SocketAddr, id: u16) -> Ipv4Addr {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let q = query(id);
    s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&q).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut answer).unwrap();
    answer_to(id, &answer).unwrap_or_else(|| panic!("not an answer to query {id}: {answer:?}"))
}
