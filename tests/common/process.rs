//! Ports and child processes, for the tests' harness ([`super::tioga`]) and for
//! `examples/pgo_train.rs`, which includes this file with `#[path]` (it cannot use the
//! rest of the harness: that runs the binary Cargo builds for tests, and panics).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Pause between two readiness or exit probes.
pub const POLL: Duration = Duration::from_millis(20);

/// An address on 127.0.0.1 whose port was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
