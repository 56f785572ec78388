//! `balance: p2c_ewma` with real backends: one ten times slower than the other two
//! gets at most 10% of the requests, and its share recovers within 10 s once it is
//! fast again.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn config(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "server:
  threads: 2
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
pools:
  web:
    backends: [{}]
    balance: p2c_ewma
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - pool: web
",
        list.join(", ")
    )
}

/// Requests each backend received so far.
fn counts(backends: &[HttpBackend]) -> Vec<usize> {
    backends.iter().map(|b| b.requests()).collect()
}

#[test]
fn a_slow_backend_gets_little_and_recovers_when_fast_again() {
    let backends: Vec<HttpBackend> = ["a", "b", "slow"].map(spawn_http_backend).into();
    let fast = Duration::from_millis(5);
    for b in &backends[..2] {
        b.set_delay(fast);
    }
    backends[2].set_delay(fast * 10);
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let listen = free_addr();
    let _tioga = Tioga::start(&config(listen, &addrs), &[listen]);

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(60);
                let mut failures = 0;
                while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                    match get(listen, "/") {
                        Ok(r) if r.status == 200 => {}
                        _ => failures += 1,
                    }
                }
                failures
            })
        })
        .collect();

    // Past the first few requests (every backend starts unknown), measure 3 s.
    wait_until(Duration::from_secs(10), "traffic", || {
        counts(&backends).iter().sum::<usize>() > 60
    });
    let before = counts(&backends);
    std::thread::sleep(Duration::from_secs(3)); // a measuring window, not a wait
    let after = counts(&backends);
    let got: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: usize = got.iter().sum();
    let share = got[2] as f64 / total as f64;
    eprintln!(
        "slow backend: {} of {total} requests ({:.1}%)",
        got[2],
        share * 100.0
    );
    assert!(total > 100, "{got:?}");
    assert!(
        share <= 0.10,
        "the slow backend got {:.1}%: {got:?}",
        share * 100.0
    );

    // Fast again: its share of a one-second window comes back to at least 20%
    // (a fair share is a third) within 10 s.
    backends[2].set_delay(fast);
    let healed = Instant::now();
    let mut last = counts(&backends);
    let mut recovered = None;
    while healed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_secs(1)); // one measuring window
        let now = counts(&backends);
        let got: Vec<usize> = now.iter().zip(&last).map(|(a, b)| a - b).collect();
        last = now;
        let total: usize = got.iter().sum();
        if total > 0 && got[2] as f64 / total as f64 >= 0.20 {
            recovered = Some(healed.elapsed());
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let failures: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(failures, 0);
    let recovered = recovered.expect("the share did not recover within 10 s");
    eprintln!("share back to >= 20% after {recovered:?}");
}
