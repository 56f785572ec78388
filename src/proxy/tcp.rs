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
use crate::upstream::{Attempt, GiveUp, Pool};
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One TCP listener's proxy logic.
pub(crate) struct TcpProxy {
    /// The listener's name.
    pub(crate) listener: Arc<str>,
    /// The pool it forwards to.
    pub(crate) pool: Arc<Pool>,
    /// Connection filters, in order.
    pub(crate) filters: FilterChain,
    /// The listener's counters.
    pub(crate) metrics: TcpMetrics,
    /// The access log, if enabled.
    pub(crate) access_log: Option<Arc<AccessLog>>,
    /// How long connections keep flowing once the process starts shutting down.
    pub(crate) grace_period: Duration,
    /// How long a spliced direction busy-polls before it sleeps (`busy_poll`).
    pub(crate) busy_poll: Duration,
}

/// How a connection ended, for metrics and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Bytes were relayed (status 0 in the log).
    Relayed,
    /// A connection filter refused the client (logged as 403).
    Refused,
    /// The pool gave no backend (logged as its HTTP status: 503 or 502).
    NoBackend(GiveUp),
}

impl Ending {
    /// The status the access log records.
    fn status(self) -> u16 {
        match self {
            Ending::Relayed => 0,
            Ending::Refused => 403,
            Ending::NoBackend(give_up) => give_up.status(),
        }
    }
}

/// How a connection went.
struct Outcome {
    ending: Ending,
    backend: Option<SocketAddr>,
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
        let mut outcome = Outcome {
            ending: Ending::Relayed,
            backend: None,
            retries: 0,
            bytes_in: 0,
            bytes_out: 0,
        };
        if !self.admit(peer).await {
            outcome.ending = Ending::Refused; // dropping `client` closes it
        } else {
            let mut attempt = self.pool.attempt();
            let connected = self.connect(peer, &mut attempt).await;
            outcome.backend = attempt.backend();
            outcome.retries = attempt.retries();
            match connected {
                Ok(upstream) => {
                    let idle = self.pool.spec.read_timeout;
                    let drained = drain_deadline(shutdown.clone(), self.grace_period);
                    let relay = Relay::new(idle, self.busy_poll, self.metrics.bytes());
                    let mut totals = Totals::default();
                    let relayed = relay.run(client, upstream, drained, &mut totals).await;
                    (outcome.bytes_in, outcome.bytes_out) = (totals.bytes_in, totals.bytes_out);
                    if let Err(e) = relayed {
                        attempt.failed();
                        log::debug!(
                            "listener {}: connection to {:?} ended: {e}",
                            self.listener,
                            outcome.backend
                        );
                    }
                }
                Err(give_up) => outcome.ending = Ending::NoBackend(give_up),
            }
        }
        if outcome.ending != Ending::Relayed {
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

    /// Connects to a backend of the attempt's pool, trying others as it allows.
    async fn connect(
        &self,
        client: Option<SocketAddr>,
        attempt: &mut Attempt,
    ) -> Result<TcpStream, GiveUp> {
        let pool = &self.pool;
        let key = if pool.uses_key() {
            ip_key(client.map(|a| a.ip()))
        } else {
            Vec::new()
        };
        loop {
            let addr = attempt.next_queued(&key).await.inspect_err(|_| {
                log::warn!(
                    "listener {}: pool {} has no eligible backend",
                    self.listener,
                    pool.name()
                );
            })?;
            let why =
                match tokio::time::timeout(pool.spec.connect_timeout, TcpStream::connect(addr))
                    .await
                {
                    Ok(Ok(stream)) => {
                        attempt.succeeded();
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_string(),
                };
            log::warn!("pool {}: connecting to {addr} failed: {why}", pool.name());
            attempt.connect_failed()?;
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
            status: o.ending.status(),
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
