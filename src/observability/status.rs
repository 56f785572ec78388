//! The `/status` document: listeners with their routes and pools with their
//! backends, with live counters. Static parts are captured at start-up; counters are
//! read when the document is rendered. Rates are left to the reader (the status page
//! computes them from successive documents).

use super::metrics::{ListenerMetrics, RouteMetrics, TcpMetrics};
use crate::upstream::policy::Condition;
use crate::upstream::Pool;
use crate::upstream::PoolSpec;
use crate::vocab::{Balance, Probe};
use prometheus::IntCounter;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// A listener as the status document shows it.
pub(crate) enum ListenerStatus {
    /// An HTTP listener.
    Http {
        /// Name, binds, TLS.
        info: ListenerInfo,
        /// In-flight gauge.
        metrics: ListenerMetrics,
        /// Requests that matched no route.
        no_route: RouteMetrics,
        /// Routes in order.
        routes: Vec<RouteStatus>,
    },
    /// A TCP listener.
    Tcp {
        /// Name, binds.
        info: ListenerInfo,
        /// Its pool.
        pool: String,
        /// Its connection filters.
        filters: Vec<String>,
        /// Counters.
        metrics: TcpMetrics,
        /// Its routes; empty for a listener with `pool`.
        routes: Vec<TcpRouteStatus>,
        /// Connections no route took.
        no_route: IntCounter,
    },
    /// A UDP listener.
    Udp {
        /// Name, binds.
        info: ListenerInfo,
        /// Its pool.
        pool: String,
        /// Its flow filters.
        filters: Vec<String>,
        /// Counters.
        metrics: super::udp_metrics::UdpMetrics,
    },
}

/// A route of a TCP listener as the status document shows it.
pub(crate) struct TcpRouteStatus {
    /// `LISTENER[i]`.
    pub(crate) name: String,
    /// The matcher's description.
    pub(crate) matches: String,
    /// Its pool.
    pub(crate) pool: String,
    /// Connections it took.
    pub(crate) connections: IntCounter,
}

/// What every listener has.
pub(crate) struct ListenerInfo {
    /// Name.
    pub(crate) name: String,
    /// Addresses.
    pub(crate) binds: Vec<String>,
    /// Terminates TLS.
    pub(crate) tls: bool,
}

/// A route as the status document shows it.
pub(crate) struct RouteStatus {
    /// `LISTENER[i]`.
    pub(crate) name: String,
    /// The matcher's description.
    pub(crate) matches: String,
    /// Its pool, if any.
    pub(crate) pool: Option<String>,
    /// Its filters' names.
    pub(crate) filters: Vec<String>,
    /// Counters.
    pub(crate) metrics: RouteMetrics,
}

/// Everything `/status` reports.
pub(crate) struct Status {
    /// The config file.
    pub(crate) config_file: String,
    /// When this process started.
    pub(crate) started_at: SystemTime,
    /// The running config's hash and the last reload.
    pub(crate) config: Arc<super::reload::ConfigState>,
    /// Listeners in name order.
    pub(crate) listeners: Vec<ListenerStatus>,
    /// Pools in name order.
    pub(crate) pools: Vec<Arc<Pool>>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Status {
    /// The document, now.
    pub(crate) fn render(&self) -> Value {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config_file": self.config_file,
            "started_at": unix(self.started_at),
            "config": self.config.render(),
            "now": unix(SystemTime::now()),
            "listeners": self.listeners.iter().map(listener).collect::<Vec<_>>(),
            "pools": self.pools.iter().map(|p| pool(p)).collect::<Vec<_>>(),
        })
    }
}

fn listener(l: &ListenerStatus) -> Value {
    match l {
        ListenerStatus::Http {
            info,
            metrics,
            no_route,
            routes,
        } => {
            let (mut requests, mut errors) = no_route.totals();
            let routes: Vec<Value> = routes
                .iter()
                .map(|r| {
                    let (req, err) = r.metrics.totals();
                    requests += req;
                    errors += err;
                    json!({"name": r.name, "match": r.matches, "pool": r.pool, "filters": r.filters, "requests": req, "errors": err})
                })
                .collect();
            json!({
                "name": info.name, "protocol": "http", "binds": info.binds, "tls": info.tls,
                "active": metrics.active.get(), "requests": requests, "errors": errors, "routes": routes,
            })
        }
        ListenerStatus::Tcp {
            info,
            pool,
            filters,
            metrics,
            routes,
            no_route,
        } => {
            let requests = if routes.is_empty() {
                metrics.connections.get()
            } else {
                no_route.get() + routes.iter().map(|r| r.connections.get()).sum::<u64>()
            };
            let routes: Vec<Value> = routes
                .iter()
                .map(|r| json!({"name": r.name, "match": r.matches, "pool": r.pool, "filters": [], "requests": r.connections.get()}))
                .collect();
            json!({
                "name": info.name, "protocol": "tcp", "binds": info.binds, "tls": false, "pool": pool, "filters": filters,
                "active": metrics.active.get(), "requests": requests, "errors": metrics.failed.get(),
                "routes": routes,
            })
        }
        ListenerStatus::Udp {
            info,
            pool,
            filters,
            metrics,
        } => json!({
            "name": info.name, "protocol": "udp", "binds": info.binds, "tls": false, "pool": pool, "filters": filters,
            "active": metrics.active.get(), "requests": metrics.flows.get(), "errors": metrics.dropped_total(),
            "routes": [],
        }),
    }
}

fn balance(spec: &PoolSpec) -> &'static str {
    match spec.balance {
        Balance::RoundRobin => "round_robin",
        Balance::Random => "random",
        Balance::LeastConn => "least_conn",
        Balance::ConsistentHash(_) => "consistent_hash",
        Balance::P2cEwma => "p2c_ewma",
    }
}

/// DNS discovery's target and counters, or null.
fn discovery(p: &Pool) -> Value {
    use crate::upstream::policy::Target;
    let Some(d) = &p.spec.discovery else {
        return Value::Null;
    };
    let c = &p.discovery_counters;
    let target = match &d.target {
        Target::Dns { host, port } => json!({"dns": format!("{host}:{port}")}),
        Target::Srv { name } => json!({"srv": name}),
    };
    json!({"target": target, "refresh_ms": d.refresh.as_millis() as u64,
           "lookups": c.lookups.load(Ordering::Relaxed), "failures": c.failures.load(Ordering::Relaxed),
           "empty": c.empty.load(Ordering::Relaxed), "changes": c.changes.load(Ordering::Relaxed)})
}

fn pool(p: &Pool) -> Value {
    let health_check = p.spec.health_check.as_ref().map(|hc| match &hc.probe {
        Probe::Tcp => json!({"type": "tcp", "interval_ms": hc.interval.as_millis() as u64}),
        Probe::Udp { .. } => json!({"type": "udp", "interval_ms": hc.interval.as_millis() as u64}),
        Probe::Http { path, .. } => {
            json!({"type": "http", "interval_ms": hc.interval.as_millis() as u64, "path": path})
        }
    });
    let backends: Vec<Value> = p
        .table()
        .iter()
        .map(|b| {
            let result = b.last_check().as_str();
            let error = if result == "failed" { b.last_error.lock().map(|e| e.clone()).unwrap_or_default() } else { String::new() };
            let out: Vec<&str> = b.reasons().iter().map(|r| r.as_str()).collect();
            json!({
                "address": b.addr.to_string(), "weight": b.weight(), "healthy": b.eligible(),
                "state": b.admin_state().as_str(), "out": out,
                "ejections": b.outlier.ejections.load(Ordering::Relaxed),
                "last_ejection": b.outlier.last_ejection(),
                "active": b.active.load(Ordering::Relaxed), "requests": b.total.load(Ordering::Relaxed),
                "errors": b.errors.load(Ordering::Relaxed), "connect_failures": b.connect_failures.load(Ordering::Relaxed),
                "transitions": b.transitions.load(Ordering::Relaxed),
                "last_check": {"result": result, "latency_ms": b.last_check_micros.load(Ordering::Relaxed) as f64 / 1000.0, "error": error},
            })
        })
        .collect();
    let table = p.table();
    let queue = p.spec.resilience.max_conns.map(|(max, q)| {
        let (depth, full, timed_out) = p.queue_stats().unwrap_or_default();
        json!({"max_conns": max, "size": q.size, "timeout_ms": q.timeout.as_millis() as u64,
               "depth": depth, "refused_full": full, "timed_out": timed_out})
    });
    let retries: serde_json::Map<String, Value> = Condition::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), json!(table.retries_of(*c))))
        .collect();
    json!({
        "name": p.name(), "balance": balance(&p.spec), "health_check": health_check, "backends": backends,
        "retries": retries, "retry_budget_exhausted": table.budget_refused(), "panic_selections": table.panics(),
        "queue": queue, "discovery": discovery(p),
    })
}
