//! Selection without sockets: spread, weights, stickiness and least_conn.

use super::*;
use crate::vocab::HashKey;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use std::collections::HashMap;

fn backends(list: &[(&str, usize)]) -> (BTreeSet<Backend>, Arc<BackendTable>) {
    let set = list
        .iter()
        .map(|(a, w)| {
            let mut b = Backend::new(a).unwrap();
            b.weight = *w;
            b
        })
        .collect();
    let table = Arc::new(BackendTable::new(
        list.iter().map(|(a, w)| (a.parse().unwrap(), *w)),
    ));
    (set, table)
}

fn build(balance: Balance, list: &[(&str, usize)]) -> (Arc<Balancer>, Arc<BackendTable>) {
    let (set, table) = backends(list);
    let config = BalanceConfig {
        balance,
        table: table.clone(),
        slow_start: None,
    };
    (Arc::new(Balancer::build_with_config(&set, &config)), table)
}

fn first(b: &Arc<Balancer>, key: &[u8]) -> String {
    b.iter(key).next().unwrap().addr.to_string()
}

fn count(b: &Arc<Balancer>, n: usize, key: impl Fn(usize) -> Vec<u8>) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for i in 0..n {
        *seen.entry(first(b, &key(i))).or_default() += 1;
    }
    seen
}

#[test]
fn round_robin_alternates_and_honours_weight() {
    let (b, _) = build(
        Balance::RoundRobin,
        &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)],
    );
    let picks: Vec<String> = (0..4).map(|_| first(&b, b"")).collect();
    assert_ne!(picks[0], picks[1]);
    assert_eq!(picks[0], picks[2]);
    let (b, _) = build(
        Balance::RoundRobin,
        &[("127.0.0.1:1", 1), ("127.0.0.1:2", 3)],
    );
    let seen = count(&b, 400, |_| Vec::new());
    assert_eq!(seen["127.0.0.1:1"], 100);
    assert_eq!(seen["127.0.0.1:2"], 300);
}

/// `round_robin` as pools run it: weights 1, 3 and 1.
fn smooth() -> SmoothRoundRobin {
    let (_, table) = backends(&[("127.0.0.1:1", 1), ("127.0.0.1:2", 3), ("127.0.0.1:3", 1)]);
    SmoothRoundRobin::new(&table)
}

#[test]
fn smooth_round_robin_interleaves_in_proportion_to_weight() {
    let rr = smooth();
    let picks: Vec<usize> = (0..10).map(|_| rr.pick(|_| true).unwrap()).collect();
    // Each run of 5 is exact: 1, 3 and 1, the heavy backend spread out.
    assert_eq!(picks, [1, 0, 1, 2, 1, 1, 0, 1, 2, 1]);
}

#[test]
fn smooth_round_robin_shares_a_missing_backend_by_weight() {
    let rr = smooth();
    let mut seen = [0; 3];
    for _ in 0..400 {
        seen[rr.pick(|i| i != 2).unwrap()] += 1;
    }
    // Backend 2 is down: the others keep their 1:3 share exactly.
    assert_eq!(seen, [100, 300, 0]);
    // Nothing eligible, nothing picked; one left, always that one.
    assert_eq!(rr.pick(|_| false), None);
    assert!((0..5).all(|_| rr.pick(|i| i == 0) == Some(0)));
}

#[test]
fn random_roughly_follows_weight() {
    let (b, _) = build(Balance::Random, &[("127.0.0.1:1", 1), ("127.0.0.1:2", 3)]);
    let seen = count(&b, 4000, |_| Vec::new());
    let heavy = seen["127.0.0.1:2"];
    assert!(
        (2700..3300).contains(&heavy),
        "weight 3 of 4 got {heavy}/4000"
    );
}

#[test]
fn consistent_hash_sticks_and_moves_about_one_nth() {
    let list = [
        ("127.0.0.1:1", 1),
        ("127.0.0.1:2", 1),
        ("127.0.0.1:3", 1),
        ("127.0.0.1:4", 1),
    ];
    let (b, _) = build(Balance::ConsistentHash(HashKey::ClientIp), &list);
    let keys: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| format!("client-{i}").into_bytes())
        .collect();
    let before: Vec<String> = keys.iter().map(|k| first(&b, k)).collect();
    let again: Vec<String> = keys.iter().map(|k| first(&b, k)).collect();
    assert_eq!(before, again, "equal keys go to the same backend");
    let (smaller, _) = build(Balance::ConsistentHash(HashKey::ClientIp), &list[..3]);
    let moved = keys
        .iter()
        .zip(&before)
        .filter(|(k, old)| first(&smaller, k) != **old)
        .count();
    let on_removed = before.iter().filter(|o| *o == "127.0.0.1:4").count();
    assert_eq!(moved, on_removed, "only keys of the removed backend move");
    assert!(
        (300..700).contains(&moved),
        "about 1/4 of keys move, got {moved}/2000"
    );
}

#[test]
fn least_conn_prefers_fewest_active_relative_to_weight() {
    let (b, table) = build(
        Balance::LeastConn,
        &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)],
    );
    let a1: PeerAddr = PeerAddr::Inet("127.0.0.1:1".parse().unwrap());
    let i1 = table.index_of(&a1).unwrap();
    let _busy = crate::upstream::state::Lease::new(table.clone(), i1);
    for _ in 0..10 {
        assert_eq!(first(&b, b""), "127.0.0.1:2");
    }
    // Weight 3 with 2 active (0.67 each) beats weight 1 with 1 active.
    let (b, table) = build(
        Balance::LeastConn,
        &[("127.0.0.1:1", 1), ("127.0.0.1:2", 3)],
    );
    let idx = |a: &str| table.index_of(&PeerAddr::Inet(a.parse().unwrap())).unwrap();
    let _l1 = crate::upstream::state::Lease::new(table.clone(), idx("127.0.0.1:1"));
    let _l2 = crate::upstream::state::Lease::new(table.clone(), idx("127.0.0.1:2"));
    let _l3 = crate::upstream::state::Lease::new(table.clone(), idx("127.0.0.1:2"));
    assert_eq!(first(&b, b""), "127.0.0.1:2");
}

#[test]
fn least_conn_rotates_among_equals_and_lists_everyone() {
    let (b, _) = build(
        Balance::LeastConn,
        &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1), ("127.0.0.1:3", 1)],
    );
    let seen = count(&b, 300, |_| Vec::new());
    assert_eq!(seen.len(), 3);
    assert!(seen.values().all(|n| *n == 100), "{seen:?}");
    let mut it = b.iter(b"");
    let mut all = Vec::new();
    while let Some(x) = it.next() {
        all.push(x.addr.to_string());
    }
    all.sort();
    assert_eq!(all, ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
}
