//! The L4 listener (`protocol: tcp`): raw bytes relayed both ways between a client and
//! a TCP echo backend, half-close passed on, constant memory whatever the stream size,
//! the contract's failure behaviour (no eligible backend or every connect failing →
//! the connection is closed at once; a failed connect retries another backend), the
//! balancing modes per connection, and `read_timeout` as the idle timeout.
//!
//! The echo backends greet every connection with `NAME\n`, so the first line a client
//! reads names the backend Tioga chose.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Read and write timeout of every client socket: a stuck proxy fails the test.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How fast "closed at once" must be.
const AT_ONCE: Duration = Duration::from_secs(1);
/// Longest time one large stream may take, there and back.
const STREAM_DEADLINE: Duration = Duration::from_secs(60);

/// A config with one tcp listener on `listen` forwarding to pool `db` of `backends`;
/// `pool_extra` is more YAML for the pool (indented by 4 spaces).
fn config(listen: SocketAddr, backends: &[SocketAddr], pool_extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "server:
  threads: 1
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
pools:
  db:
    backends: [{}]
{pool_extra}
listeners:
  raw:
    protocol: tcp
    bind: \"{listen}\"
    pool: db
",
        list.join(", ")
    )
}

/// Connects to `addr` with [`IO_TIMEOUT`] on every read and write.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to tioga");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads the backend's greeting line (`NAME\n`) and returns `NAME`.
fn greeting(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    for _ in 0..64 {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&line)
            ),
            Ok(_) if byte[0] == b'\n' => return String::from_utf8(line).unwrap(),
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("no greeting (read {line:?}): {e}"),
        }
    }
    panic!("greeting longer than 64 bytes: {line:?}");
}

/// Opens a connection to `addr`, half-closes it and returns the name of the backend
/// that greeted it. Reading to EOF keeps balancing tests independent of how promptly
/// Tioga forwards a lone greeting (that has its own test).
fn greeted_by(addr: SocketAddr) -> String {
    let answer = finish(connect(addr));
    let text = String::from_utf8(answer).expect("a UTF-8 greeting");
    let name = text.strip_suffix('\n');
    assert!(
        name.is_some_and(|n| !n.contains('\n')),
        "expected one greeting line, got {text:?}"
    );
    name.unwrap().to_string()
}

/// Waits until Tioga has relayed the harness's readiness probe (one connection, closed
/// at once) to a backend and ended it, so that it takes no later turn in balancing.
fn settle(backends: &[&TcpBackend]) {
    wait_until(
        Duration::from_secs(5),
        "the readiness probe to come and go",
        || {
            backends.iter().map(|b| b.connections()).sum::<usize>() == 1
                && backends.iter().all(|b| b.active() == 0)
        },
    );
}

/// Half-closes `stream` and reads what is left up to EOF.
fn finish(mut stream: TcpStream) -> Vec<u8> {
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read to EOF");
    rest
}

/// Asserts that a new connection to `addr` is closed at once without a byte sent.
fn assert_closed_at_once(addr: SocketAddr) {
    let mut stream = connect(addr);
    stream.set_read_timeout(Some(AT_ONCE * 3)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let outcome = stream.read(&mut buf);
    let elapsed = start.elapsed();
    match outcome {
        Ok(0) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset) => {}
        Ok(n) => panic!(
            "expected a closed connection, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("expected a closed connection, got {e} after {elapsed:?}"),
    }
    assert!(elapsed < AT_ONCE, "closed only after {elapsed:?}");
}

/// `(VmRSS, VmHWM)` of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).expect(name);
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Deterministic pseudo-random bytes: xorshift64, eight bytes per step.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes()[..word.len()]);
        }
    }
}

/// Streams `len` bytes through `addr` to an echo backend: one thread writes, then
/// half-closes; this one reads the echo up to EOF. Returns what was received after
/// the greeting: `(length, FNV)`, and the FNV of what was sent.
fn echo_stream(addr: SocketAddr, len: u64) -> (u64, String, String) {
    let mut reader = connect(addr);
    let mut writer = reader.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let mut pattern = Pattern(0x9e37_79b9_7f4a_7c15);
        let mut hash = Fnv::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            pattern.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            writer.write_all(&buf[..n]).expect("write the stream");
            left -= n as u64;
        }
        writer.shutdown(Shutdown::Write).unwrap();
        hash.hex()
    });
    let begun = Instant::now();
    greeting(&mut reader);
    let mut hash = Fnv::default();
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).expect("read the echo");
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        got += n as u64;
        assert!(got <= len, "more bytes came back than were sent");
        assert!(
            begun.elapsed() < STREAM_DEADLINE,
            "stream too slow: {got} bytes back"
        );
    }
    let sent = sender.join().expect("writer thread");
    (got, hash.hex(), sent)
}

/// Reads from `stream` into `received` until `deadline`; returns `Some(when)` if the
/// connection was closed (EOF or reset) before it.
fn drain_until(
    stream: &mut TcpStream,
    deadline: Instant,
    received: &mut Vec<u8>,
) -> Option<Instant> {
    let mut buf = [0u8; 4096];
    for _ in 0..10_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(Instant::now()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Some(Instant::now()),
            Err(e) => panic!("read failed: {e}"),
        }
    }
    panic!("too many reads before {deadline:?}");
}

#[test]
fn bytes_flow_both_ways_through_a_half_close() {
    let a = spawn_tcp_backend("a");
    let listen = free_addr();
    let _tioga = Tioga::start(&config(listen, &[a.addr()], ""), &[listen]);

    let mut stream = connect(listen);
    let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(b"hello\n").unwrap();
    stream.write_all(&sent).unwrap();
    // The client half-closes; the backend still echoes everything, then closes its
    // side, and only then does the client see EOF.
    let back = finish(stream);
    assert_eq!(&back[..8], b"a\nhello\n");
    assert!(
        back[8..] == sent[..],
        "echo differs ({} bytes back)",
        back.len()
    );
    wait_until(
        Duration::from_secs(5),
        "the backend connection to end",
        || a.active() == 0,
    );
}

#[test]
fn small_writes_reach_the_client_at_once() {
    let a = spawn_tcp_backend("a");
    let listen = free_addr();
    let _tioga = Tioga::start(&config(listen, &[a.addr()], ""), &[listen]);

    let mut stream = connect(listen);
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // A server-first protocol: the backend speaks before the client sends anything.
    assert_eq!(greeting(&mut stream), "a");
    for msg in [&b"hello"[..], b"second message", &[0u8, 255, 10, 13]] {
        stream.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        stream
            .read_exact(&mut back)
            .expect("the echo, without a half-close");
        assert_eq!(back, msg);
    }
    assert_eq!(finish(stream), b"");
}

#[test]
fn round_robin_alternates_per_connection() {
    let (a, b) = (spawn_tcp_backend("a"), spawn_tcp_backend("b"));
    let listen = free_addr();
    let _tioga = Tioga::start(&config(listen, &[a.addr(), b.addr()], ""), &[listen]);
    settle(&[&a, &b]);

    let names: Vec<String> = (0..6).map(|_| greeted_by(listen)).collect();
    for pair in names.windows(2) {
        assert_ne!(pair[0], pair[1], "round robin did not alternate: {names:?}");
    }
    assert_eq!(names.iter().filter(|n| *n == "a").count(), 3, "{names:?}");
}

#[test]
fn large_stream_is_intact_half_closes_and_memory_stays_flat() {
    const SMALL: u64 = 4 << 20;
    const LARGE: u64 = 64 << 20;
    let a = spawn_tcp_backend("a");
    let listen = free_addr();
    let tioga = Tioga::start(&config(listen, &[a.addr()], ""), &[listen]);
    let start = Instant::now();

    // A first, smaller stream sets up Tioga's buffers and threads.
    let (got, received, sent) = echo_stream(listen, SMALL);
    assert_eq!((got, &received), (SMALL, &sent), "4 MiB stream damaged");
    let (rss_small, peak_small) = memory_kib(tioga.pid());

    let (got, received, sent) = echo_stream(listen, LARGE);
    assert_eq!(got, LARGE, "64 MiB stream: wrong length back");
    assert_eq!(received, sent, "64 MiB stream: content differs");
    let (rss_large, peak_large) = memory_kib(tioga.pid());

    eprintln!(
        "tioga memory: after 4 MiB: VmRSS {rss_small} KiB, VmHWM {peak_small} KiB; \
         after 64 MiB: VmRSS {rss_large} KiB, VmHWM {peak_large} KiB \
         (peak grew {} KiB); both streams took {:?}",
        peak_large.saturating_sub(peak_small),
        start.elapsed()
    );
    // Buffering the stream would cost tens of MiB; relaying costs a few buffers.
    assert!(
        peak_large < peak_small + 8 * 1024,
        "peak memory grew from {peak_small} KiB to {peak_large} KiB with a 16× longer stream"
    );
}

#[test]
fn a_stream_is_intact_with_busy_polling_off_and_at_its_longest() {
    // Both directions pass the copy phase and splice; `busy_poll` only changes how a
    // spliced direction waits for its next bytes, never what it relays.
    const LEN: u64 = 8 << 20;
    let a = spawn_tcp_backend("a");
    for busy in ["0s", "1ms"] {
        let listen = free_addr();
        let yaml = config(listen, &[a.addr()], "") + &format!("    busy_poll: {busy}\n");
        let _tioga = Tioga::start(&yaml, &[listen]);
        let (got, received, sent) = echo_stream(listen, LEN);
        assert_eq!(got, LEN, "busy_poll {busy}: wrong length back");
        assert_eq!(received, sent, "busy_poll {busy}: content differs");
    }
}

/// The harness's `Tioga::has_accepted` (used by tests/upgrade.rs) tells Tioga's own
/// connections from others'.
#[test]
fn harness_sees_which_connections_tioga_has_accepted() {
    let a = spawn_tcp_backend("a");
    let listen = free_addr();
    let tioga = Tioga::start(&config(listen, &[a.addr()], ""), &[listen]);
    let mine = connect(listen);
    wait_until(Duration::from_secs(5), "tioga to accept", || {
        tioga.has_accepted(&mine)
    });
    let other = connect(a.addr());
    // A later connection greeted means the backend has accepted `other` too: its socket
    // exists, in this process rather than Tioga's.
    assert_eq!(greeting(&mut connect(a.addr())), "a");
    assert!(
        !tioga.has_accepted(&other),
        "a connection to the backend itself"
    );
}

#[test]
fn no_eligible_backend_closes_the_connection_at_once() {
    let a = spawn_tcp_backend("a");
    let backend = a.addr();
    // An http listener on the same pool shows the pool's health: 503 once nothing is
    // eligible (health is per pool). `rise` keeps a backend that was down, down.
    let (listen, web) = (free_addr(), free_addr());
    let yaml = config(
        listen,
        &[backend],
        "    health_check: {type: tcp, interval: 200ms, timeout: 200ms, fall: 1, rise: 1000}",
    ) + &format!(
        "  web:\n    protocol: http\n    bind: \"{web}\"\n    routes:\n      - pool: db\n"
    );
    let _tioga = Tioga::start(&yaml, &[listen, web]);
    assert_eq!(greeted_by(listen), "a");

    a.stop();
    wait_until(
        Duration::from_secs(5),
        "the backend to be marked down",
        || get(web, "/").is_ok_and(|r| r.status == 503),
    );
    // The backend is back, but Tioga must not use it while it counts as down.
    let again = TcpBackend::bind("a-again", backend).expect("rebind the backend's port");
    assert_eq!(greeting(&mut connect(again.addr())), "a-again");
    for _ in 0..3 {
        assert_closed_at_once(listen);
    }
}

#[test]
fn connect_failure_retries_another_backend() {
    let live = spawn_tcp_backend("live");
    let dead = free_addr();
    let listen = free_addr();
    let yaml = config(listen, &[dead, live.addr()], "    retries: 1");
    let _tioga = Tioga::start(&yaml, &[listen]);

    // Round robin offers the dead backend first for every other connection.
    for i in 0..6 {
        let mut stream = connect(listen);
        stream.write_all(b"ok").unwrap();
        assert_eq!(finish(stream), b"live\nok", "connection {i}");
    }
}

#[test]
fn all_backends_dead_closes_the_connection() {
    let listen = free_addr();
    let yaml = config(listen, &[free_addr(), free_addr()], "    retries: 1");
    let _tioga = Tioga::start(&yaml, &[listen]);
    for _ in 0..3 {
        assert_closed_at_once(listen);
    }
}

#[test]
fn consistent_hash_on_client_ip_sticks() {
    let backends = [
        spawn_tcp_backend("a"),
        spawn_tcp_backend("b"),
        spawn_tcp_backend("c"),
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(TcpBackend::addr).collect();
    let listen = free_addr();
    let yaml = config(
        listen,
        &addrs,
        "    balance: consistent_hash\n    hash_key: client_ip",
    );
    let _tioga = Tioga::start(&yaml, &[listen]);

    let first = greeted_by(listen);
    for i in 0..8 {
        assert_eq!(greeted_by(listen), first, "connection {i} moved");
    }
}

#[test]
fn least_conn_sends_new_connections_to_the_idle_backend() {
    let (a, b) = (spawn_tcp_backend("a"), spawn_tcp_backend("b"));
    let listen = free_addr();
    let yaml = config(listen, &[a.addr(), b.addr()], "    balance: least_conn");
    let _tioga = Tioga::start(&yaml, &[listen]);
    settle(&[&a, &b]);

    let held = connect(listen);
    wait_until(
        Duration::from_secs(5),
        "the held connection to arrive",
        || a.active() + b.active() == 1,
    );
    let (busy, idle_name, idle) = match a.active() {
        1 => ("a", "b", &b),
        _ => ("b", "a", &a),
    };
    // Round robin would alternate; least_conn keeps choosing the backend with none.
    for i in 0..5 {
        // `greeted_by` closes its connection: Tioga lets go of the backend when it
        // closes the client side, before the next connection arrives.
        assert_eq!(greeted_by(listen), idle_name, "connection {i}");
        wait_until(
            Duration::from_secs(5),
            "the idle backend to be idle",
            || idle.active() == 0,
        );
    }
    let mut held = held;
    held.write_all(b" still here").unwrap();
    assert_eq!(finish(held), format!("{busy}\n still here").as_bytes());
}

#[test]
fn read_timeout_closes_an_idle_connection() {
    let a = spawn_tcp_backend("a");
    let listen = free_addr();
    let yaml = config(listen, &[a.addr()], "    read_timeout: 300ms");
    let _tioga = Tioga::start(&yaml, &[listen]);

    // A byte every 100 ms keeps the connection open for 700 ms, well past 300 ms: the
    // timeout is about idleness, not the connection's age.
    let mut stream = connect(listen);
    let mut received = Vec::new();
    let mut last_write = Instant::now();
    for i in 0..7u8 {
        stream.write_all(&[b'0' + i]).unwrap();
        last_write = Instant::now();
        let closed = drain_until(
            &mut stream,
            last_write + Duration::from_millis(100),
            &mut received,
        );
        assert!(closed.is_none(), "closed while busy, after byte {i}");
    }
    // Now idle: closed about 300 ms after the last byte went through.
    let closed = drain_until(
        &mut stream,
        Instant::now() + Duration::from_secs(5),
        &mut received,
    )
    .expect("the idle connection was not closed within 5 s");
    let idle = closed - last_write;
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
        "idle connection closed {idle:?} after the last byte, read_timeout is 300ms"
    );
    // Nothing is lost: the greeting and every echo came back before the close.
    assert_eq!(
        String::from_utf8_lossy(&received),
        "a\n0123456",
        "bytes received before the idle close"
    );
}
