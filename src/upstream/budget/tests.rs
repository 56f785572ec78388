//! Budget accounting on a paused clock.

use super::*;
use std::time::Duration;

fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
    RetryBudget::new(BudgetSpec {
        ratio,
        min_per_second,
    })
}

/// Retries granted out of `n` asked for at `now`.
fn granted(b: &RetryBudget, n: usize, now: Instant) -> usize {
    (0..n).filter(|_| b.try_withdraw(now)).count()
}

#[tokio::test(start_paused = true)]
async fn retries_are_a_ratio_of_requests_plus_the_reserve() {
    let b = budget(0.2, 1);
    let now = Instant::now();
    for _ in 0..100 {
        b.deposit(now);
    }
    // 20% of 100 requests, plus 1/s over the 10 s window.
    assert_eq!(granted(&b, 1000, now), 20 + 10);
}

#[tokio::test(start_paused = true)]
async fn with_no_reserve_and_no_requests_nothing_is_retried() {
    let b = budget(0.5, 0);
    assert_eq!(granted(&b, 10, Instant::now()), 0);
    b.deposit(Instant::now());
    b.deposit(Instant::now());
    assert_eq!(granted(&b, 10, Instant::now()), 1);
}

#[tokio::test(start_paused = true)]
async fn old_requests_and_retries_leave_the_window() {
    let b = budget(0.1, 0);
    let start = Instant::now();
    for _ in 0..100 {
        b.deposit(start);
    }
    assert_eq!(granted(&b, 50, start), 10);
    tokio::time::advance(Duration::from_secs(5)).await;
    // Still inside the window: the 10 retries are spent.
    assert_eq!(granted(&b, 50, Instant::now()), 0);
    tokio::time::advance(Duration::from_secs(5)).await;
    // Ten seconds on, the first second's requests and retries are gone.
    assert_eq!(granted(&b, 50, Instant::now()), 0);
    for _ in 0..30 {
        b.deposit(Instant::now());
    }
    assert_eq!(granted(&b, 50, Instant::now()), 3);
}

#[tokio::test(start_paused = true)]
async fn the_window_slides_one_second_at_a_time() {
    let b = budget(1.0, 0);
    let start = Instant::now();
    for s in 0..WINDOW as u64 {
        let at = start + Duration::from_secs(s);
        b.deposit(at);
        assert!(b.try_withdraw(at), "second {s}: one request, one retry");
    }
    let later = start + Duration::from_secs(WINDOW as u64);
    // Second 0 left the window; its retry went with its request.
    b.deposit(later);
    assert!(b.try_withdraw(later));
    assert!(
        !b.try_withdraw(later),
        "every request in the window retried once"
    );
}
