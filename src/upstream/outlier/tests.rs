//! Ejection timing, doubling and its decay, on explicit clocks (nanoseconds after an
//! epoch); the pool-level `max_ejected` and eligibility tests in `attempt/tests.rs`
//! run on tokio's paused clock.

use super::*;

const SEC: u64 = 1_000_000_000;

fn spec(consecutive_failures: u32, base_secs: u64) -> OutlierSpec {
    OutlierSpec {
        consecutive_failures,
        base_ejection: Duration::from_secs(base_secs),
        max_ejected_percent: 100,
    }
}

/// Fails `state` `n` times at `now`; the ejection length of the last one, if any.
fn fail(state: &OutlierState, spec: &OutlierSpec, n: u32, now: u64) -> Option<Duration> {
    (0..n)
        .map(|_| state.failure(spec, now, || 0, 10))
        .last()
        .flatten()
        .map(|(length, consecutive)| {
            assert_eq!(consecutive, spec.consecutive_failures);
            length
        })
}

#[test]
fn ejects_on_the_nth_consecutive_failure_only() {
    let (s, spec) = (OutlierState::default(), spec(5, 30));
    assert_eq!(fail(&s, &spec, 4, SEC), None);
    assert!(!s.ejected_at(SEC));
    assert_eq!(fail(&s, &spec, 1, SEC), Some(Duration::from_secs(30)));
    assert!(s.ejected_at(SEC));
    assert!(s.ejected_at(31 * SEC - 1), "still out just before 30 s");
    assert!(!s.ejected_at(31 * SEC), "back after exactly base_ejection");
}

#[test]
fn a_success_starts_the_count_again() {
    let (s, spec) = (OutlierState::default(), spec(3, 10));
    fail(&s, &spec, 2, 0);
    s.success();
    assert_eq!(fail(&s, &spec, 2, 0), None, "2 after the success: not yet");
    assert!(fail(&s, &spec, 1, 0).is_some());
}

#[test]
fn a_relapse_doubles_the_ejection_each_time() {
    let (s, spec) = (OutlierState::default(), spec(1, 10));
    let mut now = 0;
    for expect in [10, 20, 40, 80] {
        let length = fail(&s, &spec, 1, now).expect("ejected");
        assert_eq!(length, Duration::from_secs(expect));
        // Comes back, fails again at once.
        now += length.as_nanos() as u64;
        assert!(!s.ejected_at(now));
    }
    assert_eq!(s.ejections.load(Ordering::Relaxed), 4);
}

#[test]
fn failures_while_ejected_do_not_extend_it() {
    let (s, spec) = (OutlierState::default(), spec(1, 10));
    fail(&s, &spec, 1, 0);
    assert_eq!(fail(&s, &spec, 5, 5 * SEC), None);
    assert!(!s.ejected_at(10 * SEC));
}

#[test]
fn the_doubling_is_forgotten_one_step_per_base_ejection_in_service() {
    let (s, spec) = (OutlierState::default(), spec(1, 10));
    fail(&s, &spec, 1, 0); // 10 s, back at 10 s
    fail(&s, &spec, 1, 10 * SEC); // 20 s, back at 30 s
    fail(&s, &spec, 1, 30 * SEC); // 40 s, back at 70 s
                                  // In service 25 s (two full base periods): streak 3 → 1, so the next is 20 s.
    let length = fail(&s, &spec, 1, 95 * SEC);
    assert_eq!(length, Some(Duration::from_secs(20)));
    // A long healthy spell forgets everything.
    let length = fail(&s, &spec, 1, 10_000 * SEC);
    assert_eq!(length, Some(Duration::from_secs(10)));
}

#[test]
fn the_doubling_stops_at_its_cap() {
    let (s, spec) = (OutlierState::default(), spec(1, 1));
    let mut now = 0;
    let mut last = Duration::ZERO;
    for _ in 0..(MAX_DOUBLINGS + 5) {
        last = fail(&s, &spec, 1, now).expect("ejected");
        now += last.as_nanos() as u64;
    }
    assert_eq!(last, Duration::from_secs(1 << MAX_DOUBLINGS));
}

#[test]
fn no_ejection_beyond_max_ejected() {
    let spec = OutlierSpec {
        max_ejected_percent: 50,
        ..spec(1, 10)
    };
    let s = OutlierState::default();
    // Half of 4 is 2: with 2 already out, this one stays in.
    assert_eq!(s.failure(&spec, 0, || 2, 4), None);
    assert!(!s.ejected_at(0));
    assert!(s.failure(&spec, 0, || 1, 4).is_some());
}

#[test]
fn max_ejected_rounds_down_but_allows_one() {
    let at = |percent, n| {
        OutlierSpec {
            max_ejected_percent: percent,
            ..spec(1, 1)
        }
        .max_ejected(n)
    };
    assert_eq!(at(50, 3), 1);
    assert_eq!(at(50, 4), 2);
    assert_eq!(at(10, 3), 1, "at least one");
    assert_eq!(at(0, 3), 0, "0% ejects none");
    assert_eq!(at(100, 3), 3);
}
