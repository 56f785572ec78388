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
pub(crate) mod discovery;
mod ewma;
mod health;
mod link;
mod members;
mod outlier;
mod p2c;
pub(crate) mod policy;
pub(crate) mod proxy_header;
mod queue;
mod selection;
mod slow_start;
mod spec;
pub(crate) mod state;
mod sticky;

use crate::vocab::Balance;
pub(crate) use attempt::{Attempt, GiveUp, Outcomes};
use futures::FutureExt;
pub(crate) use link::{BackendTls, Link, PeerTemplate, Protocol};
use members::{Members, Picker};
use pingora_core::services::background::background_service;
use pingora_core::services::ServiceWithDependents;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::{Backends, LoadBalancer};
pub(crate) use selection::{BalanceConfig, Balancer};
pub(crate) use spec::{BackendSpec, HealthCheckSpec, PoolSpec};
use state::{BackendTable, Lease};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

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

/// A named, shared set of backends.
pub(crate) struct Pool {
    /// The validated settings.
    pub(crate) spec: PoolSpec,
    /// Runs the health checks (as a background service) over `probed`.
    lb: Arc<LoadBalancer<Balancer>>,
    /// The set the health checks probe: the current backends.
    probed: discovery::Probed,
    /// The current backends; replaced when DNS discovery finds a new set.
    members: Arc<RwLock<Arc<Members>>>,
    /// The retry budget, when configured.
    budget: Option<budget::RetryBudget>,
    /// Whether the last selection failed open (to log changes once).
    panicking: AtomicBool,
    /// Where requests wait when every backend is at `max_conns`.
    queue: Option<Arc<queue::WaitQueue>>,
    /// DNS discovery's lookups, failures and changes.
    pub(crate) discovery_counters: discovery::DiscoveryCounters,
}

/// Which backends a selection may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Eligible ones only.
    Healthy,
    /// Fail-open: any the operator has not taken out (drain, maint).
    Panic,
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
    /// Builds the pool, and the background services to add to the server: its health
    /// checks, and its DNS discovery.
    pub(crate) fn build(spec: PoolSpec) -> (Arc<Pool>, Vec<Box<dyn ServiceWithDependents>>) {
        let members = Members::build(&spec, &spec.backends, None);
        let table = members.table.clone();
        let members = Arc::new(RwLock::new(Arc::new(members)));
        let probed = discovery::Probed::new(members::backend_set(&spec.backends));
        let config = BalanceConfig {
            balance: spec.balance.clone(),
            table: table.clone(),
            slow_start: spec.resilience.slow_start,
        };
        let mut lb = LoadBalancer::from_backends_with_config(
            Backends::new(Box::new(probed.clone())),
            Some(config),
        );
        lb.update()
            .now_or_never()
            .expect("the probed set does not wait")
            .expect("the probed set does not fail");
        let mut services: Vec<Box<dyn ServiceWithDependents>> = Vec::new();
        let lb = match &spec.health_check {
            Some(hc) => {
                let current = members.clone();
                let current: health::CurrentTable = Arc::new(move || {
                    let m = current.read().unwrap_or_else(|e| e.into_inner());
                    m.table.clone()
                });
                lb.set_health_check(health::build(&spec.name, hc, spec.proxy_protocol, current));
                lb.health_check_frequency = Some(hc.interval);
                lb.parallel_health_check = true;
                let service =
                    background_service(&format!("health checks of pool {}", spec.name), lb);
                let task = service.task();
                services.push(Box::new(service));
                task
            }
            None => Arc::new(lb),
        };
        let queue = spec
            .resilience
            .max_conns
            .map(|(_, q)| Arc::new(queue::WaitQueue::new(q.size, q.timeout)));
        let pool = Arc::new(Pool {
            members,
            probed,
            budget: spec.resilience.retry_budget.map(budget::RetryBudget::new),
            spec,
            lb,
            panicking: AtomicBool::new(false),
            queue,
            discovery_counters: Default::default(),
        });
        if let Some(d) = pool.spec.discovery.clone() {
            services.push(discovery::service(pool.clone(), d));
        }
        (pool, services)
    }

    /// Replaces the set of backends (DNS discovery); those that stay keep their state,
    /// the probes' verdict included, and the health checks probe the new set from
    /// their next round.
    pub(crate) async fn set_backends(&self, backends: &[BackendSpec]) {
        self.set_members(backends);
        self.probed.set(members::backend_set(backends));
        if let Err(e) = self.lb.update().await {
            log::warn!(
                "pool {}: the health checks keep the last set: {e}",
                self.name()
            );
        }
    }

    /// Rebuilds the selection over `backends`; those that stay keep their state. The
    /// probed set is left as it is (the addresses are the same: a weight changed).
    fn set_members(&self, backends: &[BackendSpec]) {
        let mut slot = self.members.write().unwrap_or_else(|e| e.into_inner());
        let next = Members::build(&self.spec, backends, Some(&slot.table));
        *slot = Arc::new(next);
    }

    /// The pool's name.
    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    /// Starts one request's or connection's use of the pool.
    pub(crate) fn attempt(self: &Arc<Self>) -> Attempt {
        Attempt::new(self.clone())
    }

    /// The current set of backends (it changes only with DNS discovery).
    fn members(&self) -> Arc<Members> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Chooses an eligible backend for `key` (used by `consistent_hash`), skipping
    /// those in `tried`.
    fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Chosen> {
        let m = self.members();
        let t = &m.table;
        let mode = self.mode(t);
        let selector = match &m.picker {
            Picker::Smooth(rr) => {
                let eligible = |i| self.eligible(t, i, tried, mode);
                let picked = match self.spec.resilience.slow_start {
                    None => rr.pick(eligible),
                    Some(ramp) => {
                        let now = tokio::time::Instant::now();
                        rr.pick_weighted(eligible, |i, w| {
                            let f = slow_start::factor(t.get(i).back_since(), ramp, now);
                            slow_start::scaled(w as usize, f)
                        })
                    }
                };
                return picked.and_then(|i| self.chosen(t, i));
            }
            Picker::P2c => {
                let now = tokio::time::Instant::now();
                let ramp = self.spec.resilience.slow_start;
                let probe = |i: usize| {
                    let b = t.get(i);
                    let factor = ramp.map_or(1.0, |r| slow_start::factor(b.back_since(), r, now));
                    let active = b.active.load(Ordering::Relaxed);
                    (b.ewma.cost(now), active, b.weight() as f64 * factor)
                };
                let eligible = |i| self.eligible(t, i, tried, mode);
                return p2c::pick(t.len(), eligible, &probe, |k| fastrand::usize(..k))
                    .and_then(|i| self.chosen(t, i));
            }
            Picker::Walk(selector) => selector,
        };
        // Walk the pool's selector directly: Pingora's `select_with` would allocate a
        // `HashSet` and hash every candidate twice per request. Candidates are marked in
        // a bit set (pools of up to 64 backends; larger ones fall back to a vector).
        let mut iter = selector.iter(key);
        let mut seen = Seen::new(t.len());
        for _ in 0..m.max_iterations {
            let backend = iter.next()?;
            let Some(index) = t.index_of(&backend.addr) else {
                continue;
            };
            if !seen.insert(index) {
                continue;
            }
            if self.eligible(t, index, tried, mode) {
                return self.chosen(t, index);
            }
            if seen.count == t.len() {
                return None;
            }
        }
        None
    }

    /// Whether backend `i` may be chosen in `mode`, is not in `tried` and has room.
    fn eligible(&self, t: &Arc<BackendTable>, i: usize, tried: &[SocketAddr], mode: Mode) -> bool {
        self.usable(t, i, tried, mode) && self.has_room(t, i)
    }

    /// [`Self::eligible`] but for `max_conns`.
    fn usable(&self, t: &BackendTable, i: usize, tried: &[SocketAddr], mode: Mode) -> bool {
        let state = t.get(i);
        let ok = match mode {
            Mode::Healthy => state.eligible(),
            Mode::Panic => state.admin_ready(),
        };
        ok && !tried.contains(&state.addr)
    }

    /// Fail-open when fewer than `panic_threshold` percent of the backends are
    /// eligible; logs each change and counts each selection made so.
    fn mode(&self, t: &BackendTable) -> Mode {
        let Some(threshold) = self.spec.resilience.panic_threshold else {
            return Mode::Healthy;
        };
        let n = t.len();
        let healthy = t.iter().filter(|b| b.eligible()).count();
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
            t.count_panic();
            Mode::Panic
        } else {
            Mode::Healthy
        }
    }

    /// Records a failure of backend `i` of `t` for passive health; logs an ejection.
    fn outlier_failure(&self, t: &BackendTable, i: usize) {
        let Some(spec) = &self.spec.resilience.outlier else {
            return;
        };
        let now = t.nanos(tokio::time::Instant::now());
        let ejected = || t.iter().filter(|b| b.outlier.ejected_at(now)).count();
        let b = t.get(i);
        if let Some((length, consecutive)) = b.outlier.failure(spec, now, ejected, t.len()) {
            b.outlier.note_ejection(b.ejection(consecutive));
            log::warn!(
                "pool {}: backend {} ejected for {length:?} after {consecutive} consecutive \
                 failures",
                self.name(),
                b.addr,
            );
        }
    }

    /// Records a success of backend `i` of `t` for passive health.
    fn outlier_success(&self, t: &BackendTable, i: usize) {
        if self.spec.resilience.outlier.is_some() {
            t.get(i).outlier.success();
        }
    }

    /// Backend `i`, counted as active until the lease is dropped.
    /// `None` when `max_conns` was reached meanwhile.
    fn chosen(&self, t: &Arc<BackendTable>, i: usize) -> Option<Chosen> {
        let lease = match (&self.queue, self.spec.resilience.max_conns) {
            (Some(queue), Some((max, _))) => Lease::within(t.clone(), i, max, queue.clone())?,
            _ => Lease::new(t.clone(), i),
        };
        Some(Chosen {
            addr: t.get(i).addr,
            lease,
        })
    }

    /// Whether backend `i` has fewer than `max_conns` in flight.
    fn has_room(&self, t: &BackendTable, i: usize) -> bool {
        self.spec
            .resilience
            .max_conns
            .is_none_or(|(max, _)| t.get(i).active.load(Ordering::Acquire) < max)
    }

    /// Whether a backend not in `tried` would be chosen but for `max_conns`.
    fn all_busy(&self, tried: &[SocketAddr]) -> bool {
        let m = self.members();
        let t = &m.table;
        let mode = self.mode(t);
        (0..t.len()).any(|i| self.usable(t, i, tried, mode) && !self.has_room(t, i))
    }

    /// The wait queue, with `max_conns`.
    fn queue(&self) -> Option<&queue::WaitQueue> {
        self.queue.as_deref()
    }

    /// Whether a backend other than those in `tried` is eligible.
    fn has_candidate(&self, tried: &[SocketAddr]) -> bool {
        let m = self.members();
        let t = &m.table;
        let mode = self.mode(t);
        (0..t.len()).any(|i| self.usable(t, i, tried, mode))
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

    /// The sticky id of backend `addr` (ids depend on the address only).
    pub(crate) fn sticky_id(&self, addr: SocketAddr) -> Option<String> {
        let spec = self.sticky()?;
        let m = self.members();
        if let (Some(ids), Some(i)) = (&m.sticky, m.table.iter().position(|b| b.addr == addr)) {
            return Some(ids.id(i).to_string());
        }
        // A backend discovery has dropped since: its id all the same.
        Some(
            sticky::StickyIds::new(self.name(), spec, &[addr])
                .id(0)
                .to_string(),
        )
    }

    /// The backend a sticky cookie names, while it may be chosen and has room.
    fn sticky_choice(&self, id: &[u8], tried: &[SocketAddr]) -> Option<Chosen> {
        let m = self.members();
        let i = m.sticky.as_ref()?.find(id)?;
        if self.eligible(&m.table, i, tried, Mode::Healthy) {
            self.chosen(&m.table, i)
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

    /// Live counters of every backend of the current set.
    pub(crate) fn table(&self) -> Arc<BackendTable> {
        self.members().table.clone()
    }

    /// Whether answers' latencies are recorded (for `p2c_ewma`).
    fn measures_latency(&self) -> bool {
        matches!(self.spec.balance, Balance::P2cEwma)
    }

    /// Whether selection uses a key at all.
    pub(crate) fn uses_key(&self) -> bool {
        matches!(self.spec.balance, Balance::ConsistentHash(_))
    }

    /// Ends every operator's change (a reload): each backend ready, at its configured
    /// weight.
    pub(crate) fn reset_operator(&self) {
        let t = self.table();
        for b in t.iter() {
            b.set_admin_state(state::AdminState::Ready);
        }
        let configured = |b: &state::BackendState| {
            self.spec
                .backends
                .iter()
                .find(|s| s.addr == b.addr)
                .map_or(b.weight(), |s| s.weight)
        };
        if self.spec.discovery.is_none() && t.iter().any(|b| b.weight() != configured(b)) {
            self.set_members(&self.spec.backends);
        }
    }

    /// An operator's change to backend `addr` (admin API): its state, its weight (1 to
    /// 1000). A new weight rebuilds the selection as discovery does, so every backend
    /// keeps its state. `Err` names what is wrong; nothing changes then.
    pub(crate) fn set_by_operator(
        &self,
        addr: SocketAddr,
        state: Option<state::AdminState>,
        weight: Option<usize>,
    ) -> Result<(), String> {
        if weight.is_some_and(|w| !(1..=1000).contains(&w)) {
            return Err(
                "weight must be from 1 to 1000 (to take a backend out, use state drain or maint)"
                    .into(),
            );
        }
        let m = self.members();
        let Some(i) = m.table.iter().position(|b| b.addr == addr) else {
            return Err(format!("pool {} has no backend {addr}", self.name()));
        };
        if let Some(w) = weight.filter(|w| *w != m.table.get(i).weight()) {
            let backends: Vec<BackendSpec> = m
                .table
                .iter()
                .map(|b| BackendSpec {
                    addr: b.addr,
                    weight: if b.addr == addr { w } else { b.weight() },
                })
                .collect();
            self.set_members(&backends);
        }
        if let Some(state) = state {
            self.table().get(i).set_admin_state(state);
        }
        Ok(())
    }
}
