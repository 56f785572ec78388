//! Slow start: a backend that comes back into service (its probe passes again, or its
//! ejection ends) does not take its full share at once. Its weight ramps linearly from
//! [`MIN_FACTOR`] of its weight to all of it over `slow_start`, so a cold cache or a
//! JIT-warming process is not flooded. Backends present from the start are at full
//! weight (all would ramp alike, which changes nothing).

use std::time::Duration;
use tokio::time::Instant;

/// The share of its weight a backend has the moment it comes back.
pub(crate) const MIN_FACTOR: f64 = 0.01;

/// Weights are scaled by this before the ramp so that fractions survive as integers.
pub(crate) const SCALE: i64 = 1000;

/// The fraction of its weight a backend back since `back` has at `now`.
pub(crate) fn factor(back: Option<Instant>, ramp: Duration, now: Instant) -> f64 {
    let Some(back) = back else { return 1.0 };
    let elapsed = now.saturating_duration_since(back);
    if elapsed >= ramp || ramp.is_zero() {
        return 1.0;
    }
    (elapsed.as_secs_f64() / ramp.as_secs_f64()).max(MIN_FACTOR)
}

/// `weight` × [`SCALE`] × `factor`, at least 1.
pub(crate) fn scaled(weight: usize, factor: f64) -> i64 {
    let full = i64::try_from(weight.max(1)).unwrap_or(i64::MAX / SCALE) * SCALE;
    if factor >= 1.0 {
        return full;
    }
    ((full as f64 * factor) as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_weight_ramps_linearly_over_slow_start() {
        let ramp = Duration::from_secs(30);
        let back = Instant::now();
        let at = |secs: u64| factor(Some(back), ramp, back + Duration::from_secs(secs));
        assert_eq!(at(0), MIN_FACTOR);
        assert!((at(15) - 0.5).abs() < 1e-9);
        assert!((at(24) - 0.8).abs() < 1e-9);
        assert_eq!(at(30), 1.0);
        assert_eq!(at(3000), 1.0);
        assert_eq!(factor(None, ramp, back), 1.0, "never out: full weight");
        tokio::time::advance(Duration::from_secs(6)).await;
        let now = Instant::now();
        assert_eq!(scaled(3, factor(Some(back), ramp, now)), 600);
    }

    #[test]
    fn a_scaled_weight_is_never_zero() {
        assert_eq!(scaled(1, 0.0), 1);
        assert_eq!(scaled(2, 1.0), 2 * SCALE);
    }
}
