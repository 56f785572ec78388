//! Pools: one Pingora `LoadBalancer` per configured pool, shared through an `Arc` by
//! every listener that names it, with its health check run once in a background
//! service.
//!
//! [`Pool::select`] returns a [`Chosen`] backend whose [`Lease`] counts it as active
//! until dropped, which is what `least_conn` balances on.

mod selection;
pub mod stats;

use crate::config::{Balance, PoolSpec};
use futures::FutureExt;
use pingora_core::services::background::{background_service, GenBackgroundService};
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
pub use selection::{BalanceConfig, Balancer, SmoothRoundRobin};
use stats::{BackendTable, Lease};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
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
pub type HealthService = GenBackgroundService<LoadBalancer<Balancer>>;

/// A named, shared set of backends.
pub struct Pool {
    /// The validated settings.
    pub spec: PoolSpec,
    /// Runs the health checks (as a background service); kept for its lifetime.
    _lb: Arc<LoadBalancer<Balancer>>,
    /// The selection algorithm over the pool's backends.
    selector: Arc<Balancer>,
    /// `round_robin` picks here instead of walking `selector`.
    smooth: Option<SmoothRoundRobin>,
    table: Arc<BackendTable>,
    max_iterations: usize,
}

/// A backend chosen for one request or connection.
#[derive(Debug)]
pub struct Chosen {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Counts the use as active until dropped.
    pub lease: Lease,
}

impl Pool {
    /// Builds the pool, and the background service to add to the server when it has a
    /// health check.
    pub fn build(spec: PoolSpec) -> (Arc<Pool>, Option<HealthService>) {
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
                lb.set_health_check(crate::health::build(&spec.name, hc, table.clone()));
                lb.health_check_frequency = Some(hc.interval);
                lb.parallel_health_check = true;
                let service =
                    background_service(&format!("health checks of pool {}", spec.name), lb);
                (service.task(), Some(service))
            }
            None => (Arc::new(lb), None),
        };
        let max_iterations = spec.backends.len() * 8 + 16;
        let smooth =
            matches!(spec.balance, Balance::RoundRobin).then(|| SmoothRoundRobin::new(&table));
        let pool = Pool {
            smooth,
            spec,
            _lb: lb,
            selector,
            table,
            max_iterations,
        };
        (Arc::new(pool), service)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Chooses an eligible backend for `key` (used by `consistent_hash`), skipping
    /// those in `tried`.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Chosen> {
        if let Some(smooth) = &self.smooth {
            let index = smooth.pick(|i| {
                let stats = self.table.get(i);
                stats.healthy.load(Ordering::Relaxed) && !tried.contains(&stats.addr)
            })?;
            return Some(Chosen {
                addr: self.table.get(index).addr,
                lease: Lease::new(self.table.clone(), index),
            });
        }
        // Walk the pool's selector directly: Pingora's `select_with` would allocate a
        // `HashSet` and hash every candidate twice per request. Candidates are marked in
        // a bit set (pools of up to 64 backends; larger ones fall back to a vector).
        let mut iter = self.selector.iter(key);
        let mut seen = Seen::new(self.table.len());
        for _ in 0..self.max_iterations {
            let backend = iter.next()?;
            let Some(index) = self.table.index_of(&backend.addr) else {
                continue;
            };
            if !seen.insert(index) {
                continue;
            }
            let stats = self.table.get(index);
            if stats.healthy.load(Ordering::Relaxed) && !tried.contains(&stats.addr) {
                return Some(Chosen {
                    addr: stats.addr,
                    lease: Lease::new(self.table.clone(), index),
                });
            }
            if seen.count == self.table.len() {
                return None;
            }
        }
        None
    }

    /// Whether a backend other than those in `tried` is eligible.
    pub fn has_candidate(&self, tried: &[SocketAddr]) -> bool {
        self.table
            .iter()
            .any(|b| !tried.contains(&b.addr) && b.healthy.load(Ordering::Relaxed))
    }

    /// Whether `addr` is currently eligible (healthy or never checked).
    pub fn is_healthy(&self, addr: SocketAddr) -> bool {
        self.table
            .iter()
            .any(|b| b.addr == addr && b.healthy.load(Ordering::Relaxed))
    }

    /// Live counters of every backend.
    pub fn table(&self) -> &Arc<BackendTable> {
        &self.table
    }

    /// Whether selection uses a key at all.
    pub fn uses_key(&self) -> bool {
        matches!(self.spec.balance, Balance::ConsistentHash(_))
    }
}
