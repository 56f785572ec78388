//! The L4 listener: a Pingora `ServerApp` that forwards raw TCP connections to a pool,
//! one pool or the first of its routes that matches (`route`: by client address and
//! TLS server name); a connection no route matches is closed.
//!
//! Each connection gets a backend (the client address is the `consistent_hash` key),
//! connecting within `connect_timeout` and retrying another backend on failure. With no
//! eligible backend the client connection is closed at once. Bytes are then copied
//! both ways; an EOF from one side is passed on as a half-close, and the connection is
//! closed when neither side has sent anything for `read_timeout`. A pool with
//! `proxy_protocol` gets a PROXY header first on each backend connection.

use super::relay::{Relay, Totals};
use crate::filter::{Context, Decision, FilterChain, Hooks};
use crate::observability::access_log::Entry;
use crate::observability::metrics::TcpMetrics;
use crate::observability::AccessLog;
use crate::routing::key::ip_key;
use crate::routing::tcp::TcpRouteTable;
use crate::upstream::proxy_header;
use crate::upstream::{Attempt, GiveUp, Pool};
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

mod route;
pub(crate) use route::name as route_name;

/// One TCP listener's proxy logic.
pub(crate) struct TcpProxy {
    /// The listener's name.
    pub(crate) listener: Arc<str>,
    /// Its routes: one that matches all for a listener with `pool`.
    pub(crate) routes: TcpRouteTable<TcpRoute>,
    /// How long a route that needs the server name waits for the ClientHello.
    pub(crate) peek_timeout: Duration,
    /// Counters of connections no route took (pool `-`).
    pub(crate) no_route: TcpMetrics,
    /// Connection filters, in order.
    pub(crate) filters: FilterChain,
    /// The access log, if enabled.
    pub(crate) access_log: Option<Arc<AccessLog>>,
    /// How long connections keep flowing once the process starts shutting down.
    pub(crate) grace_period: Duration,
    /// How long a spliced direction busy-polls before it sleeps (`busy_poll`).
    pub(crate) busy_poll: Duration,
}

/// Where a route sends its connections.
pub(crate) struct TcpRoute {
    /// `LISTENER[i]` for a listener with `routes`; `None` for one with `pool`.
    pub(crate) name: Option<Arc<str>>,
    /// The pool it forwards to.
    pub(crate) pool: Arc<Pool>,
    /// Its counters.
    pub(crate) metrics: TcpMetrics,
    /// Connections it took, for the status page (listeners with `routes`).
    pub(crate) taken: Option<prometheus::IntCounter>,
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
    /// No route matched (logged as 404).
    NoRoute,
    /// A route needed the server name and no ClientHello came in `peek_timeout`,
    /// or the client closed first (logged as 408).
    NoHello,
}

impl Ending {
    /// The status the access log records.
    fn status(self) -> u16 {
        match self {
            Ending::Relayed => 0,
            Ending::Refused => 403,
            Ending::NoBackend(give_up) => give_up.status(),
            Ending::NoRoute => 404,
            Ending::NoHello => 408,
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

/// Not HTTP: the accept stack hands each connection to `process_new` whole.
impl super::accept::Served for TcpProxy {}

#[async_trait]
impl ServerApp for TcpProxy {
    async fn process_new(
        self: &Arc<Self>,
        client: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let start = Instant::now();
        let digest = client.get_socket_digest();
        let inet = |a: Option<&pingora_core::protocols::l4::socket::SocketAddr>| {
            a.and_then(|a| a.as_inet()).copied()
        };
        let peer = inet(digest.as_ref().and_then(|d| d.peer_addr()));
        // The routing, filter and connect steps are boxed: their state is needed once,
        // and would otherwise size the future an idle relayed connection holds.
        let (client, route) = match Box::pin(self.route(client, peer)).await {
            Ok(found) => found,
            Err(ending) => {
                let _open = self.no_route.open();
                self.no_route.fail();
                if let Some(log) = &self.access_log {
                    let outcome = Outcome::ended(ending);
                    log.log(&self.entry(None, peer, outcome, start.elapsed()));
                }
                return None;
            }
        };
        let _open = route.metrics.open();
        if let Some(taken) = &route.taken {
            taken.inc();
        }
        // The address the client connected to costs a syscall: only a PROXY header
        // needs it.
        let local = match route.pool.spec.proxy_protocol {
            Some(_) => inet(digest.as_ref().and_then(|d| d.local_addr())),
            None => None,
        };
        let mut outcome = Outcome::ended(Ending::Relayed);
        if !Box::pin(self.admit(route, peer)).await {
            outcome.ending = Ending::Refused; // dropping `client` closes it
        } else {
            let mut attempt = route.pool.attempt();
            let connected = Box::pin(self.connect(route, (peer, local), &mut attempt)).await;
            outcome.backend = attempt.backend();
            outcome.retries = attempt.retries();
            attempt.settle();
            match connected {
                Ok(upstream) => {
                    let idle = route.pool.spec.read_timeout;
                    let drained = pin!(drain_deadline(shutdown.clone(), self.grace_period));
                    let relay = Relay::new(idle, self.busy_poll, route.metrics.bytes());
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
            route.metrics.fail();
        }
        if let Some(log) = &self.access_log {
            log.log(&self.entry(Some(route), peer, outcome, start.elapsed()));
        }
        None
    }
}

impl Outcome {
    fn ended(ending: Ending) -> Outcome {
        Outcome {
            ending,
            backend: None,
            retries: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }
}

impl TcpProxy {
    /// Runs the connection filters; false when one refuses the connection.
    async fn admit(&self, route: &TcpRoute, client: Option<SocketAddr>) -> bool {
        let mut state = http::Extensions::new();
        for f in self.filters.with(Hooks::CONNECTION) {
            let mut ctx = Context::new(
                &self.listener,
                route.name.as_deref(),
                route.pool.name(),
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

    /// Connects to a backend of the attempt's pool, trying others as it allows, and
    /// sends the pool's PROXY header, if any, for `client` connected to `local`.
    async fn connect(
        &self,
        route: &TcpRoute,
        (client, local): (Option<SocketAddr>, Option<SocketAddr>),
        attempt: &mut Attempt,
    ) -> Result<TcpStream, GiveUp> {
        let pool = &route.pool;
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
                    Ok(Ok(mut stream)) => {
                        attempt.succeeded();
                        let _ = stream.set_nodelay(true);
                        let header = match (pool.spec.proxy_protocol, client) {
                            (Some(version), Some(source)) => {
                                let destination = local.unwrap_or(addr);
                                proxy_header::send(&mut stream, version, source, destination).await
                            }
                            _ => Ok(()),
                        };
                        match header {
                            Ok(()) => return Ok(stream),
                            Err(e) => format!("sending the PROXY header: {e}"),
                        }
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_string(),
                };
            log::warn!("pool {}: connecting to {addr} failed: {why}", pool.name());
            attempt.connect_failed()?;
        }
    }

    fn entry<'a>(
        &'a self,
        route: Option<&'a TcpRoute>,
        client: Option<SocketAddr>,
        o: Outcome,
        elapsed: Duration,
    ) -> Entry<'a> {
        Entry {
            time: std::time::SystemTime::now(),
            protocol: "tcp",
            client,
            listener: &self.listener,
            route: route.and_then(|r| r.name.as_deref()),
            pool: route.map(|r| r.pool.name()),
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
            tls_client: None,
            grpc_status: None,
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
    // Boxed: the timer is needed only once shutdown begins.
    Box::pin(tokio::time::sleep(grace)).await;
}
