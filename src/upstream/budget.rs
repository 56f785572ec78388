//! The retry budget: over a sliding window of [`WINDOW`] seconds, a pool makes at
//! most `ratio` × requests retries, plus a reserve of `min_per_second` × window so
//! that a quiet pool can still retry (as Finagle's and linkerd's budgets do). When
//! every backend fails, retries stay a fraction of the traffic instead of
//! multiplying it.
//!
//! The window is kept in one-second buckets; a request deposits into the current
//! bucket and a retry withdraws from it when the window's total allows.

use super::policy::BudgetSpec;
use std::sync::Mutex;
use tokio::time::Instant;

/// Length of the sliding window, in seconds.
pub(crate) const WINDOW: usize = 10;

/// One pool's retry budget.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    spec: BudgetSpec,
    epoch: Instant,
    buckets: Mutex<[Bucket; WINDOW]>,
}

/// Requests and retries of one second.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    requests: u64,
    retries: u64,
}

impl RetryBudget {
    /// An empty budget with `spec`'s limits.
    pub(crate) fn new(spec: BudgetSpec) -> Self {
        Self {
            spec,
            epoch: Instant::now(),
            buckets: Mutex::new([Bucket::default(); WINDOW]),
        }
    }

    /// Counts one request (or connection) at `now`.
    pub(crate) fn deposit(&self, now: Instant) {
        let second = self.second(now);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        current(&mut buckets, second).requests += 1;
    }

    /// Takes one retry at `now` if the window allows it.
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let second = self.second(now);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let live = |b: &&Bucket| b.second + (WINDOW as u64) > second;
        let (requests, retries) = buckets
            .iter()
            .filter(live)
            .fold((0, 0), |(q, r), b| (q + b.requests, r + b.retries));
        let reserve = u64::from(self.spec.min_per_second) * WINDOW as u64;
        let allowed = (self.spec.ratio * requests as f64) as u64 + reserve;
        if retries >= allowed {
            return false;
        }
        current(&mut buckets, second).retries += 1;
        true
    }

    /// Whole seconds since the budget was made, plus one (0 marks an unused bucket).
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() + 1
    }
}

/// The bucket of `second`, emptied first if it held an older second.
fn current(buckets: &mut [Bucket; WINDOW], second: u64) -> &mut Bucket {
    let b = &mut buckets[(second % WINDOW as u64) as usize];
    if b.second != second {
        *b = Bucket {
            second,
            ..Bucket::default()
        };
    }
    b
}

#[cfg(test)]
mod tests;
