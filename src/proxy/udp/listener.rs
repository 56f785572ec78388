//! The receive task of one listening socket: it reads every datagram, finds or starts
//! the sender's flow and passes the datagram on, in the order read.
//!
//! One task per socket is what keeps a flow in order while the listener's worker
//! threads share the work: the kernel queues a socket's datagrams in arrival order, a
//! single reader takes them in that order, and each flow's answers come back through
//! one task of its own. Those answer tasks run on every worker thread.

use super::flow::{self, Flow};
use super::flows::{Clock, FlowTable};
use super::{proxy_header, UdpProxy};
use crate::filter::{Context, Decision, Hooks};
use crate::observability::access_log::Entry;
use crate::observability::udp_metrics::DropReason;
use crate::proxy::live::Slot;
use crate::routing::key::ip_key;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

/// Datagrams read in a row before the task looks at its timers again.
const BATCH: usize = 64;

/// One listening socket and its flows.
pub(super) struct Receiver {
    /// The listener's app as of the last datagram.
    app: Arc<UdpProxy>,
    /// Where a reload puts the new app.
    slot: Slot<UdpProxy>,
    table: FlowTable<Flow>,
    cx: flow::Context,
    /// The socket's own address (the destination in PROXY headers).
    local: SocketAddr,
    /// When a dropped datagram was last logged, and how many were dropped since.
    last_warning: Option<u64>,
    unlogged: u64,
}

impl Receiver {
    /// A receiver for `socket`.
    pub(super) fn new(slot: Slot<UdpProxy>, socket: UdpSocket) -> Self {
        let app = slot.load_full();
        let table = FlowTable::new(app.spec.max_flows, app.spec.session_timeout);
        let local = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let cx = flow::Context {
            listener: Arc::new(socket),
            clock: Clock::start(),
            metrics: app.metrics.clone(),
            name: app.name.clone(),
        };
        Receiver {
            app,
            slot,
            table,
            cx,
            local,
            last_warning: None,
            unlogged: 0,
        }
    }

    /// Relays until the process hands its sockets over or shuts down, then keeps the
    /// flows answering until the grace period ends or they all go idle.
    pub(super) async fn run(
        mut self,
        shutdown: ShutdownWatch,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) {
        let mut buf = vec![0u8; flow::MAX_DATAGRAM];
        let mut sweep = tokio::time::interval(self.table.sweep_interval());
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = stop_reading(shutdown.clone(), phases);
        tokio::pin!(stop);
        let socket = self.cx.listener.clone();
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = sweep.tick() => self.expire(),
                read = socket.recv_from(&mut buf) => {
                    match read {
                        Ok((n, client)) => self.forward(&buf[..n], client).await,
                        Err(e) => {
                            log::debug!("listener {}: {e}", self.app.name);
                            // A lasting error must not spin this task.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    for _ in 0..BATCH {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, client)) => self.forward(&buf[..n], client).await,
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        log::info!(
            "listener {}: no longer reading {:?}; {} flow(s) keep answering",
            self.app.name,
            socket.local_addr().ok(),
            self.table.len()
        );
        let drained = drain_deadline(shutdown, self.app.grace_period);
        tokio::pin!(drained);
        while self.table.len() > 0 {
            tokio::select! {
                _ = &mut drained => break,
                _ = sweep.tick() => self.expire(),
            }
        }
        for (client, flow) in self.table.drain() {
            self.forget(client, flow);
        }
    }

    /// Takes the app a reload put in place. Flows stay on their backends when the pool
    /// is the same one (unchanged by the reload); otherwise they end here and the next
    /// datagram of each starts a flow in the new pool.
    fn reloaded(&mut self) {
        let next = self.slot.load_full();
        let moved = !Arc::ptr_eq(&self.app.pool, &next.pool);
        if moved {
            log::info!(
                "listener {}: pool {} replaced by a reload; {} flow(s) move to pool {}",
                self.app.name,
                self.app.pool.name(),
                self.table.len(),
                next.pool.name()
            );
            for (client, flow) in self.table.drain() {
                self.forget(client, flow);
            }
        }
        self.cx.metrics = next.metrics.clone();
        self.app = next;
    }

    /// Passes one datagram from `client` to its flow, starting the flow if needed.
    async fn forward(&mut self, datagram: &[u8], client: SocketAddr) {
        if !Arc::ptr_eq(&self.app, &self.slot.load()) {
            self.reloaded();
        }
        let now = self.cx.clock.now();
        if self.table.get_mut(&client).is_none() {
            match self.start(client).await {
                Ok(flow) => {
                    self.table.insert(client, flow);
                    self.app.metrics.flow_started();
                }
                Err(reason) => return self.drop_datagram(reason),
            }
        }
        let Some(flow) = self.table.get_mut(&client) else {
            return;
        };
        flow.shared.last_active.touch(now);
        match flow.send(datagram).await {
            Ok(()) => self.app.metrics.forwarded_in(datagram.len()),
            Err(reason) => self.drop_datagram(reason),
        }
    }

    /// A new flow for `client`: room in the table, the filters' consent, a backend.
    async fn start(&mut self, client: SocketAddr) -> Result<Flow, DropReason> {
        if self.table.is_full() {
            log::debug!(
                "listener {}: flow table full; {client} dropped",
                self.app.name
            );
            return Err(DropReason::FlowTableFull);
        }
        if !self.admit(client).await {
            return Err(DropReason::Refused);
        }
        let pool = &self.app.pool;
        let key = if pool.uses_key() {
            ip_key(Some(client.ip()))
        } else {
            Vec::new()
        };
        let header = self
            .app
            .spec
            .proxy_protocol
            .then(|| proxy_header::header(client, self.local));
        Flow::open(pool, &key, client, header, &self.cx)
    }

    /// Counts a dropped datagram, and says so in the log at most once a second (a
    /// flood of datagrams must not become a flood of lines); refusals by filters are
    /// only counted.
    fn drop_datagram(&mut self, reason: DropReason) {
        self.app.metrics.dropped(reason);
        if reason == DropReason::Refused {
            return;
        }
        self.unlogged += 1;
        let now = self.cx.clock.now();
        if self
            .last_warning
            .is_some_and(|t| now.saturating_sub(t) < 1000)
        {
            return;
        }
        let why = match reason {
            DropReason::NoBackend => {
                format!("pool {} has no eligible backend", self.app.pool.name())
            }
            DropReason::FlowTableFull => format!(
                "the flow table is full (max_flows {})",
                self.app.spec.max_flows
            ),
            DropReason::NoSocket => {
                "no socket towards the backend (descriptors or ephemeral ports ran out)".to_string()
            }
            DropReason::SendFailed => "sending to the backend failed".to_string(),
            DropReason::Refused => "refused".to_string(),
        };
        log::warn!(
            "listener {}: datagram dropped: {why} ({} dropped since the last such line)",
            self.app.name,
            self.unlogged
        );
        self.last_warning = Some(now);
        self.unlogged = 0;
    }

    /// Runs the filters with a connection hook; false when one refuses `client`.
    async fn admit(&self, client: SocketAddr) -> bool {
        let mut state = http::Extensions::new();
        for f in self.app.filters.with(Hooks::CONNECTION) {
            let mut ctx = Context::new(
                &self.app.name,
                None,
                self.app.pool.name(),
                Some(client),
                false,
                &mut state,
            );
            match f.connection(&mut ctx).await {
                Ok(Decision::Continue) => {}
                Ok(Decision::Respond(r)) => {
                    log::debug!(
                        "listener {}: flow from {client} refused ({})",
                        self.app.name,
                        r.status
                    );
                    return false;
                }
                Err(e) => {
                    log::warn!("listener {}: flow filter failed: {e}", self.app.name);
                    return false;
                }
            }
        }
        true
    }

    /// Forgets the flows idle for `session_timeout`.
    fn expire(&mut self) {
        let now = self.cx.clock.now();
        for (client, flow) in self.table.expire(now) {
            self.forget(client, flow);
        }
    }

    /// Ends `client`'s flow: its access-log line, its counters.
    fn forget(&self, client: SocketAddr, flow: Flow) {
        self.app.metrics.flow_ended();
        if let Some(log) = &self.app.access_log {
            let lived = self.cx.clock.now().saturating_sub(flow.started);
            log.log(&Entry {
                time: std::time::SystemTime::now(),
                protocol: "udp",
                client: Some(client),
                listener: &self.app.name,
                route: None,
                pool: Some(self.app.pool.name()),
                backend: flow.attempt.backend(),
                method: "",
                path: "",
                host: "",
                referer: "",
                user_agent: "",
                status: 0,
                duration: Duration::from_millis(lived),
                upstream_duration: None,
                bytes_in: flow.bytes_in,
                bytes_out: flow.shared.bytes_out.load(Ordering::Relaxed),
                retries: flow.attempt.retries(),
                tls_client: None,
                grpc_status: None,
            });
        }
    }
}

/// Resolves when this process should stop reading its sockets: once it has handed
/// them to a new process (which reads them from then on), or when it shuts down.
async fn stop_reading(
    mut shutdown: ShutdownWatch,
    mut phases: broadcast::Receiver<ExecutionPhase>,
) {
    let handed_over = async {
        loop {
            match phases.recv().await {
                Ok(ExecutionPhase::GracefulUpgradeCloseTimeout) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    };
    let shutting_down = async {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    tokio::select! {
        () = handed_over => {}
        () = shutting_down => {}
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
