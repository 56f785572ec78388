//! Signals with the contract's meaning, plus two safety rules Pingora lacks. SIGHUP
//! reloads the config in place (`live.rs`) and the process keeps running. A SIGQUIT
//! (hand the sockets to a new process, then drain) is only acted on when a new process
//! is actually waiting for the sockets on `upgrade_sock`, and only when that process
//! runs as Tioga's own user (see `handover`). Otherwise the old process says so in its
//! log and keeps serving, instead of draining to nothing or to a stranger.

use super::handover::{self, HandoverError};
use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// How long a SIGQUIT waits for a new process to start listening on `upgrade_sock`
/// (the operator may send it just before starting `tioga -u`).
const SUCCESSOR_WAIT: Duration = Duration::from_secs(5);

/// SIGQUIT = upgrade (when a successor of our uid waits), SIGTERM = graceful,
/// SIGINT = fast, SIGHUP = reload in place.
pub(super) struct Signals {
    /// What SIGHUP reloads.
    pub(crate) live: std::sync::Arc<super::live::Live>,
    /// The operator's upgrade socket.
    pub(crate) upgrade_sock: String,
    /// Where Pingora sends the sockets (its `upgrade_sock`), for Tioga to pass on.
    pub(crate) relay: String,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            log::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    if self.prepare_handover().await {
                        return ShutdownSignal::GracefulUpgrade;
                    }
                }
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = hup.recv() => {
                    self.live.reload_async("SIGHUP").await;
                }
            }
        }
    }
}

impl Signals {
    /// Connects to the successor and checks it; on success, starts passing on what
    /// Pingora will send to the relay. False (logged) when there is nobody to hand
    /// over to.
    async fn prepare_handover(&self) -> bool {
        let path = self.upgrade_sock.clone();
        let connected =
            tokio::task::spawn_blocking(move || handover::connect_successor(&path, SUCCESSOR_WAIT))
                .await;
        let successor = match connected {
            Ok(Ok(successor)) => successor,
            Ok(Err(HandoverError::Nobody(..))) => {
                log::error!(
                    "SIGQUIT ignored: no new process is waiting on {} (start `tioga -c FILE -u` first, then send SIGQUIT); still serving",
                    self.upgrade_sock
                );
                return false;
            }
            Ok(Err(e)) => {
                log::error!("SIGQUIT ignored: {e}; still serving");
                return false;
            }
            Err(e) => {
                log::error!("SIGQUIT ignored: {e}; still serving");
                return false;
            }
        };
        log::info!(
            "SIGQUIT: {} waits on {}; handing over the listening sockets",
            successor.peer,
            self.upgrade_sock
        );
        match successor.forward_from(&self.relay) {
            Ok(_) => true,
            Err(e) => {
                log::error!("SIGQUIT ignored: {e}; still serving");
                false
            }
        }
    }
}
