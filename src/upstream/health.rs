//! Active health checks, one probe stream per pool, feeding the pool's backend state.
//!
//! Pingora's `TcpHealthCheck` and `HttpHealthCheck` do the probing (and `udp.rs`, ours,
//! for UDP services); a recording wrapper wraps
//! either with the pool's `timeout`, records each result and its latency in the pool's
//! [`BackendTable`] (for metrics and the status page) and logs every transition. The
//! pool's `LoadBalancer` runs the checks as a background service, so however many
//! listeners share a pool, each backend is probed once per interval.

use super::proxy_header::for_health_check;
use super::spec::HealthCheckSpec;
use super::state::BackendTable;
use crate::vocab::{Probe, ProxyVersion};
use async_trait::async_trait;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;
use std::sync::Arc;
use tokio::time::Instant;

/// The pool's current state table (DNS discovery replaces it when the set changes).
pub(crate) type CurrentTable = Arc<dyn Fn() -> Arc<BackendTable> + Send + Sync>;

/// Builds the health check of pool `pool` from its settings; with `proxy`, each probe
/// starts with a PROXY header ([`super::proxy_header::for_health_check`]). Results are
/// recorded in the table `table` returns at the time.
pub(crate) fn build(
    pool: &str,
    spec: &HealthCheckSpec,
    proxy: Option<ProxyVersion>,
    table: CurrentTable,
) -> Box<dyn HealthCheck + Send + Sync> {
    let inner: Box<dyn HealthCheck + Send + Sync> = match &spec.probe {
        Probe::Tcp => {
            let mut hc = TcpHealthCheck::new();
            hc.consecutive_success = spec.rise;
            hc.consecutive_failure = spec.fall;
            hc.peer_template.options.connection_timeout = Some(spec.timeout);
            if let Some(version) = proxy {
                for_health_check(&mut hc.peer_template.options, version, spec.timeout);
            }
            hc
        }
        Probe::Http {
            path,
            expect_status,
        } => {
            let mut hc = HttpHealthCheck::new(pool, false);
            hc.consecutive_success = spec.rise;
            hc.consecutive_failure = spec.fall;
            hc.peer_template.options.connection_timeout = Some(spec.timeout);
            hc.peer_template.options.read_timeout = Some(spec.timeout);
            if let Some(version) = proxy {
                for_health_check(&mut hc.peer_template.options, version, spec.timeout);
            }
            // The request path; `Host` stays the pool name.
            hc.req
                .set_uri(path.parse().unwrap_or_else(|_| http::Uri::from_static("/")));
            let expect = *expect_status;
            hc.validator = Some(Box::new(move |resp: &ResponseHeader| {
                check_status(resp.status.as_u16(), expect)
            }));
            Box::new(hc)
        }
        Probe::Udp { send, expect } => Box::new(udp::UdpHealthCheck {
            send: send.clone(),
            expect: expect.clone(),
            wait: spec.timeout.mul_f64(0.9),
            rise: spec.rise,
            fall: spec.fall,
        }),
    };
    Box::new(Recorded {
        pool: pool.to_string(),
        inner,
        timeout: spec.timeout,
        table,
    })
}

/// Accepts `expect` exactly, or any 2xx when no status is configured.
fn check_status(status: u16, expect: Option<u16>) -> Result<()> {
    let ok = match expect {
        Some(e) => status == e,
        None => (200..300).contains(&status),
    };
    if ok {
        Ok(())
    } else {
        Error::e_explain(
            ErrorType::CustomCode("unexpected health check status", status),
            format!(
                "status {status}, expected {}",
                expect.map_or("2xx".to_string(), |e| e.to_string())
            ),
        )
    }
}

/// A health check that bounds each probe by the pool's timeout and records results.
struct Recorded {
    pool: String,
    inner: Box<dyn HealthCheck + Send + Sync>,
    timeout: std::time::Duration,
    table: CurrentTable,
}

#[async_trait]
impl HealthCheck for Recorded {
    async fn check(&self, target: &Backend) -> Result<()> {
        let start = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.inner.check(target)).await {
            Ok(r) => r,
            Err(_) => Error::e_explain(
                ErrorType::ConnectTimedout,
                format!("no answer within {:?}", self.timeout),
            ),
        };
        let table = (self.table)();
        if let Some(i) = table.index_of(&target.addr) {
            let outcome = result.as_ref().map(drop).map_err(|e| e.to_string());
            table.get(i).record_check(outcome, start.elapsed());
        }
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let state = if healthy { "up" } else { "down" };
        log::warn!("pool {}: backend {} is {state}", self.pool, target.addr);
        let table = (self.table)();
        if let Some(i) = table.index_of(&target.addr) {
            table.get(i).set_healthy(healthy);
        }
        self.inner.health_status_change(target, healthy).await;
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

#[cfg(test)]
mod tests;
mod udp;
