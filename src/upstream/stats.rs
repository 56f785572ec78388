//! Live per-backend counters: active requests/connections (which `least_conn` reads),
//! totals and failures. Backends are fixed for the life of a process (a config change
//! is an upgrade), so the table is a plain slice indexed by position.

use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counters for one backend.
#[derive(Debug)]
pub(crate) struct BackendStats {
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
    pub(crate) healthy: AtomicBool,
    /// Result of the last health check: 0 none yet, 1 passed, 2 failed.
    pub(crate) last_check: AtomicU8,
    /// Latency of the last health check, in microseconds.
    pub(crate) last_check_micros: AtomicU64,
    /// Health transitions (up → down and down → up).
    pub(crate) transitions: AtomicU64,
    /// Why the last failed check failed.
    pub(crate) last_error: Mutex<String>,
}

/// Counters for every backend of a pool.
#[derive(Debug)]
pub(crate) struct BackendTable {
    backends: Box<[BackendStats]>,
    retries: AtomicU64,
}

impl BackendTable {
    /// A table for `(addr, weight)` pairs.
    pub(crate) fn new(backends: impl IntoIterator<Item = (SocketAddr, usize)>) -> Self {
        let backends = backends
            .into_iter()
            .map(|(addr, weight)| BackendStats {
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

    /// Counts an attempt on another backend after a connect failure.
    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries so far.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// All backends' counters, in config order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &BackendStats> {
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
    pub(crate) fn get(&self, i: usize) -> &BackendStats {
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

    /// The backend's counters.
    pub(crate) fn stats(&self) -> &BackendStats {
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
