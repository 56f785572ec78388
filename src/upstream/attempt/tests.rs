//! The retry and give-up rules every listener kind shares, on pools built in process
//! (no sockets: a backend "fails" when the test says so).

use super::*;
use crate::upstream::{BackendSpec, PoolSpec};
use crate::vocab::Balance;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A pool of `n` backends (127.0.0.1:1 …) with `retries`, balanced round robin.
fn pool(n: u16, retries: usize) -> Arc<Pool> {
    let spec = PoolSpec {
        name: "p".into(),
        backends: (1..=n)
            .map(|port| BackendSpec {
                addr: ([127, 0, 0, 1], port).into(),
                weight: 1,
            })
            .collect(),
        balance: Balance::RoundRobin,
        health_check: None,
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        retries,
        link: Default::default(),
        proxy_protocol: None,
    };
    Pool::build(spec).0
}

fn connect_failures(pool: &Pool) -> Vec<u64> {
    pool.table()
        .iter()
        .map(|b| b.connect_failures.load(Ordering::Relaxed))
        .collect()
}

#[test]
fn nothing_eligible_gives_up_at_once() {
    let pool = pool(2, 1);
    for b in pool.table().iter() {
        b.set_healthy(false);
    }
    let mut attempt = pool.attempt();
    assert_eq!(attempt.next(b""), Err(GiveUp::NoneEligible));
    assert_eq!(GiveUp::NoneEligible.status(), 503);
    assert_eq!(attempt.backend(), None);
}

#[test]
fn a_failed_connect_is_retried_while_retries_allow() {
    let pool = pool(3, 1);
    let mut attempt = pool.attempt();
    let first = attempt.next(b"").unwrap();
    assert_eq!(attempt.connect_failed(), Ok(()), "one retry allowed");
    let second = attempt.next(b"").unwrap();
    assert_ne!(first, second, "the retry goes to another backend");
    assert_eq!(attempt.connect_failed(), Err(GiveUp::Exhausted));
    assert_eq!(GiveUp::Exhausted.status(), 502);
    assert_eq!(attempt.retries(), 1);
    assert_eq!(pool.table().retries(), 1);
    assert_eq!(connect_failures(&pool).iter().sum::<u64>(), 2);
    assert_eq!(
        attempt.backend(),
        Some(second),
        "the log names the last one tried"
    );
}

#[test]
fn no_retry_when_no_other_backend_is_eligible() {
    let pool = pool(2, 5);
    let mut attempt = pool.attempt();
    let first = attempt.next(b"").unwrap();
    for b in pool.table().iter().filter(|b| b.addr != first) {
        b.set_healthy(false);
    }
    assert_eq!(attempt.connect_failed(), Err(GiveUp::Exhausted));
    assert_eq!(attempt.retries(), 0);
}

#[test]
fn every_backend_tried_then_exhausted() {
    let pool = pool(2, 5);
    let mut attempt = pool.attempt();
    attempt.next(b"").unwrap();
    assert_eq!(attempt.connect_failed(), Ok(()));
    attempt.next(b"").unwrap();
    assert_eq!(attempt.connect_failed(), Err(GiveUp::Exhausted));
    assert_eq!(attempt.next(b""), Err(GiveUp::Exhausted));
}

#[test]
fn the_chosen_backend_is_active_until_the_attempt_moves_on_or_ends() {
    let pool = pool(2, 1);
    let active = |pool: &Pool| -> usize {
        pool.table()
            .iter()
            .map(|b| b.active.load(Ordering::Relaxed))
            .sum()
    };
    let mut attempt = pool.attempt();
    attempt.next(b"").unwrap();
    assert_eq!(active(&pool), 1);
    attempt.connect_failed().unwrap();
    assert_eq!(active(&pool), 0, "a failed backend is no longer active");
    attempt.next(b"").unwrap();
    assert_eq!(active(&pool), 1);
    drop(attempt);
    assert_eq!(active(&pool), 0);
}

#[test]
fn a_failure_after_connecting_counts_on_the_backend() {
    let pool = pool(1, 0);
    let mut attempt = pool.attempt();
    attempt.next(b"").unwrap();
    attempt.failed();
    let b = pool.table().get(0);
    assert_eq!(b.errors.load(Ordering::Relaxed), 1);
    assert_eq!(b.total.load(Ordering::Relaxed), 1);
}
