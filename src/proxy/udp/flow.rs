//! One flow: a client's datagrams pinned to one backend, through a connected socket of
//! its own (so the backend's answers, and only they, arrive on it), with a task that
//! sends each answer to the client from the listening socket's address.
//!
//! The task reads into a per-thread buffer and sends at once, so an idle flow holds no
//! buffer: its cost is the socket and a small task.
//!
//! Passive health sees UDP as it sees a connection: each answer from the backend is a
//! success, and the backend's host refusing the port (ICMP port unreachable, seen on a
//! read or a send) or being unreachable is a failure, once until the next answer.

use super::flows::{Activity, Clock, LastActive};
use crate::observability::udp_metrics::{DropReason, UdpMetrics};
use crate::upstream::{Attempt, Outcomes, Pool};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

/// The largest datagram read; IPv4 UDP carries at most 65,507 bytes of payload.
pub(super) const MAX_DATAGRAM: usize = 65_535;

thread_local! {
    /// Each worker thread's buffer for answers.
    static ANSWER: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
}

/// What a flow's two directions share.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Last datagram either way.
    pub(super) last_active: LastActive,
    /// Payload bytes sent to the client.
    pub(super) bytes_out: AtomicU64,
    /// The backend's host refused the port (ICMP unreachable) since its last answer.
    pub(super) refused: AtomicBool,
}

/// A client's flow, owned by the flow table.
pub(super) struct Flow {
    /// The socket connected to the backend.
    pub(super) upstream: Arc<UdpSocket>,
    /// Shared with the answer task.
    pub(super) shared: Arc<Shared>,
    /// Payload bytes from the client.
    pub(super) bytes_in: u64,
    /// Its use of the pool: the chosen backend counts as active while the flow lives.
    pub(super) attempt: Attempt,
    /// When it started, on the listener's clock.
    pub(super) started: u64,
    /// A header to send in front of the first datagram (PROXY protocol).
    header: Option<Vec<u8>>,
    answers: AbortHandle,
}

impl Activity for Flow {
    fn last_active(&self) -> u64 {
        self.shared.last_active.get()
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.answers.abort();
    }
}

/// Where a flow's answers go, and what it records.
pub(super) struct Context {
    /// The listening socket (answers are sent from its address).
    pub(super) listener: Arc<UdpSocket>,
    /// The listener's clock.
    pub(super) clock: Clock,
    /// The listener's counters.
    pub(super) metrics: UdpMetrics,
    /// The listener's name, for logs.
    pub(super) name: Arc<str>,
}

impl Flow {
    /// Picks a backend of `pool` for `client` (`key` for `consistent_hash`), connects a
    /// socket to it and starts relaying its answers. `header` goes in front of the
    /// first datagram.
    pub(super) fn open(
        pool: &Arc<Pool>,
        key: &[u8],
        client: SocketAddr,
        header: Option<Vec<u8>>,
        cx: &Context,
    ) -> Result<Flow, DropReason> {
        let mut attempt = pool.attempt();
        let upstream = loop {
            let backend = attempt.next(key).map_err(|_| DropReason::NoBackend)?;
            match connect(backend) {
                Ok(socket) => break socket,
                Err(Failure::Local(e)) => {
                    log::debug!("listener {}: no socket for a new flow: {e}", cx.name);
                    return Err(DropReason::NoSocket);
                }
                Err(Failure::Backend(e)) => {
                    // Counted as the backend's connect failure; not logged per datagram.
                    log::debug!("pool {}: connecting to {backend} failed: {e}", pool.name());
                    attempt
                        .connect_failed()
                        .map_err(|_| DropReason::NoBackend)?;
                }
            }
        };
        let upstream = Arc::new(upstream);
        let shared = Arc::new(Shared::default());
        let now = cx.clock.now();
        shared.last_active.touch(now);
        let outcomes = attempt.outcomes();
        let answers = tokio::spawn(relay_answers(
            upstream.clone(),
            shared.clone(),
            outcomes,
            client,
            Context {
                listener: cx.listener.clone(),
                clock: cx.clock,
                metrics: cx.metrics.clone(),
                name: cx.name.clone(),
            },
        ))
        .abort_handle();
        Ok(Flow {
            upstream,
            shared,
            bytes_in: 0,
            attempt,
            started: now,
            header,
            answers,
        })
    }

    /// Sends `datagram` to the backend. A pending ICMP error from an earlier datagram
    /// is reported by the kernel on this send instead of sending: it is noted and the
    /// datagram sent again.
    pub(super) async fn send(&mut self, datagram: &[u8]) -> Result<(), DropReason> {
        let payload = datagram.len() as u64;
        let with_header = self.header.take().map(|mut h| {
            h.extend_from_slice(datagram);
            h
        });
        let datagram = with_header.as_deref().unwrap_or(datagram);
        for _ in 0..2 {
            let sent = match self.upstream.try_send(datagram) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.upstream.send(datagram).await
                }
                other => other,
            };
            match sent {
                Ok(_) => {
                    self.bytes_in += payload;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if !self.shared.refused.swap(true, Ordering::Relaxed) {
                        self.attempt.failed();
                    }
                }
                Err(e) => {
                    log::debug!("udp flow to {:?}: send failed: {e}", self.attempt.backend());
                    if unreachable(&e) {
                        self.attempt.failed();
                    }
                    return Err(DropReason::SendFailed);
                }
            }
        }
        Err(DropReason::SendFailed)
    }
}

/// Whether a send failed because of the backend's address (not this host's state).
fn unreachable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable
    )
}

/// Why no socket could be connected.
enum Failure {
    /// This host ran out of descriptors or ports.
    Local(io::Error),
    /// The backend's address cannot be reached.
    Backend(io::Error),
}

/// A non-blocking socket on an ephemeral port, connected to `backend`.
fn connect(backend: SocketAddr) -> Result<UdpSocket, Failure> {
    let any: SocketAddr = if backend.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).map_err(Failure::Local)?;
    socket.connect(backend).map_err(Failure::Backend)?;
    socket.set_nonblocking(true).map_err(Failure::Local)?;
    UdpSocket::from_std(socket).map_err(Failure::Local)
}

/// What one read of the backend's socket led to.
enum Step {
    /// An answer was relayed (or dropped); read again.
    Next,
    /// Nothing more to read for now.
    Wait,
    /// The client's side was busy: send this copy, waiting.
    Send(Vec<u8>),
    /// The socket failed.
    Stop(io::Error),
}

/// Relays the backend's answers to `client` until the flow is dropped.
async fn relay_answers(
    upstream: Arc<UdpSocket>,
    shared: Arc<Shared>,
    outcomes: Option<Outcomes>,
    client: SocketAddr,
    cx: Context,
) {
    let refused = || {
        if !shared.refused.swap(true, Ordering::Relaxed) {
            if let Some(o) = &outcomes {
                o.failed();
            }
        }
    };
    loop {
        // The error readiness too: an ICMP error wakes no reader by itself.
        let ready = match upstream.ready(Interest::READABLE | Interest::ERROR).await {
            Ok(ready) => ready,
            Err(e) => {
                log::debug!("listener {}: flow of {client}: {e}", cx.name);
                return;
            }
        };
        if ready.is_error() {
            // Takes the socket's pending error; WouldBlock clears the readiness.
            let _ = upstream.try_io(Interest::ERROR, || {
                if let Ok(Some(e)) = upstream.take_error() {
                    if e.kind() == io::ErrorKind::ConnectionRefused || unreachable(&e) {
                        refused();
                    }
                }
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
        if !ready.is_readable() {
            continue;
        }
        loop {
            let step = ANSWER.with_borrow_mut(|buf| match upstream.try_recv(buf) {
                Ok(n) => {
                    shared.last_active.touch(cx.clock.now());
                    if let Some(o) = &outcomes {
                        o.succeeded();
                    }
                    // Read first: a store on every answer would dirty the cache line.
                    if shared.refused.load(Ordering::Relaxed) {
                        shared.refused.store(false, Ordering::Relaxed);
                    }
                    match cx.listener.try_send_to(&buf[..n], client) {
                        Ok(_) => {
                            shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                            cx.metrics.forwarded_out(n);
                            Step::Next
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            Step::Send(buf[..n].to_vec())
                        }
                        Err(e) => {
                            log::debug!("listener {}: answer to {client} lost: {e}", cx.name);
                            Step::Next
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    refused();
                    Step::Next
                }
                Err(e) => Step::Stop(e),
            });
            match step {
                Step::Next => {}
                Step::Wait => break,
                Step::Send(answer) => {
                    if cx.listener.send_to(&answer, client).await.is_ok() {
                        shared
                            .bytes_out
                            .fetch_add(answer.len() as u64, Ordering::Relaxed);
                        cx.metrics.forwarded_out(answer.len());
                    }
                }
                Step::Stop(e) => {
                    log::debug!("listener {}: flow of {client}: {e}", cx.name);
                    return;
                }
            }
        }
    }
}
