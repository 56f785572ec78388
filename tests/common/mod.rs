//! Shared harness of Tioga's integration tests: real backends ([`backend`]), a blocking
//! HTTP/1.1 client ([`client`]), a handle that runs the `tioga` binary ([`tioga`]) and
//! [`wait_until`] for polling with a deadline instead of sleeping.
//!
//! Each file in `tests/` is its own crate and uses a subset of this, hence the
//! `allow`s. A typical test:
//!
//! ```ignore
//! mod common;
//! use common::*;
//!
//! #[test]
//! fn routes_to_the_pool() {
//!     let a = spawn_http_backend("a");
//!     let listen = free_addr();
//!     let _tioga = Tioga::start(&format!("...{}...{listen}...", a.addr()), &[listen]);
//!     let resp = Request::get("/").send(listen).unwrap();
//!     assert_eq!(resp.header("x-backend"), Some("a"));
//! }
//! ```
#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod client;
pub mod load;
pub mod peer;
pub mod pki;
pub mod process;
pub mod redis;
pub mod tioga;
pub mod udp;

use std::time::{Duration, Instant};

pub use backend::{
    fnv1a64_hex, spawn_http_backend, spawn_tcp_backend, Fnv, HttpBackend, TcpBackend,
};
pub use client::{get, Conn, Request, Response};
pub use peer::{connect_from, PeerProcess};
pub use tioga::{check_config, free_addr, free_port, listening, wait_child, Tioga, CONFIG_FILE};

/// Calls `f` until it returns true, pausing briefly between calls (5 ms growing to
/// 50 ms). Panics with `what` if `deadline` passes first.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if f() {
            return;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
