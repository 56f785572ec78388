//! A demo HTTP backend for `make run` and manual tries:
//!
//! ```text
//! cargo run --example demo_backend -- NAME ADDR      # e.g. -- a 127.0.0.1:9001
//! ```
//!
//! It answers every request with `NAME\n` (and an `x-backend: NAME` header), `GET /health`
//! with 200, and otherwise behaves like the integration tests' backend, whose code it
//! reuses (`tests/common/backend.rs`: `/slow?ms=N`, `/stall`, body hashing, `x-seen-*`
//! echo headers). It runs until Ctrl-C.

#[path = "../tests/common/backend.rs"]
mod backend;

use std::error::Error;
use std::net::SocketAddr;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(addr), None) = (args.next(), args.next(), args.next()) else {
        return Err("usage: demo_backend NAME ADDR   (e.g. demo_backend a 127.0.0.1:9001)".into());
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    let server =
        backend::HttpBackend::bind(&name, addr).map_err(|e| format!("bind {addr}: {e}"))?;
    println!("demo backend {name} listening on {}", server.addr());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(tokio::signal::ctrl_c())?;
    println!("demo backend {name}: stopping");
    server.stop();
    Ok(())
}
