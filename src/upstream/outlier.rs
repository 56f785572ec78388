//! Passive health (outlier detection): a backend that fails `consecutive_failures`
//! times in a row (connect failures, resets, 5xx answers) is ejected for
//! `base_ejection`, doubled for each repeated ejection, while no more than
//! `max_ejected` of the pool is out this way. No probe is involved: an ejected
//! backend is eligible again once its time is up, and a success resets its count.
//!
//! The doubling forgets: each full `base_ejection` a backend spends back in service
//! without being ejected takes one step off its streak (Envoy decrements its
//! multiplier the same way), so a backend that failed once last week does not start
//! at a long ejection. The exponent stops at [`MAX_DOUBLINGS`].

use super::policy::OutlierSpec;
use serde::Serialize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The most times an ejection is doubled (1024 × `base_ejection`).
pub(crate) const MAX_DOUBLINGS: u32 = 10;

/// One backend's passive-health record.
#[derive(Debug, Default)]
pub(crate) struct OutlierState {
    /// Failures since the last success.
    failures: AtomicU32,
    /// When the current (or last) ejection ends, in nanoseconds after the table's
    /// epoch, plus one; 0 when never ejected.
    until: AtomicU64,
    /// Repeated ejections, for the doubling.
    streak: AtomicU32,
    /// Ejections so far.
    pub(crate) ejections: AtomicU64,
    /// The backend's counters when it was last ejected.
    last: Mutex<Option<Ejection>>,
}

/// A backend's counters at the moment of its last ejection, shown in `/status`: with
/// the counters of now they tell failures of requests already under way when it was
/// ejected from any that started after (there should be none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Ejection {
    /// The consecutive failures that ejected it.
    pub(crate) consecutive: u32,
    /// Requests or connections handed to it until then.
    pub(crate) requests: u64,
    /// Connect failures and errors recorded on it until then.
    pub(crate) failures: u64,
    /// Requests or connections in flight on it then, the ejecting one included.
    pub(crate) in_flight: usize,
}

impl OutlierState {
    /// Whether an ejection is running at `now` (nanoseconds after the epoch).
    pub(crate) fn ejected_at(&self, now: u64) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        until != 0 && now < until - 1
    }

    /// Whether any ejection ever happened (a cheap test before reading the clock).
    pub(crate) fn ever_ejected(&self) -> bool {
        self.until.load(Ordering::Relaxed) != 0
    }

    /// When the last ejection ended or ends (nanoseconds after the epoch).
    pub(crate) fn ends_at(&self) -> Option<u64> {
        match self.until.load(Ordering::Relaxed) {
            0 => None,
            until => Some(until - 1),
        }
    }

    /// The counters at the last ejection.
    pub(crate) fn last_ejection(&self) -> Option<Ejection> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the counters of an ejection just made.
    pub(crate) fn note_ejection(&self, e: Ejection) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }
}

impl OutlierState {
    /// Records a success: the failure count starts again.
    pub(crate) fn success(&self) {
        // Read first: most requests succeed, and a store would dirty the cache line.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure at `now` (nanoseconds after the table's epoch); returns the
    /// ejection's length and the consecutive failures that made it when this failure
    /// ejects the backend. `ejected` counts the
    /// pool's backends ejected now, and `n` is the pool's size.
    pub(crate) fn failure(
        &self,
        spec: &OutlierSpec,
        now: u64,
        ejected: impl FnOnce() -> usize,
        n: usize,
    ) -> Option<(Duration, u32)> {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < spec.consecutive_failures {
            return None;
        }
        let until = self.until.load(Ordering::Relaxed);
        if until != 0 && now < until - 1 {
            return None;
        }
        if ejected() >= spec.max_ejected(n) {
            return None;
        }
        // Forget one step of the streak per full base_ejection spent back in service.
        let base = spec.base_ejection.as_nanos().max(1) as u64;
        let served = match until {
            0 => u64::MAX,
            _ => now - (until - 1),
        };
        let forgotten = u32::try_from(served / base).unwrap_or(u32::MAX);
        let streak = self
            .streak
            .load(Ordering::Relaxed)
            .saturating_sub(forgotten)
            + 1;
        let length = spec.base_ejection * (1u32 << (streak - 1).min(MAX_DOUBLINGS));
        let new_until = now.saturating_add(length.as_nanos() as u64) + 1;
        // Another thread may be ejecting the same backend: one of them wins.
        if self
            .until
            .compare_exchange(until, new_until, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        self.streak.store(streak, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        Some((length, failures))
    }
}

#[cfg(test)]
mod tests;
