//! The UDP benchmark's peers (`bench/udp.sh`): an echo backend, a request/answer load of
//! many clients, and a flow opener for the memory measure.
//!
//! ```text
//! udp_bench echo ADDR                         # answer every datagram with itself
//! udp_bench load TARGET CLIENTS SECS [RATE]   # prints: answered lost
//! udp_bench flows TARGET COUNT                # COUNT flows, one answered request each
//! ```
//!
//! `load` runs CLIENTS flows, each one request at a time (the next sent when the answer
//! is back, or after 200 ms without one: counted lost), for SECS seconds; with RATE, the
//! clients together send at most RATE requests a second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// A request's payload: about a DNS query's size.
const REQUEST: usize = 64;
/// How long a client waits for an answer before counting the request lost.
const LOST_AFTER: Duration = Duration::from_millis(200);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map_or("", String::as_str) };
    let addr = |i: usize| -> SocketAddr {
        arg(i)
            .parse()
            .unwrap_or_else(|_| usage(&format!("bad address `{}`", arg(i))))
    };
    let number = |i: usize| -> u64 {
        arg(i)
            .parse()
            .unwrap_or_else(|_| usage(&format!("bad number `{}`", arg(i))))
    };
    match arg(0) {
        "echo" => echo(addr(1)),
        "load" => {
            let rate = args.get(4).map(|_| number(4));
            let (answered, lost) = run(load(addr(1), number(2), number(3), rate));
            println!("{answered} {lost}");
        }
        "flows" => {
            let opened = run(flows(addr(1), number(2)));
            println!("{opened}");
        }
        _ => usage("expected echo, load or flows"),
    }
}

fn usage(why: &str) -> ! {
    eprintln!("udp_bench: {why}\nusage: udp_bench echo ADDR | load TARGET CLIENTS SECS [RATE] | flows TARGET COUNT");
    std::process::exit(2)
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Answers every datagram with itself, forever.
fn echo(addr: SocketAddr) {
    let socket = std::net::UdpSocket::bind(addr).expect("bind the echo socket");
    let mut buf = vec![0u8; 65_536];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

/// `clients` request/answer loops for `secs`; returns (answered, lost).
async fn load(target: SocketAddr, clients: u64, secs: u64, rate: Option<u64>) -> (u64, u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    // Each client's pace: one request every `gap` (none without a rate).
    let gap = rate.map(|r| Duration::from_secs_f64(clients as f64 / r.max(1) as f64));
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(target, i, end, gap)))
        .collect();
    let (mut answered, mut lost) = (0, 0);
    for t in tasks {
        let (a, l) = t.await.expect("client task");
        answered += a;
        lost += l;
    }
    (answered, lost)
}

async fn client(target: SocketAddr, id: u64, end: Instant, gap: Option<Duration>) -> (u64, u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind a client");
    socket.connect(target).await.expect("connect a client");
    let mut request = [0u8; REQUEST];
    request[..8].copy_from_slice(&id.to_be_bytes());
    let mut answer = [0u8; 2048];
    let (mut answered, mut lost, mut seq) = (0u64, 0u64, 0u64);
    // Spread the paced clients' first requests over one gap.
    let mut next = tokio::time::Instant::now()
        + gap.map_or(Duration::ZERO, |g| g.mul_f64((id % 1000) as f64 / 1000.0));
    while Instant::now() < end {
        if let Some(gap) = gap {
            tokio::time::sleep_until(next).await;
            next += gap;
        }
        seq += 1;
        request[8..16].copy_from_slice(&seq.to_be_bytes());
        if socket.send(&request).await.is_err() {
            lost += 1;
            continue;
        }
        let deadline = tokio::time::Instant::now() + LOST_AFTER;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut answer)).await {
                Ok(Ok(n)) if n == REQUEST && answer[8..16] == request[8..16] => {
                    answered += 1;
                    break;
                }
                Ok(Ok(_)) => continue, // a late answer to an earlier request
                Ok(Err(_)) | Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    (answered, lost)
}

/// Opens `count` flows, each with one answered request, and returns how many were
/// answered. The sockets close at the end; the proxy keeps each flow until its timeout.
async fn flows(target: SocketAddr, count: u64) -> u64 {
    let mut sockets = Vec::new();
    let mut opened = 0;
    for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
        let mut batch = Vec::new();
        for &i in chunk {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind a client");
            socket.connect(target).await.expect("connect a client");
            let _ = socket.send(&i.to_be_bytes()).await;
            batch.push(socket);
        }
        // One deadline for the whole batch: a proxy that drops flows costs 2 s, not 2 s each.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for socket in &batch {
            let mut buf = [0u8; 64];
            if let Ok(Ok(_)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                opened += 1;
            }
        }
        sockets.extend(batch);
    }
    opened
}
