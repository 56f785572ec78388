//! `consistent_hash` agrees across instances: two Tioga processes given the same pool,
//! its backends listed in different orders, send each of 10,000 keys to the same
//! backend.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

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
    balance: consistent_hash
    hash_key: header:x-key
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

/// The backend that answers each key in `keys`, over one keep-alive connection.
fn choices(listen: SocketAddr, keys: std::ops::Range<usize>) -> Vec<String> {
    let mut conn = Conn::open(listen).expect("connect");
    keys.map(|k| {
        let req = Request::get("/")
            .header("x-key", &format!("user-{k}"))
            .timeout(Duration::from_secs(10));
        let resp = conn.send(&req).expect("answer");
        assert_eq!(resp.status, 200);
        resp.header("x-backend").unwrap_or("-").to_string()
    })
    .collect()
}

#[test]
fn two_instances_agree_whatever_the_order_of_backends() {
    let backends: Vec<HttpBackend> = ["a", "b", "c", "d"].map(spawn_http_backend).into();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let reordered = vec![addrs[2], addrs[0], addrs[3], addrs[1]];
    let (one, two) = (free_addr(), free_addr());
    let _t1 = Tioga::start(&config(one, &addrs), &[one]);
    let _t2 = Tioga::start(&config(two, &reordered), &[two]);

    const KEYS: usize = 10_000;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let range = t * KEYS / 4..(t + 1) * KEYS / 4;
            std::thread::spawn(move || (choices(one, range.clone()), choices(two, range)))
        })
        .collect();
    let mut agree = 0;
    let mut spread = std::collections::HashMap::new();
    for t in threads {
        let (a, b) = t.join().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "the instances disagree");
            agree += 1;
            *spread.entry(x.clone()).or_insert(0usize) += 1;
        }
    }
    assert_eq!(agree, KEYS);
    // Every backend has a share (the ring is not degenerate).
    assert_eq!(spread.len(), 4, "{spread:?}");
    assert!(spread.values().all(|&n| n > KEYS / 10), "{spread:?}");
}
