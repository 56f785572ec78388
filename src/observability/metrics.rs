//! Prometheus metrics. Label values are bounded by the config: listener, route, pool
//! and backend names or addresses, never paths or hosts from requests.
//!
//! Handles for the request path are resolved once, at start-up ([`RouteMetrics`],
//! [`ListenerMetrics`], [`TcpMetrics`]), so recording is a few atomic adds with no
//! label lookup. Per-backend figures live in each pool's `BackendTable` and are copied
//! into their metrics when `/metrics` is scraped ([`Metrics::sync_pools`]).

use crate::upstream::Pool;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Every metric Tioga exports, in its own registry.
pub(crate) struct Metrics {
    /// Whether the request path records anything (only when an admin endpoint can
    /// show it).
    enabled: bool,
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_active: IntGaugeVec,
    http_refused: IntCounterVec,
    http_timeouts: IntCounterVec,
    connections_refused: IntCounterVec,
    proxy_protocol_refused: IntCounterVec,
    tcp_connections: IntCounterVec,
    tcp_active: IntGaugeVec,
    tcp_bytes: IntCounterVec,
    tcp_failed: IntCounterVec,
    backend_up: IntGaugeVec,
    backend_active: IntGaugeVec,
    backend_requests: IntCounterVec,
    backend_connect_failures: IntCounterVec,
    backend_transitions: IntCounterVec,
    pool_retries: IntCounterVec,
    config_loaded: IntGauge,
    config_reloads: IntCounterVec,
    config_info: IntGaugeVec,
    access_log_dropped: IntCounter,
    udp: super::udp_metrics::UdpFamilies,
    resilience: super::pool_metrics::ResilienceMetrics,
}

/// Status classes, indexed by `status / 100 - 1`; anything else counts as `5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => (status / 100 - 1) as usize,
        _ => 4,
    }
}

/// Request counters and the duration histogram of one route (or of a listener's
/// requests that matched no route).
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    enabled: bool,
    by_class: [IntCounter; 5],
    duration: Histogram,
}

impl RouteMetrics {
    /// Records one finished request.
    pub(crate) fn record(&self, status: u16, seconds: f64) {
        if !self.enabled {
            return;
        }
        self.by_class[class_index(status)].inc();
        self.duration.observe(seconds);
    }

    /// Requests so far, and how many were 5xx.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.by_class.iter().map(IntCounter::get).sum(),
            self.by_class[4].get(),
        )
    }
}

/// Per-HTTP-listener gauges.
#[derive(Clone)]
pub(crate) struct ListenerMetrics {
    enabled: bool,
    /// Requests in flight.
    pub(crate) active: IntGauge,
    listener: Arc<str>,
    refused: IntCounterVec,
}

impl ListenerMetrics {
    /// Counts a request refused before routing, by `reason`.
    pub(crate) fn refused(&self, reason: &str) {
        if self.enabled {
            self.refused
                .with_label_values(&[&*self.listener, reason])
                .inc();
        }
    }

    /// Counts one request in flight until the guard is dropped.
    pub(crate) fn track(&self) -> Option<GaugeGuard> {
        self.enabled.then(|| GaugeGuard::new(&self.active))
    }
}

/// Per-TCP-listener metrics.
#[derive(Clone)]
pub(crate) struct TcpMetrics {
    enabled: bool,
    /// Connections accepted.
    pub(crate) connections: IntCounter,
    /// Connections open.
    pub(crate) active: IntGauge,
    /// Bytes from clients to backends.
    pub(crate) bytes_in: IntCounter,
    /// Bytes from backends to clients.
    pub(crate) bytes_out: IntCounter,
    /// Connections refused or closed without a backend.
    pub(crate) failed: IntCounter,
}

impl TcpMetrics {
    /// Counts an accepted connection, open until the guard is dropped.
    pub(crate) fn open(&self) -> Option<GaugeGuard> {
        self.enabled.then(|| {
            self.connections.inc();
            GaugeGuard::new(&self.active)
        })
    }

    /// Counts a connection that reached no backend.
    pub(crate) fn fail(&self) {
        if self.enabled {
            self.failed.inc();
        }
    }

    /// The byte counters (client → backend, backend → client), when recording.
    pub(crate) fn bytes(&self) -> (Option<&IntCounter>, Option<&IntCounter>) {
        if self.enabled {
            (Some(&self.bytes_in), Some(&self.bytes_out))
        } else {
            (None, None)
        }
    }
}

impl Metrics {
    /// Creates and registers every metric; the request path records only when
    /// `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let buckets = exponential_buckets(0.0005, 2.0, 16).expect("valid buckets");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "tioga_http_request_duration_seconds",
                "Time from request head to end of response",
            )
            .buckets(buckets),
            &["listener", "route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_duration.clone()))
            .expect("unique metric");
        let config_loaded = IntGauge::new(
            "tioga_config_last_load_timestamp_seconds",
            "When the running config was loaded (Unix time)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(config_loaded.clone()))
            .expect("unique metric");
        let config_reloads = counter(
            "tioga_config_reloads_total",
            "Reloads in place (SIGHUP, POST /reload, and automatic rollbacks) by result",
            &["result"],
        );
        let config_info = gauge(
            "tioga_config_info",
            "1 for the hash (SHA-256 of the file) of the running config",
            &["hash"],
        );
        let access_log_dropped = IntCounter::new(
            "tioga_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind",
        )
        .expect("valid metric");
        registry
            .register(Box::new(access_log_dropped.clone()))
            .expect("unique metric");
        let resilience = super::pool_metrics::ResilienceMetrics::new(&registry);
        Self {
            resilience,
            enabled,
            udp: super::udp_metrics::UdpFamilies::register(&registry),
            http_requests: counter(
                "tioga_http_requests_total",
                "HTTP requests by status class",
                &["listener", "route", "pool", "class"],
            ),
            http_active: gauge(
                "tioga_http_active_requests",
                "HTTP requests in flight",
                &["listener"],
            ),
            connections_refused: counter(
                "tioga_listener_connections_refused_total",
                "Connections closed at once because the listener had max_connections open",
                &["listener"],
            ),
            proxy_protocol_refused: counter(
                "tioga_proxy_protocol_refused_total",
                "Connections closed for their PROXY header: from an untrusted sender, or none valid in time",
                &["listener", "reason"],
            ),
            http_timeouts: counter(
                "tioga_http_timeouts_total",
                "HTTP connections closed because a request head was not complete in time",
                &["listener", "phase"],
            ),
            http_refused: counter(
                "tioga_http_refused_total",
                "HTTP requests refused before routing (head too large, bad path, ...)",
                &["listener", "reason"],
            ),
            tcp_connections: counter(
                "tioga_tcp_connections_total",
                "TCP connections accepted",
                &["listener", "pool"],
            ),
            tcp_active: gauge(
                "tioga_tcp_active_connections",
                "TCP connections open",
                &["listener"],
            ),
            tcp_bytes: counter(
                "tioga_tcp_bytes_total",
                "Bytes relayed by TCP listeners",
                &["listener", "direction"],
            ),
            tcp_failed: counter(
                "tioga_tcp_connections_failed_total",
                "TCP connections closed without reaching a backend",
                &["listener"],
            ),
            backend_up: gauge(
                "tioga_backend_up",
                "1 when the backend is eligible (healthy), else 0",
                &["pool", "backend"],
            ),
            backend_active: gauge(
                "tioga_backend_active",
                "Requests or connections in flight on the backend",
                &["pool", "backend"],
            ),
            backend_requests: counter(
                "tioga_backend_requests_total",
                "Requests or connections sent to the backend",
                &["pool", "backend"],
            ),
            backend_connect_failures: counter(
                "tioga_upstream_connect_failures_total",
                "Failed connection attempts to the backend",
                &["pool", "backend"],
            ),
            backend_transitions: counter(
                "tioga_backend_health_transitions_total",
                "Health changes (up to down or down to up)",
                &["pool", "backend"],
            ),
            pool_retries: counter(
                "tioga_upstream_retries_total",
                "Attempts on another backend after a connect failure",
                &["pool"],
            ),
            http_duration,
            config_loaded,
            config_reloads,
            config_info,
            access_log_dropped,
            registry,
        }
    }

    /// Handles for route `route` of HTTP listener `listener`.
    pub(crate) fn route(&self, listener: &str, route: &str, pool: &str) -> RouteMetrics {
        RouteMetrics {
            enabled: self.enabled,
            by_class: CLASSES.map(|c| {
                self.http_requests
                    .with_label_values(&[listener, route, pool, c])
            }),
            duration: self.http_duration.with_label_values(&[listener, route]),
        }
    }

    /// Handles for UDP listener `listener` on `pool`.
    pub(crate) fn udp(&self, listener: &str, pool: &str) -> super::udp_metrics::UdpMetrics {
        self.udp.listener(self.enabled, listener, pool)
    }

    /// Handles for HTTP listener `listener`.
    pub(crate) fn listener(&self, listener: &str) -> ListenerMetrics {
        ListenerMetrics {
            enabled: self.enabled,
            active: self.http_active.with_label_values(&[listener]),
            listener: listener.into(),
            refused: self.http_refused.clone(),
        }
    }

    /// Counts connections a listener refused at `max_connections`.
    pub(crate) fn connections_refused(&self, listener: &str) -> IntCounter {
        self.connections_refused.with_label_values(&[listener])
    }

    /// The PROXY protocol refusals of `listener`: an untrusted sender, and a missing,
    /// late or invalid header.
    pub(crate) fn proxy_protocol_refused(&self, listener: &str) -> [IntCounter; 2] {
        ["untrusted", "invalid"].map(|reason| {
            self.proxy_protocol_refused
                .with_label_values(&[listener, reason])
        })
    }

    /// The head-timeout counters of HTTP listener `listener`: a new connection's first
    /// head (`request_header`), a kept-alive connection's next one (`keepalive`).
    pub(crate) fn head_timeouts(&self, listener: &str) -> [IntCounter; 2] {
        ["request_header", "keepalive"]
            .map(|phase| self.http_timeouts.with_label_values(&[listener, phase]))
    }

    /// Handles for TCP listener `listener` forwarding to `pool`.
    pub(crate) fn tcp(&self, listener: &str, pool: &str) -> TcpMetrics {
        TcpMetrics {
            enabled: self.enabled,
            connections: self.tcp_connections.with_label_values(&[listener, pool]),
            active: self.tcp_active.with_label_values(&[listener]),
            bytes_in: self.tcp_bytes.with_label_values(&[listener, "in"]),
            bytes_out: self.tcp_bytes.with_label_values(&[listener, "out"]),
            failed: self.tcp_failed.with_label_values(&[listener]),
        }
    }

    /// Counts an access-log line that could not be queued.
    pub(crate) fn access_log_dropped(&self) -> &IntCounter {
        &self.access_log_dropped
    }

    /// Adds metrics kept elsewhere (such as the shared rate-limit store's); one
    /// already registered is skipped.
    pub(crate) fn register_collectors(
        &self,
        collectors: Vec<Box<dyn prometheus::core::Collector>>,
    ) {
        for c in collectors {
            let _ = self.registry.register(c);
        }
    }

    /// Records when the config was loaded.
    pub(crate) fn set_config_loaded(&self, unix_seconds: i64) {
        self.config_loaded.set(unix_seconds);
    }

    /// Records the running config's hash (the gauge of the previous one is removed).
    pub(crate) fn set_config_hash(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// Counts a reload with `result` (`ok`, `refused`, `rolled_back`).
    pub(crate) fn config_reloaded(&self, result: &str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// Copies each backend's live figures into its metrics.
    pub(crate) fn sync_pools(&self, pools: &[Arc<Pool>]) {
        let catch_up = |c: IntCounter, v: u64| {
            let have = c.get();
            if v > have {
                c.inc_by(v - have);
            }
        };
        for pool in pools {
            let name = pool.name();
            for b in pool.table().iter() {
                let addr = b.addr.to_string();
                let labels = [name, addr.as_str()];
                self.backend_up
                    .with_label_values(&labels)
                    .set(i64::from(b.eligible()));
                self.backend_active
                    .with_label_values(&labels)
                    .set(b.active.load(Ordering::Relaxed) as i64);
                catch_up(
                    self.backend_requests.with_label_values(&labels),
                    b.total.load(Ordering::Relaxed),
                );
                catch_up(
                    self.backend_connect_failures.with_label_values(&labels),
                    b.connect_failures.load(Ordering::Relaxed),
                );
                catch_up(
                    self.backend_transitions.with_label_values(&labels),
                    b.transitions.load(Ordering::Relaxed),
                );
            }
            catch_up(
                self.pool_retries.with_label_values(&[name]),
                pool.table().retries(),
            );
        }
        self.resilience.sync(pools);
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("metrics: encoding failed: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(true)
    }
}

/// Counts one in-flight request or connection on a gauge until dropped.
pub(crate) struct GaugeGuard(IntGauge);

impl GaugeGuard {
    /// Increments `gauge` now; decrements it on drop.
    pub(crate) fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_counters_move_by_class() {
        let m = Metrics::new(true);
        let r = m.route("web", "web[0]", "api");
        for s in [200, 201, 404, 502, 999] {
            r.record(s, 0.01);
        }
        assert_eq!(r.totals(), (5, 2));
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(r#"tioga_http_requests_total{class="2xx",listener="web",pool="api",route="web[0]"} 2"#), "{text}");
        assert!(
            text.contains(
                r#"tioga_http_request_duration_seconds_count{listener="web",route="web[0]"} 5"#
            ),
            "{text}"
        );
    }
}
