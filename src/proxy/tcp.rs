//! The L4 listener: a Pingora `ServerApp` that forwards raw TCP connections to a pool.
//!
//! Each connection gets a backend (the client address is the `consistent_hash` key),
//! connecting within `connect_timeout` and retrying another backend on failure. With no
//! eligible backend the client connection is closed at once. Bytes are then copied
//! both ways; an EOF from one side is passed on as a half-close, and the connection is
//! closed when neither side has sent anything for `read_timeout`.

use super::relay::{Relay, Totals};
use crate::filter::{Context, Decision, FilterChain, Hooks};
use crate::observability::access_log::Entry;
use crate::observability::metrics::TcpMetrics;
use crate::observability::AccessLog;
use crate::routing::key::ip_key;
use crate::upstream::{Chosen, Pool};
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One TCP listener's proxy logic.
pub struct TcpProxy {
    /// The listener's name.
    pub listener: Arc<str>,
    /// The pool it forwards to.
    pub pool: Arc<Pool>,
    /// Connection filters, in order.
    pub filters: FilterChain,
    /// The listener's counters.
    pub metrics: TcpMetrics,
    /// The access log, if enabled.
    pub access_log: Option<Arc<AccessLog>>,
    /// How long connections keep flowing once the process starts shutting down.
    pub grace_period: Duration,
    /// How long a spliced direction busy-polls before it sleeps (`busy_poll`).
    pub busy_poll: Duration,
}

/// How a connection went, for metrics and the access log: `status` is 0 when bytes
/// were relayed, 403 when a filter refused the client, 503 when no backend was
/// eligible and 502 when connecting failed.
#[derive(Default)]
struct Outcome {
    backend: Option<SocketAddr>,
    status: u16,
    retries: u32,
    bytes_in: u64,
    bytes_out: u64,
}

#[async_trait]
impl ServerApp for TcpProxy {
    async fn process_new(
        self: &Arc<Self>,
        client: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let start = Instant::now();
        let _open = self.metrics.open();
        let peer = client
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let mut outcome = Outcome::default();
        if !self.admit(peer).await {
            outcome.status = 403; // dropping `client` closes it
        } else {
            match self.connect(peer, &mut outcome).await {
                Ok((upstream, chosen)) => {
                    outcome.backend = Some(chosen.addr);
                    let idle = self.pool.spec.read_timeout;
                    let drained = drain_deadline(shutdown.clone(), self.grace_period);
                    let relay = Relay::new(idle, self.busy_poll, self.metrics.bytes());
                    let mut totals = Totals::default();
                    let relayed = relay.run(client, upstream, drained, &mut totals).await;
                    (outcome.bytes_in, outcome.bytes_out) = (totals.bytes_in, totals.bytes_out);
                    if let Err(e) = relayed {
                        chosen.lease.stats().errors.fetch_add(1, Ordering::Relaxed);
                        log::debug!(
                            "listener {}: connection to {} ended: {e}",
                            self.listener,
                            chosen.addr
                        );
                    }
                }
                Err(status) => outcome.status = status,
            }
        }
        if outcome.status != 0 {
            self.metrics.fail();
        }
        if let Some(log) = &self.access_log {
            log.log(&self.entry(peer, outcome, start.elapsed()));
        }
        None
    }
}

impl TcpProxy {
    /// Runs the connection filters; false when one refuses the connection.
    async fn admit(&self, client: Option<SocketAddr>) -> bool {
        let mut state = http::Extensions::new();
        for f in self.filters.with(Hooks::CONNECTION) {
            let mut ctx = Context::new(
                &self.listener,
                None,
                self.pool.name(),
                client,
                false,
                &mut state,
            );
            match f.connection(&mut ctx).await {
                Ok(Decision::Continue) => {}
                Ok(Decision::Respond(r)) => {
                    log::debug!(
                        "listener {}: connection from {client:?} refused ({})",
                        self.listener,
                        r.status
                    );
                    return false;
                }
                Err(e) => {
                    log::warn!("listener {}: connection filter failed: {e}", self.listener);
                    return false;
                }
            }
        }
        true
    }

    /// Connects to a backend, retrying others on failure; on failure returns the
    /// status to log (503 nothing eligible, 502 connecting failed).
    async fn connect(
        &self,
        client: Option<SocketAddr>,
        outcome: &mut Outcome,
    ) -> Result<(TcpStream, Chosen), u16> {
        let pool = &self.pool;
        let key = if pool.uses_key() {
            ip_key(client.map(|a| a.ip()))
        } else {
            Vec::new()
        };
        let mut tried = Vec::new();
        loop {
            let Some(chosen) = pool.select(&key, &tried) else {
                log::warn!(
                    "listener {}: pool {} has no eligible backend",
                    self.listener,
                    pool.name()
                );
                return Err(if tried.is_empty() { 503 } else { 502 });
            };
            tried.push(chosen.addr);
            match tokio::time::timeout(pool.spec.connect_timeout, TcpStream::connect(chosen.addr))
                .await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, chosen));
                }
                failed => {
                    chosen
                        .lease
                        .stats()
                        .connect_failures
                        .fetch_add(1, Ordering::Relaxed);
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_string(),
                    };
                    log::warn!(
                        "pool {}: connecting to {} failed: {why}",
                        pool.name(),
                        chosen.addr
                    );
                    if tried.len() > pool.spec.retries || !pool.has_candidate(&tried) {
                        return Err(502);
                    }
                    outcome.retries += 1;
                    pool.table().count_retry();
                }
            }
        }
    }

    fn entry(&self, client: Option<SocketAddr>, o: Outcome, elapsed: Duration) -> Entry<'_> {
        Entry {
            time: std::time::SystemTime::now(),
            protocol: "tcp",
            client,
            listener: &self.listener,
            route: None,
            pool: Some(self.pool.name()),
            backend: o.backend,
            method: "",
            path: "",
            host: "",
            referer: "",
            user_agent: "",
            status: o.status,
            duration: elapsed,
            upstream_duration: None,
            bytes_in: o.bytes_in,
            bytes_out: o.bytes_out,
            retries: o.retries,
        }
    }
}

/// Resolves `grace` after the process starts shutting down (never, if it does not).
async fn drain_deadline(mut shutdown: ShutdownWatch, grace: Duration) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
    tokio::time::sleep(grace).await;
}
