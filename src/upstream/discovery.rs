//! DNS discovery (`discovery: {dns | srv, refresh, resolver}`): a background service
//! per pool looks the name up every `refresh` and, when the answer differs, gives the
//! pool the new set. Backends that stay keep their state (health, counters, in-flight
//! requests; Pingora's idle connections are kept by address anyway). A failed lookup
//! or an empty answer keeps the last known set, logged and counted: an empty answer is
//! far more often a broken zone or a deploy in progress than a real wish to drop every
//! backend.
//!
//! `dns: NAME:PORT` uses the A and AAAA records (weight 1 each); `srv: NAME` uses the
//! SRV records of the lowest priority, with their ports and weights (a weight of 0
//! counts as 1), their targets resolved to A/AAAA. Lookups go to `resolver` when
//! given, else to the system's (`/etc/resolv.conf`); answers are not cached beyond
//! one lookup, so a change is seen at the next refresh whatever its TTL.

use super::policy::{DiscoverySpec, Target};
use super::spec::BackendSpec;
use super::Pool;
use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{Resolver, TokioResolver};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::ServiceWithDependents;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The set a pool's `LoadBalancer` health-checks: the pool's current backends. Pingora
/// keeps each backend's probe state across a change of set, keyed by the backend.
#[derive(Clone, Default)]
pub(super) struct Probed(Arc<RwLock<BTreeSet<Backend>>>);

impl Probed {
    pub(super) fn new(set: BTreeSet<Backend>) -> Self {
        Self(Arc::new(RwLock::new(set)))
    }

    /// Replaces the set; the `LoadBalancer` sees it at its next update.
    pub(super) fn set(&self, set: BTreeSet<Backend>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = set;
    }
}

#[async_trait]
impl ServiceDiscovery for Probed {
    async fn discover(&self) -> pingora_core::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let set = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        Ok((set, HashMap::new()))
    }
}

/// Lookups that failed or found nothing, for `/status` and the metrics.
#[derive(Debug, Default)]
pub(crate) struct DiscoveryCounters {
    /// Lookups made.
    pub(crate) lookups: AtomicU64,
    /// Lookups that failed (the last set was kept).
    pub(crate) failures: AtomicU64,
    /// Lookups that found no backend (the last set was kept).
    pub(crate) empty: AtomicU64,
    /// Times the set changed.
    pub(crate) changes: AtomicU64,
}

/// The background service that keeps `pool`'s set up to date.
pub(super) fn service(pool: Arc<Pool>, spec: DiscoverySpec) -> Box<dyn ServiceWithDependents> {
    let name = format!("dns discovery of pool {}", pool.name());
    Box::new(background_service(&name, Discovery { pool, spec }))
}

struct Discovery {
    pool: Arc<Pool>,
    spec: DiscoverySpec,
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let resolver = resolver(self.spec.resolver);
        let counters = &self.pool.discovery_counters;
        let mut current: Vec<BackendSpec> = Vec::new();
        loop {
            counters.lookups.fetch_add(1, Ordering::Relaxed);
            match lookup(&resolver, &self.spec.target).await {
                Ok(found) if found.is_empty() => {
                    counters.empty.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "pool {}: discovery found no backend: keeping the last {} ",
                        self.pool.name(),
                        current.len()
                    );
                }
                Ok(found) if found != current => {
                    counters.changes.fetch_add(1, Ordering::Relaxed);
                    let list: Vec<String> = found.iter().map(|b| b.addr.to_string()).collect();
                    log::info!(
                        "pool {}: backends now {}",
                        self.pool.name(),
                        list.join(", ")
                    );
                    self.pool.set_backends(&found).await;
                    current = found;
                }
                Ok(_) => {}
                Err(e) => {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "pool {}: discovery lookup failed ({e}): keeping the last {} backends",
                        self.pool.name(),
                        current.len()
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.spec.refresh) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A resolver asking `server`, or the system's servers; no caching across lookups.
fn resolver(server: Option<SocketAddr>) -> TokioResolver {
    let provider = TokioConnectionProvider::default();
    let mut builder = match server {
        Some(addr) => {
            let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            Resolver::builder_with_config(ResolverConfig::from_parts(None, vec![], group), provider)
        }
        None => Resolver::builder_tokio().unwrap_or_else(|e| {
            log::warn!("discovery: cannot read the system's resolver config ({e}); using defaults");
            Resolver::builder_with_config(
                ResolverConfig::default(),
                TokioConnectionProvider::default(),
            )
        }),
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.positive_max_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(Duration::ZERO);
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    builder.build()
}

/// The backends `target` names now, sorted by address.
async fn lookup(resolver: &TokioResolver, target: &Target) -> Result<Vec<BackendSpec>, String> {
    let mut found = Vec::new();
    match target {
        Target::Dns { host, port } => {
            let ips = resolver
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| e.to_string())?;
            for ip in ips.iter() {
                found.push(BackendSpec {
                    addr: SocketAddr::new(ip, *port),
                    weight: 1,
                });
            }
        }
        Target::Srv { name } => {
            let srv = resolver
                .srv_lookup(name.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let Some(best) = srv.iter().map(|r| r.priority()).min() else {
                return Ok(found);
            };
            for record in srv.iter().filter(|r| r.priority() == best) {
                let ips = resolver
                    .lookup_ip(record.target().clone())
                    .await
                    .map_err(|e| format!("{}: {e}", record.target()))?;
                for ip in ips.iter() {
                    found.push(BackendSpec {
                        addr: SocketAddr::new(ip, record.port()),
                        weight: usize::from(record.weight()).clamp(1, 1000),
                    });
                }
            }
        }
    }
    found.sort_by_key(|b| b.addr);
    found.dedup_by_key(|b| b.addr);
    Ok(found)
}
