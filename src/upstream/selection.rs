//! Backend selection for every `balance` mode behind one Pingora `BackendSelection`.
//!
//! Pingora provides weighted round robin, weighted random and ketama hashing; Tioga
//! adds `least_conn`, which reads the live active counts kept in [`BackendTable`].
//! One concrete selector type lets every pool use the same `LoadBalancer<Balancer>`.
//!
//! Requests are balanced round robin by [`SmoothRoundRobin`] rather than by Pingora's
//! weighted iterator, whose fallback (when its first pick is down) ignores weights, so
//! with a backend down the others stopped sharing in proportion to weight.

use super::slow_start;
use super::state::BackendTable;
use crate::vocab::Balance;
use pingora_load_balancing::selection::consistent::{KetamaHashing, OwnedNodeIterator};
use pingora_load_balancing::selection::weighted::WeightedIterator;
use pingora_load_balancing::selection::{
    algorithms, BackendIter, BackendSelection, Random, RoundRobin,
};
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a selector is built with: the pool's mode and its live per-backend counters.
pub(crate) struct BalanceConfig {
    /// The configured mode.
    pub(crate) balance: Balance,
    /// Live counters, read by `least_conn`.
    pub(crate) table: Arc<BackendTable>,
    /// The pool's `slow_start`, which `least_conn` applies to weights.
    pub(crate) slow_start: Option<std::time::Duration>,
}

/// The selector for one pool.
pub(crate) enum Balancer {
    /// Weighted round robin.
    RoundRobin(Arc<RoundRobin>),
    /// Weighted random.
    Random(Arc<Random>),
    /// Ketama consistent hashing.
    Hash(Arc<KetamaHashing>),
    /// Fewest active relative to weight.
    LeastConn(Arc<LeastConn>),
}

impl BackendSelection for Balancer {
    type Iter = BalancerIter;
    type Config = BalanceConfig;

    fn build_with_config(backends: &BTreeSet<Backend>, config: &BalanceConfig) -> Self {
        match config.balance {
            // p2c_ewma chooses in `p2c.rs`; the pool's LoadBalancer still needs one.
            Balance::RoundRobin | Balance::P2cEwma => {
                Balancer::RoundRobin(Arc::new(RoundRobin::build(backends)))
            }
            Balance::Random => Balancer::Random(Arc::new(Random::build(backends))),
            Balance::ConsistentHash(_) => Balancer::Hash(Arc::new(KetamaHashing::build(backends))),
            Balance::LeastConn => Balancer::LeastConn(Arc::new(LeastConn {
                backends: backends.iter().cloned().collect(),
                table: config.table.clone(),
                next: AtomicUsize::new(0),
                slow_start: config.slow_start,
            })),
        }
    }

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Balancer::RoundRobin(Arc::new(RoundRobin::build(backends)))
    }

    fn iter(self: &Arc<Self>, key: &[u8]) -> BalancerIter {
        match self.as_ref() {
            Balancer::RoundRobin(s) => BalancerIter::RoundRobin(s.iter(key)),
            Balancer::Random(s) => BalancerIter::Random(s.iter(key)),
            Balancer::Hash(s) => BalancerIter::Hash(s.iter(key)),
            Balancer::LeastConn(s) => BalancerIter::LeastConn(s.order()),
        }
    }
}

/// Iterator over candidates, first choice first.
pub(crate) enum BalancerIter {
    /// See [`Balancer::RoundRobin`].
    RoundRobin(WeightedIterator<algorithms::RoundRobin>),
    /// See [`Balancer::Random`].
    Random(WeightedIterator<algorithms::Random>),
    /// See [`Balancer::Hash`].
    Hash(OwnedNodeIterator),
    /// See [`Balancer::LeastConn`].
    LeastConn(LeastConnIter),
}

impl BackendIter for BalancerIter {
    fn next(&mut self) -> Option<&Backend> {
        match self {
            BalancerIter::RoundRobin(i) => i.next(),
            BalancerIter::Random(i) => i.next(),
            BalancerIter::Hash(i) => i.next(),
            BalancerIter::LeastConn(i) => i.next(),
        }
    }
}

/// Smooth weighted round robin, as nginx does it: at each pick every eligible
/// backend's current weight grows by its weight, the largest wins and gives back the
/// sum of the eligible weights. Over any run of picks with the same eligible set each
/// backend gets its share of weight exactly, interleaved (weights 1 and 3 give
/// `b a b b`, not `a b b b`), and a backend that is down or already tried simply takes
/// no part.
pub(crate) struct SmoothRoundRobin {
    /// Weights, in [`BackendTable`] order.
    weights: Vec<i64>,
    /// Current weights. One short lock per pick: a pass over the pool's weights.
    current: Mutex<Vec<i64>>,
}

impl SmoothRoundRobin {
    /// For the backends of `table`, with their weights.
    pub(crate) fn new(table: &BackendTable) -> Self {
        let weights: Vec<i64> = table
            .iter()
            .map(|b| i64::try_from(b.weight().max(1)).unwrap_or(i64::MAX / 1024))
            .collect();
        Self {
            current: Mutex::new(vec![0; weights.len()]),
            weights,
        }
    }

    /// The index (in table order) of the next backend among those `eligible` accepts.
    pub(crate) fn pick(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_weighted(eligible, |_, w| w)
    }

    /// [`Self::pick`] with each backend's weight first passed through `weight(i, w)`
    /// (slow start scales it down for a while).
    pub(crate) fn pick_weighted(
        &self,
        eligible: impl Fn(usize) -> bool,
        weight: impl Fn(usize, i64) -> i64,
    ) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, &weight_i) in self.weights.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            let weight = weight(i, weight_i);
            current[i] = current[i].saturating_add(weight);
            total = total.saturating_add(weight);
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        current[chosen] = current[chosen].saturating_sub(total);
        Some(chosen)
    }
}

/// Least connections: the backend with the fewest active requests or connections
/// per unit of weight; ties are broken in rotation so equal backends share load.
pub(crate) struct LeastConn {
    backends: Vec<Backend>,
    table: Arc<BackendTable>,
    next: AtomicUsize,
    slow_start: Option<std::time::Duration>,
}

impl LeastConn {
    /// Candidates ordered by `active / weight`, ascending.
    fn order(self: &Arc<Self>) -> LeastConnIter {
        let n = self.backends.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        let now = self.slow_start.map(|_| tokio::time::Instant::now());
        let mut order: Vec<(usize, usize, usize)> = (0..n)
            .map(|k| {
                let i = (start + k) % n;
                let b = &self.backends[i];
                let weight = match (self.slow_start, now, self.table.index_of(&b.addr)) {
                    (Some(ramp), Some(now), Some(t)) => {
                        let f = slow_start::factor(self.table.get(t).back_since(), ramp, now);
                        slow_start::scaled(b.weight, f) as usize
                    }
                    _ => b.weight.max(1) * slow_start::SCALE as usize,
                };
                (i, self.table.active_of(&b.addr), weight)
            })
            .collect();
        // Stable sort keeps the rotation order among equal loads.
        order.sort_by(|a, b| (a.1 * b.2).cmp(&(b.1 * a.2)));
        LeastConnIter {
            owner: self.clone(),
            order: order.into_iter().map(|(i, _, _)| i).collect(),
            pos: 0,
        }
    }
}

/// Iterator for [`LeastConn`].
pub(crate) struct LeastConnIter {
    owner: Arc<LeastConn>,
    order: Vec<usize>,
    pos: usize,
}

impl BackendIter for LeastConnIter {
    fn next(&mut self) -> Option<&Backend> {
        let i = *self.order.get(self.pos)?;
        self.pos += 1;
        self.owner.backends.get(i)
    }
}

#[cfg(test)]
mod tests;
