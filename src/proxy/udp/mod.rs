//! UDP listeners (`protocol: udp`), which Pingora lacks: a service of our own on
//! Pingora's runtime that balances datagrams per flow over the same pools, health state
//! and filters as the HTTP and TCP listeners.
//!
//! A flow is a client's address and port. Its first datagram picks a backend through
//! the pool's [`Attempt`](crate::upstream::Attempt) (every balance mode;
//! `consistent_hash` hashes the client's IP) and opens a socket connected to it; later
//! datagrams follow, and the backend's answers go back from the listener's address. A
//! flow is forgotten after `session_timeout` without a datagram either way.
//!
//! - `socket.rs`: binding, or taking the socket over from the previous process.
//! - `listener.rs`: the receive task of a socket, which keeps flows in order.
//! - `flows.rs`: the bounded flow table and its expiry.
//! - `flow.rs`: one flow, its backend socket and its answer task.
//! - `proxy_header.rs`: the PROXY v2 header a flow may start with.

mod flow;
mod flows;
mod listener;
mod proxy_header;
mod socket;

use crate::filter::FilterChain;
use crate::observability::udp_metrics::UdpMetrics;
use crate::observability::AccessLog;
use crate::proxy::live::Slot;
use crate::upstream::Pool;
use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// What every socket of one UDP listener shares.
pub(crate) struct UdpProxy {
    /// The listener's name.
    pub(crate) name: Arc<str>,
    /// The pool it forwards to.
    pub(crate) pool: Arc<Pool>,
    /// Filters run when a flow starts.
    pub(crate) filters: FilterChain,
    /// `session_timeout`, `max_flows`.
    pub(crate) spec: UdpSettings,
    /// The listener's counters.
    pub(crate) metrics: UdpMetrics,
    /// The access log, if enabled.
    pub(crate) access_log: Option<Arc<AccessLog>>,
    /// How long flows keep answering once the process starts shutting down.
    pub(crate) grace_period: Duration,
}

/// The flow settings of a UDP listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UdpSettings {
    /// How long a flow is kept without a datagram either way.
    pub(crate) session_timeout: Duration,
    /// The most flows per listening socket.
    pub(crate) max_flows: usize,
    /// Start each flow with a PROXY protocol v2 header (`proxy_header.rs`).
    pub(crate) proxy_protocol: bool,
}

/// A UDP listener as a Pingora service: one receive task per bound address.
pub(crate) struct UdpService {
    name: String,
    binds: Vec<SocketAddr>,
    proxy: Slot<UdpProxy>,
    phases: broadcast::Receiver<ExecutionPhase>,
}

impl UdpService {
    /// The service of the app in `proxy` on `binds`; `phases` tells it when the sockets
    /// have been handed to a new process.
    pub(crate) fn new(
        proxy: Slot<UdpProxy>,
        binds: Vec<SocketAddr>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Self {
        UdpService {
            name: format!("listener {}", proxy.load().name),
            binds,
            proxy,
            phases,
        }
    }
}

#[async_trait]
impl Service for UdpService {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        for addr in &self.binds {
            match socket::open(*addr, fds.as_ref()) {
                Ok(socket) => {
                    let receiver = listener::Receiver::new(self.proxy.clone(), socket);
                    tasks.spawn(receiver.run(shutdown.clone(), self.phases.resubscribe()));
                }
                Err(e) => log::error!("{}: cannot listen on udp {addr}: {e}", self.name),
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.binds.iter().map(|a| socket::key(*a)).collect())
    }
}

#[cfg(test)]
mod tests;
