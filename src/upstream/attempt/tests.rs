//! The retry and give-up rules every listener kind shares, on pools built in process
//! (no sockets: a backend "fails" when the test says so).

use super::*;
use crate::upstream::policy::{BudgetSpec, OutlierSpec, Resilience, RetryOn};
use crate::upstream::state::{AdminState, Reason};
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
        resilience: Default::default(),
        discovery: None,
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
    let table = pool.table();
    let b = table.get(0);
    assert_eq!(b.errors.load(Ordering::Relaxed), 1);
    assert_eq!(b.total.load(Ordering::Relaxed), 1);
}

/// [`pool`] with `resilience` settings.
fn pool_with(n: u16, retries: usize, resilience: Resilience) -> Arc<Pool> {
    let base = pool(n, retries);
    let mut spec = base.spec.clone();
    spec.resilience = resilience;
    Pool::build(spec).0
}

fn outlier(consecutive_failures: u32, base_secs: u64, max_ejected_percent: u32) -> Resilience {
    Resilience {
        outlier: Some(OutlierSpec {
            consecutive_failures,
            base_ejection: Duration::from_secs(base_secs),
            max_ejected_percent,
        }),
        ..Resilience::default()
    }
}

/// Makes backend `addr` answer `status` `n` times.
fn answer(pool: &Arc<Pool>, addr: SocketAddr, status: u16, n: usize) {
    let mut done = 0;
    for _ in 0..n * pool.table().len() * 4 {
        let mut attempt = pool.attempt();
        if attempt.next(b"") == Ok(addr) {
            attempt.answered(status);
            done += 1;
            if done == n {
                return;
            }
        }
    }
    panic!("{addr} was chosen only {done} times of {n}");
}

fn chosen(pool: &Arc<Pool>, n: usize) -> Vec<SocketAddr> {
    (0..n).map(|_| pool.attempt().next(b"").unwrap()).collect()
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_eject_a_backend_until_its_time_is_up() {
    let pool = pool_with(3, 1, outlier(3, 10, 50));
    let bad = pool.table().get(0).addr;
    answer(&pool, bad, 500, 2);
    assert!(pool.table().get(0).eligible(), "2 failures of 3: still in");
    answer(&pool, bad, 500, 1);
    let table = pool.table();
    let b = table.get(0);
    assert!(!b.eligible());
    assert_eq!(b.reasons(), vec![Reason::Outlier]);
    assert!(!chosen(&pool, 20).contains(&bad));
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert!(
        !pool.table().get(0).eligible(),
        "out for the whole base_ejection"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(pool.table().get(0).eligible(), "back after base_ejection");
    assert!(chosen(&pool, 3).contains(&bad));
    // A relapse: out for twice as long.
    answer(&pool, bad, 503, 3);
    tokio::time::advance(Duration::from_millis(19_999)).await;
    assert!(!pool.table().get(0).eligible());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(pool.table().get(0).eligible());
}

#[tokio::test(start_paused = true)]
async fn a_success_between_failures_keeps_the_backend_in() {
    let pool = pool_with(2, 1, outlier(3, 10, 50));
    let addr = pool.table().get(0).addr;
    for _ in 0..5 {
        answer(&pool, addr, 500, 2);
        answer(&pool, addr, 200, 1);
    }
    assert!(pool.table().get(0).eligible());
}

#[tokio::test(start_paused = true)]
async fn connect_failures_eject_too_and_max_ejected_holds() {
    let pool = pool_with(4, 0, outlier(1, 10, 50));
    for _ in 0..40 {
        let mut attempt = pool.attempt();
        if attempt.next(b"").is_ok() {
            let _ = attempt.connect_failed();
        }
    }
    let out = pool.table().iter().filter(|b| !b.eligible()).count();
    assert_eq!(out, 2, "50% of 4 at most");
}

#[tokio::test(start_paused = true)]
async fn below_panic_threshold_selection_fails_open() {
    let mut r = outlier(1, 60, 100);
    r.panic_threshold = Some(50);
    let pool = pool_with(4, 0, r);
    let (a, b) = (pool.table().get(0).addr, pool.table().get(1).addr);
    answer(&pool, a, 500, 1);
    answer(&pool, b, 500, 1);
    // 2 of 4 healthy is not below 50%: the ejected ones stay out.
    let picks = chosen(&pool, 20);
    assert!(!picks.contains(&a) && !picks.contains(&b));
    assert_eq!(pool.table().panics(), 0);
    answer(&pool, pool.table().get(2).addr, 500, 1);
    // 1 of 4: every backend is used again, and it is counted.
    let picks = chosen(&pool, 40);
    assert!(picks.contains(&a) && picks.contains(&b));
    assert!(pool.table().panics() >= 40);
    // The operator's choices still hold in fail-open mode.
    pool.table().get(0).set_admin_state(AdminState::Maint);
    assert!(!chosen(&pool, 20).contains(&a));
}

#[test]
fn drain_and_maint_take_a_backend_out_with_their_reason() {
    let pool = pool(2, 1);
    let table = pool.table();
    let b = table.get(0);
    b.set_admin_state(AdminState::Drain);
    assert_eq!(b.reasons(), vec![Reason::Drain]);
    assert!(!chosen(&pool, 10).contains(&b.addr));
    b.set_admin_state(AdminState::Maint);
    b.set_healthy(false);
    assert_eq!(b.reasons(), vec![Reason::Probe, Reason::Maint]);
    b.set_admin_state(AdminState::Ready);
    b.set_healthy(true);
    assert!(b.reasons().is_empty());
    assert!(chosen(&pool, 10).contains(&b.addr));
}

#[test]
fn only_listed_conditions_are_retried_and_never_to_the_same_backend() {
    let on = RetryOn::NONE
        .with(Condition::Status503)
        .with(Condition::Reset);
    let pool = pool_with(
        3,
        5,
        Resilience {
            retry_on: on,
            ..Resilience::default()
        },
    );
    let mut attempt = pool.attempt();
    let first = attempt.next(b"").unwrap();
    assert_eq!(
        attempt.retry(Condition::Status502, true),
        Err(GiveUp::Exhausted)
    );
    let mut attempt = pool.attempt();
    let mut seen = vec![attempt.next(b"").unwrap()];
    assert_eq!(
        attempt.retry(Condition::Status503, false),
        Err(GiveUp::Exhausted),
        "not replayable"
    );
    let mut attempt = pool.attempt();
    seen.clear();
    seen.push(attempt.next(b"").unwrap());
    assert_eq!(attempt.retry(Condition::Status503, true), Ok(()));
    seen.push(attempt.next(b"").unwrap());
    assert_eq!(attempt.retry(Condition::Reset, true), Ok(()));
    seen.push(attempt.next(b"").unwrap());
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "three tries, three backends");
    assert_eq!(
        attempt.retry(Condition::Reset, true),
        Err(GiveUp::Exhausted),
        "none left"
    );
    assert_eq!(pool.table().retries_of(Condition::Status503), 1);
    assert_eq!(pool.table().retries_of(Condition::Reset), 1);
    let _ = first;
    // connect_failure is not listed: a failed connect is not retried either.
    let mut attempt = pool.attempt();
    attempt.next(b"").unwrap();
    assert_eq!(attempt.connect_failed(), Err(GiveUp::Exhausted));
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_retries() {
    let pool = pool_with(
        2,
        1,
        Resilience {
            retry_budget: Some(BudgetSpec {
                ratio: 0.2,
                min_per_second: 0,
            }),
            ..Resilience::default()
        },
    );
    let mut made = 0;
    for _ in 0..100 {
        let mut attempt = pool.attempt();
        attempt.next(b"").unwrap();
        if attempt.connect_failed().is_ok() {
            made += 1;
        }
    }
    assert_eq!(made, 20);
    assert_eq!(pool.table().budget_refused(), 80);
}

#[tokio::test(start_paused = true)]
async fn a_recovered_backend_ramps_up_over_slow_start() {
    let mut r = outlier(1, 1, 50);
    r.slow_start = Some(Duration::from_secs(10));
    let pool = pool_with(2, 1, r);
    let a = pool.table().get(0).addr;
    answer(&pool, a, 500, 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    let share = |pool: &Arc<Pool>| {
        let picks = chosen(pool, 1000);
        picks.iter().filter(|p| **p == a).count() as f64 / 1000.0
    };
    // Just back: about 1% of its weight against the other's 100%.
    assert!(share(&pool) < 0.03, "{}", share(&pool));
    tokio::time::advance(Duration::from_secs(5)).await;
    // Half way: weight 0.5 against 1, a third of the picks.
    let s = share(&pool);
    assert!((s - 1.0 / 3.0).abs() < 0.02, "{s}");
    tokio::time::advance(Duration::from_secs(5)).await;
    let s = share(&pool);
    assert!((s - 0.5).abs() < 0.01, "{s}");
}

#[tokio::test]
async fn a_new_set_of_backends_keeps_the_state_of_those_that_stay() {
    let pool = pool(3, 1);
    let (a, b) = (pool.table().get(0).addr, pool.table().get(1).addr);
    let mut held = pool.attempt();
    assert_eq!(held.next(b""), Ok(a));
    held.failed();
    let c: SocketAddr = ([127, 0, 0, 1], 99).into();
    pool.set_backends(&[
        BackendSpec { addr: a, weight: 1 },
        BackendSpec { addr: c, weight: 1 },
    ])
    .await;
    let table = pool.table();
    assert_eq!(table.len(), 2);
    let kept = table.get(0);
    assert_eq!(kept.addr, a);
    assert_eq!(kept.errors.load(Ordering::Relaxed), 1, "counters kept");
    assert_eq!(kept.active.load(Ordering::Relaxed), 1, "in flight kept");
    drop(held);
    assert_eq!(kept.active.load(Ordering::Relaxed), 0);
    let picks = chosen(&pool, 10);
    assert!(!picks.contains(&b) && picks.contains(&c));
}
