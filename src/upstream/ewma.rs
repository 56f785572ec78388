//! Peak-EWMA latency per backend, for `balance: p2c_ewma` (as Finagle's and linkerd's
//! balancers keep it): a slower answer than the average raises it at once (the peak),
//! a faster one pulls it down with weight `1 - e^(-Δt/τ)`, Δt being the time since the
//! last update, so the average forgets at the same pace whatever the request rate.
//! Reading it decays it towards zero the same way, so a backend that got no traffic
//! because it was slow is tried again once its record has aged.
//!
//! τ is [`DECAY`]: a backend ten times slower than the others, once fast again, is back
//! to a fair share within about 5 s.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// τ, the time constant of the decay.
pub(crate) const DECAY: Duration = Duration::from_secs(2);

/// One backend's latency record.
#[derive(Debug)]
pub(crate) struct Ewma {
    /// (cost in nanoseconds, when it was last updated).
    inner: Mutex<(f64, Option<Instant>)>,
}

impl Default for Ewma {
    fn default() -> Self {
        Self {
            inner: Mutex::new((0.0, None)),
        }
    }
}

impl Ewma {
    /// Records a round trip of `rtt` that ended at `now`.
    pub(crate) fn observe(&self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (cost, stamp) = *inner;
        let cost = if rtt > cost {
            rtt
        } else {
            let w = weight(stamp, now);
            cost * w + rtt * (1.0 - w)
        };
        *inner = (cost, Some(now));
    }

    /// The cost at `now` (nanoseconds), decayed towards zero since the last update.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0 * weight(inner.1, now)
    }
}

/// e^(-Δt/τ): how much of the old average is kept after Δt.
fn weight(stamp: Option<Instant>, now: Instant) -> f64 {
    let Some(stamp) = stamp else { return 0.0 };
    let dt = now.saturating_duration_since(stamp).as_secs_f64();
    (-dt / DECAY.as_secs_f64()).exp()
}

/// What a backend costs to choose: its latency times the requests it would have in
/// flight, per unit of weight. A backend with no record yet costs a large penalty
/// per request in flight, so new ones are tried, one request at a time.
pub(crate) fn score(cost: f64, active: usize, weight: f64) -> f64 {
    const PENALTY: f64 = 1e12;
    let load = (active + 1) as f64;
    let base = if cost == 0.0 && active > 0 {
        PENALTY * load
    } else {
        cost * load
    };
    base / weight.max(1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_raises_the_cost_at_once() {
        let e = Ewma::default();
        let now = Instant::now();
        e.observe(MS, now);
        e.observe(100 * MS, now);
        assert_eq!(e.cost(now), 100e6);
    }

    #[tokio::test(start_paused = true)]
    async fn fast_answers_pull_it_down_at_the_decay_rate() {
        let e = Ewma::default();
        let start = Instant::now();
        e.observe(100 * MS, start);
        // Many fast answers over one τ: the old cost keeps e^-1 of its weight,
        // however many answers there were.
        for i in 1..=100 {
            e.observe(MS, start + DECAY * i / 100);
        }
        let end = start + DECAY;
        let expect = 100e6 * (-1f64).exp() + 1e6 * (1.0 - (-1f64).exp());
        assert!(
            (e.cost(end) - expect).abs() / expect < 1e-6,
            "{}",
            e.cost(end)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_record_decays_towards_zero() {
        let e = Ewma::default();
        let start = Instant::now();
        e.observe(50 * MS, start);
        tokio::time::advance(DECAY * 3).await;
        let c = e.cost(Instant::now());
        assert!((c - 50e6 * (-3f64).exp()).abs() < 1.0, "{c}");
    }

    #[test]
    fn load_and_weight_scale_the_score() {
        assert_eq!(score(10.0, 0, 1.0), 10.0);
        assert_eq!(score(10.0, 3, 1.0), 40.0);
        assert_eq!(score(10.0, 3, 2.0), 20.0);
        assert!(
            score(0.0, 1, 1.0) > score(1e9, 1, 1.0),
            "unknown and busy: penalty"
        );
        assert_eq!(score(0.0, 0, 1.0), 0.0, "unknown and idle: try it");
    }
}
