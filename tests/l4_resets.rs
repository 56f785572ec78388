//! A reset on either side of a relayed TCP connection ends both directions at once and
//! is passed on as a reset, instead of the other side waiting for `read_timeout`
//! (30 s here, far beyond every deadline below).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How soon the other side must learn of a reset.
const PROMPTLY: Duration = Duration::from_secs(3);

fn config(listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "server: {{threads: 1, pid_file: '@DIR@/t.pid', upgrade_sock: '@DIR@/up.sock'}}
pools:
  b: {{backends: [\"{backend}\"], read_timeout: 30s}}
listeners:
  t: {{protocol: tcp, bind: \"{listen}\", pool: b}}
"
    )
}

/// Closes `stream` with a reset (`SO_LINGER` of zero).
fn reset(stream: TcpStream) {
    let abort = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &abort).unwrap();
    drop(stream);
}

/// Reads from `stream` until it ends; how it ended and when.
fn read_until_end(mut stream: TcpStream) -> (std::io::Result<usize>, Instant) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (Ok(0), Instant::now()),
            Ok(_) => continue,
            Err(e) => return (Err(e), Instant::now()),
        }
    }
}

/// Tioga in front of a backend that hands each accepted connection to the test.
fn relay() -> (SocketAddr, mpsc::Receiver<TcpStream>, Tioga) {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = backend.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in backend.incoming().flatten() {
            if tx.send(stream).is_err() {
                return;
            }
        }
    });
    let listen = free_addr();
    let tioga = Tioga::start(&config(listen, addr), &[listen]);
    (listen, rx, tioga)
}

/// A client connected through Tioga to the backend, with a few bytes each way.
fn connected(listen: SocketAddr, rx: &mpsc::Receiver<TcpStream>) -> (TcpStream, TcpStream) {
    let mut client = TcpStream::connect(listen).unwrap();
    client.write_all(b"ping").unwrap();
    // The readiness probes' connections came first: skip those that end empty.
    let mut buf = [0u8; 4];
    let mut server = loop {
        let mut s = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the backend's side");
        if s.read_exact(&mut buf).is_ok() {
            break s;
        }
    };
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    (client, server)
}

/// Resets `resetting` and asserts that `reading`, the other end of the relay, learns
/// of it at once, as a reset.
fn assert_reset_passed_on(resetting: TcpStream, reading: TcpStream, side: &str) {
    let sent = Instant::now();
    reset(resetting);
    let (how, when) = read_until_end(reading);
    assert!(
        when - sent < PROMPTLY,
        "the {side}'s side ended after {:?}",
        when - sent
    );
    assert_eq!(
        how.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "passed on as a reset"
    );
}

#[test]
fn a_client_reset_reaches_the_backend_at_once() {
    let (listen, rx, _tioga) = relay();
    let (client, server) = connected(listen, &rx);
    assert_reset_passed_on(client, server, "backend");
}

#[test]
fn a_backend_reset_reaches_a_client_that_only_reads() {
    let (listen, rx, _tioga) = relay();
    let (client, server) = connected(listen, &rx);
    assert_reset_passed_on(server, client, "client");
}

#[test]
fn a_clean_close_still_half_closes() {
    let (listen, rx, _tioga) = relay();
    let (mut client, mut server) = connected(listen, &rx);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        server.read_to_end(&mut rest).unwrap(),
        0,
        "EOF, not a reset"
    );
    server.write_all(b"after").unwrap();
    drop(server);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"after");
}
