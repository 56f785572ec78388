//! Signals with the contract's meaning, plus one safety rule Pingora lacks: a SIGQUIT
//! (hand the sockets to a new process, then drain) is only acted on when a new
//! process is actually waiting for the sockets on `upgrade_sock`. Otherwise the old
//! process says so in its log and keeps serving, instead of draining to nothing.
//!
//! "Waiting" is read from `/proc/net/unix` (a listening socket bound to the path), not
//! by connecting to it: a probe connection would be taken by the new process as the
//! hand-over itself.

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// How long a SIGQUIT waits for a new process to start listening on `upgrade_sock`
/// (the operator may send it just before starting `tioga -u`).
const SUCCESSOR_WAIT: Duration = Duration::from_secs(5);

/// SIGQUIT = upgrade (when a successor waits), SIGTERM = graceful, SIGINT = fast.
pub(super) struct Signals {
    /// The upgrade socket's path.
    pub upgrade_sock: String,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    if wait_for_successor(&self.upgrade_sock).await {
                        log::info!("SIGQUIT: a new process waits on {}; handing over the listening sockets", self.upgrade_sock);
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    log::error!(
                        "SIGQUIT ignored: no new process is waiting on {} (start `tioga -c FILE -u` first, then send SIGQUIT); still serving",
                        self.upgrade_sock
                    );
                }
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
    }
}

/// Polls for a process listening on `path`, up to [`SUCCESSOR_WAIT`].
async fn wait_for_successor(path: &str) -> bool {
    let deadline = Instant::now() + SUCCESSOR_WAIT;
    loop {
        if is_listening(path) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a Unix socket bound to `path` is listening. Falls back to "the socket file
/// exists" where `/proc/net/unix` cannot be read.
pub(crate) fn is_listening(path: &str) -> bool {
    let full =
        std::fs::canonicalize(Path::new(path)).unwrap_or_else(|_| Path::new(path).to_path_buf());
    match std::fs::read_to_string("/proc/net/unix") {
        Ok(table) => listening_in(&table, &full.to_string_lossy()) || listening_in(&table, path),
        Err(_) => {
            use std::os::unix::fs::FileTypeExt;
            std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
        }
    }
}

/// Whether `/proc/net/unix` content lists a listening socket (flag `__SO_ACCEPTCON`,
/// 0x10000) bound to `path`.
fn listening_in(table: &str, path: &str) -> bool {
    table.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.len() >= 8
            && cols[7] == path
            && u32::from_str_radix(cols[3], 16).is_ok_and(|flags| flags & 0x10000 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_from_proc_net_unix() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 1234 /tmp/t.sock\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 1235 /tmp/c.sock\n";
        assert!(listening_in(table, "/tmp/t.sock"));
        assert!(
            !listening_in(table, "/tmp/c.sock"),
            "connected, not listening"
        );
        assert!(!listening_in(table, "/tmp/none.sock"));
    }

    #[test]
    fn sees_a_real_listener() {
        let dir = std::env::temp_dir().join(format!("tioga-sig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("up.sock");
        let _ = std::fs::remove_file(&path);
        assert!(!is_listening(path.to_str().unwrap()));
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(is_listening(path.to_str().unwrap()));
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
