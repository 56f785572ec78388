//! The one live state of each backend of a pool: whether it may be chosen (its health,
//! as the active checks report it), the last check's result, and its counters (active
//! requests or connections, which `least_conn` reads; totals and failures). Selection,
//! the status page and the metrics all read it here. Backends are fixed for the life of
//! a process (a config change is an upgrade), so the table is a plain slice indexed by
//! position.

use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

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
    /// Its weight.
    pub(crate) weight: usize,
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
}

impl BackendState {
    /// Whether the backend may be chosen: healthy, or never checked.
    pub(crate) fn eligible(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
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
    backends: Box<[BackendState]>,
    retries: AtomicU64,
}

impl BackendTable {
    /// A table for `(addr, weight)` pairs.
    pub(crate) fn new(backends: impl IntoIterator<Item = (SocketAddr, usize)>) -> Self {
        let backends = backends
            .into_iter()
            .map(|(addr, weight)| BackendState {
                addr,
                weight,
                active: AtomicUsize::new(0),
                total: AtomicU64::new(0),
                connect_failures: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                healthy: AtomicBool::new(true),
                last_check: AtomicU8::new(0),
                last_check_micros: AtomicU64::new(0),
                transitions: AtomicU64::new(0),
                last_error: Mutex::new(String::new()),
            })
            .collect();
        Self {
            backends,
            retries: AtomicU64::new(0),
        }
    }

    /// Counts an attempt on another backend after a failure.
    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries so far.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// All backends' counters, in config order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &BackendState> {
        self.backends.iter()
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
}

impl Lease {
    /// Counts one more active use of backend `index`.
    pub(crate) fn new(table: Arc<BackendTable>, index: usize) -> Self {
        let b = table.get(index);
        b.active.fetch_add(1, Ordering::Relaxed);
        b.total.fetch_add(1, Ordering::Relaxed);
        Self { table, index }
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
            .fetch_sub(1, Ordering::Relaxed);
    }
}
