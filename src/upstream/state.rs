//! The one live state of each backend of a pool: whether it may be chosen (its health,
//! as the active checks report it), the last check's result, and its counters (active
//! requests or connections, which `least_conn` reads; totals and failures). Selection,
//! the status page and the metrics all read it here. A table is a plain slice indexed by
//! position; when DNS discovery changes a pool's set, a successor table is made that
//! shares the states of the backends that stay (in-flight leases keep the old table).
//!
//! A backend is out of rotation for one or more [`Reason`]s: the probes failed it
//! (`probe`), passive health ejected it (`outlier`, see `outlier.rs`), or an operator
//! set it to `drain` or `maint` ([`AdminState`]). `/status` and the status page show
//! every reason that applies.

use super::ewma::Ewma;
use super::outlier::{Ejection, OutlierState};
use super::policy::Condition;
use super::queue::WaitQueue;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// What an operator set a backend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminState {
    /// In rotation (as far as the operator is concerned).
    Ready,
    /// No new requests or connections; those in flight finish.
    Drain,
    /// Out of rotation.
    Maint,
}

impl AdminState {
    /// As `/status` and the admin API write it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// Why a backend is out of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The active health check failed it.
    Probe,
    /// Passive health ejected it.
    Outlier,
    /// An operator is draining it.
    Drain,
    /// An operator put it in maintenance.
    Maint,
}

impl Reason {
    /// As `/status` and the status page write it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Probe => "probe",
            Reason::Outlier => "outlier",
            Reason::Drain => "drain",
            Reason::Maint => "maint",
        }
    }
}

/// The result of a backend's last active health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckResult {
    /// Not checked yet (or the pool has no health check).
    None,
    /// The last check passed.
    Passed,
    /// The last check failed.
    Failed,
}

impl CheckResult {
    /// As the status page writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CheckResult::None => "none",
            CheckResult::Passed => "ok",
            CheckResult::Failed => "failed",
        }
    }
}
use std::sync::{Arc, Mutex};

/// Counters for one backend.
#[derive(Debug)]
pub(crate) struct BackendState {
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// Its weight (the admin API may change it).
    weight: AtomicUsize,
    /// Requests or connections in flight.
    pub(crate) active: AtomicUsize,
    /// Requests or connections handed to it.
    pub(crate) total: AtomicU64,
    /// Connect failures.
    pub(crate) connect_failures: AtomicU64,
    /// 5xx answers and failed relays.
    pub(crate) errors: AtomicU64,
    /// Eligible for traffic: true until a health check takes it out.
    healthy: AtomicBool,
    /// The last health check's [`CheckResult`], as its index.
    last_check: AtomicU8,
    /// Latency of the last health check, in microseconds.
    pub(crate) last_check_micros: AtomicU64,
    /// Health transitions (up → down and down → up).
    pub(crate) transitions: AtomicU64,
    /// Why the last failed check failed.
    pub(crate) last_error: Mutex<String>,
    /// The operator's setting, as an [`AdminState`] index.
    admin: AtomicU8,
    /// Passive health.
    pub(crate) outlier: OutlierState,
    /// Peak-EWMA latency, for `p2c_ewma`.
    pub(crate) ewma: Ewma,
    /// When the probes last brought it back, in nanoseconds after `epoch`, plus one
    /// (0: never taken out by a probe).
    probe_back: AtomicU64,
    /// The table's time origin, for the clocks kept in atomics.
    epoch: Instant,
}

impl BackendState {
    /// Whether the backend may be chosen: healthy (or never checked), not ejected,
    /// and neither draining nor in maintenance.
    pub(crate) fn eligible(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self.admin.load(Ordering::Relaxed) == 0
            && !(self.outlier.ever_ejected() && self.outlier.ejected_at(self.nanos_now()))
    }

    /// Whether only the operator keeps it out (fail-open may still use the others).
    pub(crate) fn admin_ready(&self) -> bool {
        self.admin.load(Ordering::Relaxed) == 0
    }

    /// Every reason it is out of rotation now; empty when it is eligible.
    pub(crate) fn reasons(&self) -> Vec<Reason> {
        let mut out = Vec::new();
        if !self.healthy.load(Ordering::Relaxed) {
            out.push(Reason::Probe);
        }
        if self.outlier.ejected_at(self.nanos_now()) {
            out.push(Reason::Outlier);
        }
        match self.admin_state() {
            AdminState::Ready => {}
            AdminState::Drain => out.push(Reason::Drain),
            AdminState::Maint => out.push(Reason::Maint),
        }
        out
    }

    /// Its weight.
    pub(crate) fn weight(&self) -> usize {
        self.weight.load(Ordering::Relaxed)
    }

    /// The operator's setting.
    pub(crate) fn admin_state(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }

    /// Sets the operator's setting (drain, maint or back to ready).
    pub(crate) fn set_admin_state(&self, state: AdminState) {
        self.admin.store(state as u8, Ordering::Relaxed);
    }

    /// When it last came back into service after an ejection or a failed probe
    /// (`None`: it has been in service since the start), for slow start.
    pub(crate) fn back_since(&self) -> Option<Instant> {
        let probe = self.probe_back.load(Ordering::Relaxed).checked_sub(1);
        let latest = probe.max(self.outlier.ends_at())?;
        Some(self.epoch + Duration::from_nanos(latest))
    }

    /// Nanoseconds from the table's epoch to now.
    fn nanos_now(&self) -> u64 {
        nanos_since(self.epoch, Instant::now())
    }

    /// Its counters now, as the record of an ejection by `consecutive` failures.
    pub(crate) fn ejection(&self, consecutive: u32) -> Ejection {
        Ejection {
            consecutive,
            requests: self.total.load(Ordering::Relaxed),
            failures: self.connect_failures.load(Ordering::Relaxed)
                + self.errors.load(Ordering::Relaxed),
            in_flight: self.active.load(Ordering::Relaxed),
        }
    }

    /// Counts a failed connect.
    pub(crate) fn count_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure after connecting (a 5xx answer, a broken relay).
    pub(crate) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The active checks' verdict (after `rise`/`fall`); counts a transition.
    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        if healthy {
            let now = nanos_since(self.epoch, Instant::now());
            self.probe_back.store(now + 1, Ordering::Relaxed);
        }
        self.transitions.fetch_add(1, Ordering::Relaxed);
    }

    /// The last health check's result.
    pub(crate) fn last_check(&self) -> CheckResult {
        match self.last_check.load(Ordering::Relaxed) {
            1 => CheckResult::Passed,
            2 => CheckResult::Failed,
            _ => CheckResult::None,
        }
    }

    /// Records one health check: its outcome (the error when it failed) and latency.
    pub(crate) fn record_check(&self, outcome: Result<(), String>, latency: Duration) {
        self.last_check_micros
            .store(latency.as_micros() as u64, Ordering::Relaxed);
        let result = match outcome {
            Ok(()) => CheckResult::Passed,
            Err(e) => {
                if let Ok(mut last) = self.last_error.lock() {
                    *last = e;
                }
                CheckResult::Failed
            }
        };
        self.last_check.store(result as u8, Ordering::Relaxed);
    }
}

/// Counters for every backend of a pool.
#[derive(Debug)]
pub(crate) struct BackendTable {
    /// Shared with the tables that follow this one when discovery changes the set,
    /// so a backend that stays keeps its state.
    backends: Box<[Arc<BackendState>]>,
    /// The pool's own counters, shared the same way.
    counters: Arc<PoolCounters>,
    epoch: Instant,
}

/// A pool's counters that are not any one backend's.
#[derive(Debug, Default)]
struct PoolCounters {
    /// Retries by [`Condition`], in [`Condition::ALL`] order.
    retries: [AtomicU64; 5],
    /// Retries the budget refused.
    budget_refused: AtomicU64,
    /// Selections made in fail-open (panic) mode.
    panics: AtomicU64,
}

/// A fresh backend state.
fn fresh(addr: SocketAddr, weight: usize, epoch: Instant) -> Arc<BackendState> {
    Arc::new(BackendState {
        addr,
        weight: AtomicUsize::new(weight),
        active: AtomicUsize::new(0),
        total: AtomicU64::new(0),
        connect_failures: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        healthy: AtomicBool::new(true),
        last_check: AtomicU8::new(0),
        last_check_micros: AtomicU64::new(0),
        transitions: AtomicU64::new(0),
        last_error: Mutex::new(String::new()),
        admin: AtomicU8::new(0),
        outlier: OutlierState::default(),
        ewma: Ewma::default(),
        probe_back: AtomicU64::new(0),
        epoch,
    })
}

/// Nanoseconds from `epoch` to `now` (0 when `now` is earlier).
fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

impl BackendTable {
    /// A table for `(addr, weight)` pairs.
    pub(crate) fn new(backends: impl IntoIterator<Item = (SocketAddr, usize)>) -> Self {
        let epoch = Instant::now();
        Self {
            backends: backends
                .into_iter()
                .map(|(addr, weight)| fresh(addr, weight, epoch))
                .collect(),
            counters: Arc::default(),
            epoch,
        }
    }

    /// The table of a new set of backends: those already here keep their state
    /// (health, counters, in-flight counts; a changed weight is updated in place),
    /// new ones start fresh, and the pool's counters carry on.
    pub(crate) fn successor(&self, backends: &[(SocketAddr, usize)]) -> Self {
        let kept = |addr: SocketAddr, weight: usize| {
            self.backends
                .iter()
                .find(|b| b.addr == addr)
                .inspect(|b| b.weight.store(weight, Ordering::Relaxed))
                .cloned()
        };
        Self {
            backends: backends
                .iter()
                .map(|&(a, w)| kept(a, w).unwrap_or_else(|| fresh(a, w, self.epoch)))
                .collect(),
            counters: self.counters.clone(),
            epoch: self.epoch,
        }
    }

    /// `now` as nanoseconds after the table's epoch, the unit of its atomic clocks.
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        nanos_since(self.epoch, now)
    }

    /// Counts an attempt on another backend after a failure of kind `why`.
    pub(crate) fn count_retry(&self, why: Condition) {
        self.counters.retries[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Retries so far, of every kind.
    pub(crate) fn retries(&self) -> u64 {
        self.counters
            .retries
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }

    /// Retries so far of kind `why`.
    pub(crate) fn retries_of(&self, why: Condition) -> u64 {
        self.counters.retries[why as usize].load(Ordering::Relaxed)
    }

    /// Counts a retry the budget refused.
    pub(crate) fn count_budget_refusal(&self) {
        self.counters.budget_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries the budget refused so far.
    pub(crate) fn budget_refused(&self) -> u64 {
        self.counters.budget_refused.load(Ordering::Relaxed)
    }

    /// Counts a selection made over every backend (fail-open).
    pub(crate) fn count_panic(&self) {
        self.counters.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Selections made in fail-open mode so far.
    pub(crate) fn panics(&self) -> u64 {
        self.counters.panics.load(Ordering::Relaxed)
    }

    /// All backends' counters, in config order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &BackendState> {
        self.backends.iter().map(|b| &**b)
    }

    /// Position of `addr`. Pools are small, so a scan beats hashing.
    pub(crate) fn index_of(&self, addr: &PeerAddr) -> Option<usize> {
        let PeerAddr::Inet(addr) = addr else {
            return None;
        };
        self.backends.iter().position(|b| b.addr == *addr)
    }

    /// Number of backends.
    pub(crate) fn len(&self) -> usize {
        self.backends.len()
    }

    /// Counters at position `i`.
    pub(crate) fn get(&self, i: usize) -> &BackendState {
        &self.backends[i]
    }

    /// Active count of `addr` (0 when unknown).
    pub(crate) fn active_of(&self, addr: &PeerAddr) -> usize {
        self.index_of(addr)
            .map_or(0, |i| self.backends[i].active.load(Ordering::Relaxed))
    }
}

/// One request or connection counted as active on a backend until dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    table: Arc<BackendTable>,
    index: usize,
    /// The pool's wait queue (with `max_conns`), woken when the lease ends.
    queue: Option<Arc<WaitQueue>>,
}

impl Lease {
    /// Counts one more active use of backend `index`.
    pub(crate) fn new(table: Arc<BackendTable>, index: usize) -> Self {
        let b = table.get(index);
        b.active.fetch_add(1, Ordering::Relaxed);
        b.total.fetch_add(1, Ordering::Relaxed);
        Self {
            table,
            index,
            queue: None,
        }
    }

    /// Like [`Lease::new`], but only while backend `index` has fewer than `max` in
    /// flight; the lease wakes `queue`'s head when it ends.
    pub(crate) fn within(
        table: Arc<BackendTable>,
        index: usize,
        max: usize,
        queue: Arc<WaitQueue>,
    ) -> Option<Self> {
        let b = table.get(index);
        b.active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        b.total.fetch_add(1, Ordering::Relaxed);
        Some(Self {
            table,
            index,
            queue: Some(queue),
        })
    }

    /// The table it was taken from.
    pub(crate) fn table(&self) -> &BackendTable {
        &self.table
    }

    /// The table it was taken from, shared.
    pub(crate) fn table_arc(&self) -> Arc<BackendTable> {
        self.table.clone()
    }

    /// The backend's position in its table.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The backend's state.
    pub(crate) fn state(&self) -> &BackendState {
        self.table.get(self.index)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.table
            .get(self.index)
            .active
            .fetch_sub(1, Ordering::AcqRel);
        if let Some(queue) = &self.queue {
            queue.wake_head();
        }
    }
}
