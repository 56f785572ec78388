//! Metrics of the resilient-upstream features: retries by reason and those the budget
//! refused, fail-open selections, ejections and why each backend is out. Like the
//! other per-backend figures they are copied from the pools' live state when
//! `/metrics` is scraped.

use crate::upstream::policy::Condition;
use crate::upstream::state::Reason;
use crate::upstream::Pool;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The resilience metrics, registered in Tioga's registry.
pub(crate) struct ResilienceMetrics {
    retries: IntCounterVec,
    budget_refused: IntCounterVec,
    panics: IntCounterVec,
    ejections: IntCounterVec,
    out: IntGaugeVec,
    queue_depth: IntGaugeVec,
    queue_refused: IntCounterVec,
    discovery_failures: IntCounterVec,
}

impl ResilienceMetrics {
    /// Creates the metrics in `registry`.
    pub(crate) fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let out = IntGaugeVec::new(
            Opts::new(
                "tioga_backend_out",
                "1 when the backend is out of rotation for this reason (probe, outlier, drain, maint)",
            ),
            &["pool", "backend", "reason"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(out.clone()))
            .expect("unique metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "tioga_pool_queue_depth",
                "Requests or connections waiting because every backend is at max_conns",
            ),
            &["pool"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(queue_depth.clone()))
            .expect("unique metric");
        Self {
            discovery_failures: counter(
                "tioga_discovery_lookup_failures_total",
                "DNS discovery lookups that failed or found nothing (the last set was kept)",
                &["pool", "reason"],
            ),
            queue_depth,
            queue_refused: counter(
                "tioga_pool_queue_refused_total",
                "Requests answered 503 (connections closed) by the max_conns queue: full or timeout",
                &["pool", "reason"],
            ),
            retries: counter(
                "tioga_upstream_retries_by_reason_total",
                "Attempts on another backend, by the failure retried (retry_on condition)",
                &["pool", "reason"],
            ),
            budget_refused: counter(
                "tioga_upstream_retry_budget_exhausted_total",
                "Retries not made because the pool's retry budget was spent",
                &["pool"],
            ),
            panics: counter(
                "tioga_pool_panic_selections_total",
                "Backends chosen in fail-open mode (fewer healthy than panic_threshold)",
                &["pool"],
            ),
            ejections: counter(
                "tioga_backend_ejections_total",
                "Times passive health (outlier detection) ejected the backend",
                &["pool", "backend"],
            ),
            out,
        }
    }

    /// Copies the pools' live figures into the metrics.
    pub(crate) fn sync(&self, pools: &[Arc<Pool>]) {
        for pool in pools {
            let name = pool.name();
            let table = pool.table();
            for c in Condition::ALL {
                catch_up(
                    self.retries.with_label_values(&[name, c.as_str()]),
                    table.retries_of(c),
                );
            }
            catch_up(
                self.budget_refused.with_label_values(&[name]),
                table.budget_refused(),
            );
            catch_up(self.panics.with_label_values(&[name]), table.panics());
            if pool.spec.discovery.is_some() {
                let c = &pool.discovery_counters;
                for (reason, n) in [("error", &c.failures), ("empty", &c.empty)] {
                    catch_up(
                        self.discovery_failures.with_label_values(&[name, reason]),
                        n.load(Ordering::Relaxed),
                    );
                }
            }
            if let Some((depth, full, timed_out)) = pool.queue_stats() {
                self.queue_depth
                    .with_label_values(&[name])
                    .set(depth as i64);
                catch_up(self.queue_refused.with_label_values(&[name, "full"]), full);
                catch_up(
                    self.queue_refused.with_label_values(&[name, "timeout"]),
                    timed_out,
                );
            }
            for b in table.iter() {
                let addr = b.addr.to_string();
                catch_up(
                    self.ejections.with_label_values(&[name, &addr]),
                    b.outlier.ejections.load(Ordering::Relaxed),
                );
                let reasons = b.reasons();
                for r in [Reason::Probe, Reason::Outlier, Reason::Drain, Reason::Maint] {
                    self.out
                        .with_label_values(&[name, &addr, r.as_str()])
                        .set(i64::from(reasons.contains(&r)));
                }
            }
        }
    }
}

/// Moves counter `c` up to `v`.
fn catch_up(c: IntCounter, v: u64) {
    let have = c.get();
    if v > have {
        c.inc_by(v - have);
    }
}
