//! A pool's settings, as the config validator builds them: addresses parsed, durations
//! read, the balance mode and health check checked.

use super::policy::{DiscoverySpec, Resilience};
use crate::vocab::{Balance, Probe, ProxyVersion};
use std::net::SocketAddr;
use std::time::Duration;

/// A named backend set.
#[derive(Debug, Clone)]
pub(crate) struct PoolSpec {
    /// The pool's name.
    pub(crate) name: String,
    /// Backends, in file order.
    pub(crate) backends: Vec<BackendSpec>,
    /// How a backend is chosen.
    pub(crate) balance: Balance,
    /// Active health check, if any.
    pub(crate) health_check: Option<HealthCheckSpec>,
    /// Connect timeout.
    pub(crate) connect_timeout: Duration,
    /// Longest wait for the backend's next bytes.
    pub(crate) read_timeout: Duration,
    /// Extra attempts on another backend when connecting fails.
    pub(crate) retries: usize,
    /// The HTTP version and TLS spoken to the backends.
    pub(crate) link: super::Link,
    /// The PROXY header sent on each new connection to a backend, if any.
    pub(crate) proxy_protocol: Option<ProxyVersion>,
    /// Passive health, fail-open, slow start and retry rules.
    pub(crate) resilience: Resilience,
    /// DNS discovery of the backends (then `backends` is empty).
    pub(crate) discovery: Option<DiscoverySpec>,
}

/// One backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackendSpec {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Relative weight, >= 1.
    pub(crate) weight: usize,
}

/// An active health check.
#[derive(Debug, Clone)]
pub(crate) struct HealthCheckSpec {
    /// What a probe does.
    pub(crate) probe: Probe,
    /// Time between probes.
    pub(crate) interval: Duration,
    /// Time one probe may take.
    pub(crate) timeout: Duration,
    /// Consecutive successes to bring a backend back.
    pub(crate) rise: usize,
    /// Consecutive failures to take a backend out.
    pub(crate) fall: usize,
}
