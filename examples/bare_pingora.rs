//! The benchmark's baseline: the smallest useful Pingora HTTP load balancer, in the
//! spirit of Pingora's own `examples/load_balancer.rs` — round robin over static
//! backends, no health checks, no routing, no metrics, no logging. `bench/run.sh` runs
//! it beside Tioga to show what Tioga costs on top of bare Pingora.
//!
//! ```sh
//! cargo run --release --example bare_pingora -- LISTEN BACKEND [BACKEND ...]
//! cargo run --release --example bare_pingora -- 127.0.0.1:6188 127.0.0.1:9001 127.0.0.1:9002
//! ```
//!
//! It runs one worker thread (`BARE_PINGORA_THREADS` overrides). Like Tioga (and like
//! the HAProxy and nginx configs of the benchmark), it adds `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Host` to the request sent to the backend, so
//! every proxy in the comparison does the same header work.

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_http::RequestHeader;
use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};
use std::process::ExitCode;
use std::sync::Arc;

/// The proxy: a round-robin balancer over the backends.
struct Bare(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Round robin ignores the key; without health checks every backend is eligible.
        let backend = self.0.select(b"", 256).ok_or_else(|| {
            pingora_core::Error::explain(pingora_core::ErrorType::HTTPStatus(503), "no backend")
        })?;
        // Plain HTTP to the backend; the connection goes back to Pingora's pool after use.
        Ok(Box::new(HttpPeer::new(backend, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let xff = match upstream_request.headers.get("x-forwarded-for") {
            Some(prev) => format!("{}, {client}", String::from_utf8_lossy(prev.as_bytes())),
            None => client,
        };
        let host = session
            .req_header()
            .headers
            .get("host")
            .map(|h| h.as_bytes().to_vec())
            .unwrap_or_default();
        upstream_request.insert_header("x-forwarded-for", xff)?;
        upstream_request.insert_header("x-forwarded-proto", "http")?;
        upstream_request.insert_header("x-forwarded-host", host)?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: bare_pingora LISTEN BACKEND [BACKEND ...]");
        return ExitCode::from(2);
    }
    let (listen, backends) = (&args[0], &args[1..]);
    let threads = std::env::var("BARE_PINGORA_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);

    let upstreams =
        match LoadBalancer::<RoundRobin>::try_from_iter(backends.iter().map(String::as_str)) {
            Ok(lb) => Arc::new(lb),
            Err(e) => {
                eprintln!("bare_pingora: bad backend list: {e}");
                return ExitCode::from(2);
            }
        };

    // Keep Pingora's pid file and upgrade socket out of the shared /tmp defaults, so
    // several instances (and other Pingora programs) can run side by side.
    let tmp = std::env::temp_dir();
    let tag = listen.replace([':', '[', ']'], "_");
    let conf = ServerConf {
        threads,
        pid_file: tmp
            .join(format!("bare_pingora{tag}.pid"))
            .display()
            .to_string(),
        upgrade_sock: tmp
            .join(format!("bare_pingora{tag}.sock"))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let mut service = pingora_proxy::http_proxy_service(&server.configuration, Bare(upstreams));
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever();
}
