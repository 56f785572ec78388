//! A pool's current set of backends with what selection needs for it: the state
//! table, the picker and the sticky ids. Built once for a static pool; DNS discovery
//! builds a new one for each changed answer, from the previous table so that backends
//! that stay keep their state.

use super::selection::{BalanceConfig, Balancer, SmoothRoundRobin};
use super::spec::{BackendSpec, PoolSpec};
use super::state::BackendTable;
use super::sticky::StickyIds;
use crate::vocab::Balance;
use pingora_load_balancing::selection::BackendSelection;
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// How a pool chooses: `round_robin` picks among the eligible backends itself,
/// `p2c_ewma` draws two; the other modes walk a selector's candidates, first choice
/// first.
pub(super) enum Picker {
    Smooth(SmoothRoundRobin),
    P2c,
    Walk(Arc<Balancer>),
}

/// One set of backends.
pub(super) struct Members {
    pub(super) table: Arc<BackendTable>,
    pub(super) picker: Picker,
    pub(super) sticky: Option<StickyIds>,
    /// Bound on the candidates a walk looks at.
    pub(super) max_iterations: usize,
}

/// Pingora's view of `backends`.
pub(super) fn backend_set(backends: &[BackendSpec]) -> BTreeSet<Backend> {
    backends
        .iter()
        .map(|b| {
            let mut backend = Backend::new(&b.addr.to_string()).expect("validated address");
            backend.weight = b.weight;
            backend
        })
        .collect()
}

impl Members {
    /// The set `backends` of pool `spec`; `previous` lends its backends' states.
    pub(super) fn build(
        spec: &PoolSpec,
        backends: &[BackendSpec],
        previous: Option<&BackendTable>,
    ) -> Members {
        let pairs: Vec<(SocketAddr, usize)> = backends.iter().map(|b| (b.addr, b.weight)).collect();
        let table = Arc::new(match previous {
            Some(p) => p.successor(&pairs),
            None => BackendTable::new(pairs.iter().copied()),
        });
        let config = BalanceConfig {
            balance: spec.balance.clone(),
            table: table.clone(),
            slow_start: spec.resilience.slow_start,
        };
        let picker = match spec.balance {
            Balance::RoundRobin => Picker::Smooth(SmoothRoundRobin::new(&table)),
            Balance::P2cEwma => Picker::P2c,
            _ => Picker::Walk(Arc::new(Balancer::build_with_config(
                &backend_set(backends),
                &config,
            ))),
        };
        let sticky = spec.resilience.sticky.as_ref().map(|s| {
            let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
            StickyIds::new(&spec.name, s, &addrs)
        });
        Members {
            table,
            picker,
            sticky,
            max_iterations: backends.len() * 8 + 16,
        }
    }
}
