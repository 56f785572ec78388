//! Pools: one per configured pool, shared through an `Arc` by every listener that
//! names it.
//!
//! Every listener kind uses a pool the same way, through an [`Attempt`]: it picks a
//! backend, is told how connecting and answering went, and decides whether to try
//! another backend or give up, with a typed reason ([`GiveUp`]). Counters, retries
//! and the active count `least_conn` balances on are kept there, once.
//!
//! Each backend has one live state (`state.rs`), which selection reads. Pingora's
//! `LoadBalancer` owns the backend set and runs the active checks (interval, `rise` and
//! `fall` counting) as a background service, once per pool however many listeners
//! share it; its verdicts are written into that state by the check wrapper in
//! `health.rs`. Selection does not read the `LoadBalancer`'s own flags: the state here
//! is where later reasons to take a backend out (outliers, drain, maintenance) live
//! beside the probes' verdict.
//!
//! The resilience settings (`policy.rs`) act here too: passive health (`outlier.rs`)
//! is fed by every attempt's outcome, the retry budget (`budget.rs`) bounds retries,
//! and below `panic_threshold` healthy backends selection fails open over every
//! backend an operator has not taken out.

mod attempt;
mod budget;
mod ewma;
mod health;
mod outlier;
mod p2c;
pub(crate) mod policy;
mod queue;
mod selection;
mod slow_start;
mod spec;
pub(crate) mod state;
mod sticky;

use crate::vocab::Balance;
pub(crate) use attempt::{Attempt, GiveUp};
use futures::FutureExt;
use pingora_core::services::background::{background_service, GenBackgroundService};
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
pub(crate) use selection::{BalanceConfig, Balancer, SmoothRoundRobin};
pub(crate) use spec::{BackendSpec, HealthCheckSpec, PoolSpec};
use state::{BackendTable, Lease};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Backends already considered by one selection.
struct Seen {
    bits: u64,
    more: Vec<bool>,
    count: usize,
}

impl Seen {
    fn new(n: usize) -> Self {
        Self {
            bits: 0,
            more: if n > 64 { vec![false; n] } else { Vec::new() },
            count: 0,
        }
    }

    /// Marks `i`; false when it was marked already.
    fn insert(&mut self, i: usize) -> bool {
        let fresh = if self.more.is_empty() {
            let bit = 1u64 << i;
            let fresh = self.bits & bit == 0;
            self.bits |= bit;
            fresh
        } else {
            !std::mem::replace(&mut self.more[i], true)
        };
        self.count += usize::from(fresh);
        fresh
    }
}

/// The background service that runs a pool's health checks.
pub(crate) type HealthService = GenBackgroundService<LoadBalancer<Balancer>>;

/// A named, shared set of backends.
pub(crate) struct Pool {
    /// The validated settings.
    pub(crate) spec: PoolSpec,
    /// Runs the health checks (as a background service); kept for its lifetime.
    _lb: Arc<LoadBalancer<Balancer>>,
    /// How backends are chosen.
    picker: Picker,
    table: Arc<BackendTable>,
    max_iterations: usize,
    /// The retry budget, when configured.
    budget: Option<budget::RetryBudget>,
    /// Whether the last selection failed open (to log changes once).
    panicking: AtomicBool,
    /// Where requests wait when every backend is at `max_conns`.
    queue: Option<Arc<queue::WaitQueue>>,
    /// Sticky-session ids of the backends.
    sticky: Option<sticky::StickyIds>,
}

/// Which backends a selection may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Eligible ones only.
    Healthy,
    /// Fail-open: any the operator has not taken out (drain, maint).
    Panic,
}

/// How a pool chooses: `round_robin` picks among the eligible backends itself; the
/// other modes walk a selector's candidates, first choice first.
enum Picker {
    Smooth(SmoothRoundRobin),
    P2c,
    Walk(Arc<Balancer>),
}

/// A backend chosen for one request or connection.
#[derive(Debug)]
struct Chosen {
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// Counts the use as active until dropped.
    pub(crate) lease: Lease,
}

impl Pool {
    /// Builds the pool, and the background service to add to the server when it has a
    /// health check.
    pub(crate) fn build(spec: PoolSpec) -> (Arc<Pool>, Option<HealthService>) {
        let table = Arc::new(BackendTable::new(
            spec.backends.iter().map(|b| (b.addr, b.weight)),
        ));
        let set: BTreeSet<Backend> = spec
            .backends
            .iter()
            .map(|b| {
                let mut backend = Backend::new(&b.addr.to_string()).expect("validated address");
                backend.weight = b.weight;
                backend
            })
            .collect();
        let config = BalanceConfig {
            balance: spec.balance.clone(),
            table: table.clone(),
            slow_start: spec.resilience.slow_start,
        };
        let selector = Arc::new(Balancer::build_with_config(&set, &config));
        let mut lb =
            LoadBalancer::from_backends_with_config(Backends::new(Static::new(set)), Some(config));
        lb.update()
            .now_or_never()
            .expect("static discovery does not wait")
            .expect("static discovery does not fail");
        let (lb, service) = match &spec.health_check {
            Some(hc) => {
                lb.set_health_check(health::build(&spec.name, hc, table.clone()));
                lb.health_check_frequency = Some(hc.interval);
                lb.parallel_health_check = true;
                let service =
                    background_service(&format!("health checks of pool {}", spec.name), lb);
                (service.task(), Some(service))
            }
            None => (Arc::new(lb), None),
        };
        let max_iterations = spec.backends.len() * 8 + 16;
        let picker = match spec.balance {
            Balance::RoundRobin => Picker::Smooth(SmoothRoundRobin::new(&table)),
            Balance::P2cEwma => Picker::P2c,
            _ => Picker::Walk(selector),
        };
        let spec_queue = spec
            .resilience
            .max_conns
            .map(|(_, q)| Arc::new(queue::WaitQueue::new(q.size, q.timeout)));
        let sticky = spec.resilience.sticky.as_ref().map(|s| {
            let addrs: Vec<SocketAddr> = spec.backends.iter().map(|b| b.addr).collect();
            sticky::StickyIds::new(&spec.name, s, &addrs)
        });
        let pool = Pool {
            sticky,
            picker,
            budget: spec.resilience.retry_budget.map(budget::RetryBudget::new),
            spec,
            _lb: lb,
            table,
            max_iterations,
            panicking: AtomicBool::new(false),
            queue: spec_queue,
        };
        (Arc::new(pool), service)
    }

    /// The pool's name.
    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    /// Starts one request's or connection's use of the pool.
    pub(crate) fn attempt(self: &Arc<Self>) -> Attempt {
        Attempt::new(self.clone())
    }

    /// Chooses an eligible backend for `key` (used by `consistent_hash`), skipping
    /// those in `tried`.
    fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Chosen> {
        let mode = self.mode();
        let selector = match &self.picker {
            Picker::Smooth(rr) => {
                let eligible = |i| self.eligible(i, tried, mode);
                let picked = match self.spec.resilience.slow_start {
                    None => rr.pick(eligible),
                    Some(ramp) => {
                        let now = tokio::time::Instant::now();
                        rr.pick_weighted(eligible, |i, w| {
                            let f = slow_start::factor(self.table.get(i).back_since(), ramp, now);
                            slow_start::scaled(w as usize, f)
                        })
                    }
                };
                return picked.and_then(|i| self.chosen(i));
            }
            Picker::P2c => {
                let now = tokio::time::Instant::now();
                let ramp = self.spec.resilience.slow_start;
                let probe = |i: usize| {
                    let b = self.table.get(i);
                    let factor = ramp.map_or(1.0, |r| slow_start::factor(b.back_since(), r, now));
                    let active = b.active.load(Ordering::Relaxed);
                    (b.ewma.cost(now), active, b.weight as f64 * factor)
                };
                let eligible = |i| self.eligible(i, tried, mode);
                return p2c::pick(self.table.len(), eligible, &probe, |k| fastrand::usize(..k))
                    .and_then(|i| self.chosen(i));
            }
            Picker::Walk(selector) => selector,
        };
        // Walk the pool's selector directly: Pingora's `select_with` would allocate a
        // `HashSet` and hash every candidate twice per request. Candidates are marked in
        // a bit set (pools of up to 64 backends; larger ones fall back to a vector).
        let mut iter = selector.iter(key);
        let mut seen = Seen::new(self.table.len());
        for _ in 0..self.max_iterations {
            let backend = iter.next()?;
            let Some(index) = self.table.index_of(&backend.addr) else {
                continue;
            };
            if !seen.insert(index) {
                continue;
            }
            if self.eligible(index, tried, mode) {
                return self.chosen(index);
            }
            if seen.count == self.table.len() {
                return None;
            }
        }
        None
    }

    /// Whether backend `i` may be chosen in `mode`, is not in `tried` and has room.
    fn eligible(&self, i: usize, tried: &[SocketAddr], mode: Mode) -> bool {
        self.usable(i, tried, mode) && self.has_room(i)
    }

    /// [`Self::eligible`] but for `max_conns`.
    fn usable(&self, i: usize, tried: &[SocketAddr], mode: Mode) -> bool {
        let state = self.table.get(i);
        let ok = match mode {
            Mode::Healthy => state.eligible(),
            Mode::Panic => state.admin_ready(),
        };
        ok && !tried.contains(&state.addr)
    }

    /// Fail-open when fewer than `panic_threshold` percent of the backends are
    /// eligible; logs each change and counts each selection made so.
    fn mode(&self) -> Mode {
        let Some(threshold) = self.spec.resilience.panic_threshold else {
            return Mode::Healthy;
        };
        let n = self.table.len();
        let healthy = self.table.iter().filter(|b| b.eligible()).count();
        let panic = healthy * 100 < threshold as usize * n;
        if self.panicking.swap(panic, Ordering::Relaxed) != panic {
            if panic {
                log::warn!(
                    "pool {}: only {healthy} of {n} backends healthy, below panic_threshold \
                     {threshold}%: balancing over every backend (fail open)",
                    self.name()
                );
            } else {
                log::warn!(
                    "pool {}: {healthy} of {n} backends healthy again: fail-open ends",
                    self.name()
                );
            }
        }
        if panic {
            self.table.count_panic();
            Mode::Panic
        } else {
            Mode::Healthy
        }
    }

    /// Records a failure of backend `i` for passive health; logs an ejection.
    fn outlier_failure(&self, i: usize) {
        let Some(spec) = &self.spec.resilience.outlier else {
            return;
        };
        let now = self.table.nanos(tokio::time::Instant::now());
        let ejected = || {
            let table = &self.table;
            table.iter().filter(|b| b.outlier.ejected_at(now)).count()
        };
        let state = &self.table.get(i).outlier;
        if let Some(length) = state.failure(spec, now, ejected, self.table.len()) {
            log::warn!(
                "pool {}: backend {} ejected for {length:?} after {} consecutive failures",
                self.name(),
                self.table.get(i).addr,
                spec.consecutive_failures
            );
        }
    }

    /// Records a success of backend `i` for passive health.
    fn outlier_success(&self, i: usize) {
        if self.spec.resilience.outlier.is_some() {
            self.table.get(i).outlier.success();
        }
    }

    /// Backend `i`, counted as active until the lease is dropped.
    /// `None` when `max_conns` was reached meanwhile.
    fn chosen(&self, i: usize) -> Option<Chosen> {
        let lease = match (&self.queue, self.spec.resilience.max_conns) {
            (Some(queue), Some((max, _))) => {
                Lease::within(self.table.clone(), i, max, queue.clone())?
            }
            _ => Lease::new(self.table.clone(), i),
        };
        Some(Chosen {
            addr: self.table.get(i).addr,
            lease,
        })
    }

    /// Whether backend `i` has fewer than `max_conns` in flight.
    fn has_room(&self, i: usize) -> bool {
        self.spec
            .resilience
            .max_conns
            .is_none_or(|(max, _)| self.table.get(i).active.load(Ordering::Acquire) < max)
    }

    /// Whether a backend not in `tried` would be chosen but for `max_conns`.
    fn all_busy(&self, tried: &[SocketAddr]) -> bool {
        let mode = self.mode();
        (0..self.table.len()).any(|i| self.usable(i, tried, mode) && !self.has_room(i))
    }

    /// The wait queue, with `max_conns`.
    fn queue(&self) -> Option<&queue::WaitQueue> {
        self.queue.as_deref()
    }

    /// Whether a backend other than those in `tried` is eligible.
    fn has_candidate(&self, tried: &[SocketAddr]) -> bool {
        let mode = self.mode();
        (0..self.table.len()).any(|i| self.usable(i, tried, mode))
    }

    /// The `Retry-After` for a client refused because every backend was busy: the
    /// queue's timeout in whole seconds, at least 1.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        let q = self.queue.as_ref()?;
        Some(q.timeout.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// The sticky cookie's settings, when the pool has them.
    pub(crate) fn sticky(&self) -> Option<&policy::StickySpec> {
        self.spec.resilience.sticky.as_ref()
    }

    /// The sticky id of backend `addr`.
    pub(crate) fn sticky_id(&self, addr: SocketAddr) -> Option<&str> {
        let ids = self.sticky.as_ref()?;
        let i = self.table.iter().position(|b| b.addr == addr)?;
        Some(ids.id(i))
    }

    /// The backend a sticky cookie names, while it may be chosen and has room.
    fn sticky_choice(&self, id: &[u8], tried: &[SocketAddr]) -> Option<Chosen> {
        let i = self.sticky.as_ref()?.find(id)?;
        if self.eligible(i, tried, Mode::Healthy) {
            self.chosen(i)
        } else {
            None
        }
    }

    /// With `max_conns`: `(waiting now, refused because full, timed out)`.
    pub(crate) fn queue_stats(&self) -> Option<(usize, u64, u64)> {
        let q = self.queue.as_ref()?;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Some((q.depth(), load(&q.refused), load(&q.timed_out)))
    }

    /// Live counters of every backend.
    pub(crate) fn table(&self) -> &Arc<BackendTable> {
        &self.table
    }

    /// Whether answers' latencies are recorded (for `p2c_ewma`).
    fn measures_latency(&self) -> bool {
        matches!(self.picker, Picker::P2c)
    }

    /// Whether selection uses a key at all.
    pub(crate) fn uses_key(&self) -> bool {
        matches!(self.spec.balance, Balance::ConsistentHash(_))
    }
}
