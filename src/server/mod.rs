//! Bootstrap: turns a validated [`Config`] into a running Pingora `Server` — one
//! shared pool (and health-check service) per configured pool, one proxy service per
//! listener — and runs it until a signal ends it.

pub(crate) mod config_tests;
pub(crate) mod explain;
mod guard;
mod handover;
mod http2;
mod live;
mod runtime_dir;
mod services;
mod signals;
mod start;

use crate::config::{Config, ServerSettings};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// How the process was asked to start.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunMode {
    /// Detach and run in the background.
    pub(crate) daemon: bool,
    /// Take the listening sockets from a running instance.
    pub(crate) upgrade: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ServerError {
    /// A listening address is taken by another process.
    #[error("listener {listener}: cannot listen on {addr}: {source}")]
    Bind {
        /// The listener's name.
        listener: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("access_log: {0}")]
    AccessLog(String),
    /// The listening sockets could not be taken over, or the private directories
    /// for the hand-over could not be made.
    #[error("upgrade: {0}")]
    Upgrade(String),
    /// TLS could not be set up for a listener.
    #[error("listener {listener}: TLS setup failed: {reason}")]
    Tls {
        /// The listener's name.
        listener: String,
        /// Why.
        reason: String,
    },
}

/// Idle upstream connections kept for reuse, all pools together. Pingora's 128 is less
/// than one HTTP/2 client load asks for (50 clients × 10 streams are 500 requests in
/// flight, each on its own HTTP/1.1 connection to a backend): past it, connections were
/// closed after each answer and opened again, which cost a connect per request.
const UPSTREAM_KEEPALIVE_POOL: usize = 2048;

/// How long `-u` waits for the running instance to send its sockets.
const RECEIVE_WAIT: Duration = Duration::from_secs(5);

/// Pingora's process settings from ours; Pingora's `upgrade_sock` is the private
/// `relay` (see `handover`).
fn server_conf(s: &ServerSettings, mode: RunMode, relay: &str) -> ServerConf {
    ServerConf {
        threads: s.threads,
        pid_file: s.pid_file.clone(),
        upgrade_sock: relay.to_string(),
        grace_period_seconds: Some(s.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(
            s.graceful_shutdown_timeout.as_secs_f64().ceil() as u64
        ),
        daemon: mode.daemon,
        // One thread: a current-thread runtime, without the multi-thread scheduler's
        // bookkeeping. More threads: work stealing, so connections accepted by one
        // thread spread over all of them.
        work_stealing: s.threads > 1,
        upstream_keepalive_pool_size: UPSTREAM_KEEPALIVE_POOL,
        ..ServerConf::default()
    }
}

/// Fails early, with a clear message, when an address is already taken (Pingora
/// would otherwise leave a process with dead listeners).
fn check_binds(config: &Config) -> Result<(), ServerError> {
    let admin = config.admin.iter().map(|a| ("admin", a, false));
    let listeners = config.listeners.iter().flat_map(|l| {
        let udp = matches!(l.kind, crate::config::ListenerKind::Udp(_));
        l.binds.iter().map(move |a| (l.name.as_str(), a, udp))
    });
    for (name, addr, udp) in admin.chain(listeners) {
        {
            let bound = if udp {
                std::net::UdpSocket::bind(addr).map(drop)
            } else {
                TcpListener::bind(addr).map(drop)
            };
            if let Err(source) = bound {
                return Err(ServerError::Bind {
                    listener: name.to_string(),
                    addr: *addr,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Builds every service of `config` (read from `text`; `filters` builds the filters of
/// the configs reloads read) and runs the server until it is told to stop.
pub(crate) fn run(
    config: Config,
    text: String,
    filters: std::sync::Arc<crate::filter::Registry>,
    mode: RunMode,
) -> Result<(), ServerError> {
    if !mode.upgrade {
        check_binds(&config)?;
    }
    let opt = Opt {
        upgrade: mode.upgrade,
        daemon: mode.daemon,
        ..Opt::default()
    };
    let upgrade_sock = config.server.upgrade_sock.clone();
    runtime_dir::prepare(&config.server).map_err(ServerError::Upgrade)?;
    let relay = handover::Relay::create()
        .map_err(|e| ServerError::Upgrade(format!("cannot make a private directory: {e}")))?;
    let received = if mode.upgrade {
        log::warn!(
            "upgrade: waiting about 5 s for the running instance to hand over its listening sockets on {upgrade_sock} \
             (send it SIGQUIT); if none does, this process exits with an error"
        );
        let bundle = handover::receive(&upgrade_sock, RECEIVE_WAIT).map_err(|e| {
            log::error!("upgrade: {e}");
            ServerError::Upgrade(e.to_string())
        })?;
        Some(bundle)
    } else {
        None
    };
    let conf = server_conf(&config.server, mode, relay.path());
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    let delivery = received.map(|bundle| handover::deliver(bundle, &relay));
    server.bootstrap();
    if let Some(delivery) = delivery {
        match delivery.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServerError::Upgrade(format!("passing the sockets on: {e}"))),
            Err(_) => return Err(ServerError::Upgrade("passing the sockets on failed".into())),
        }
    }
    let summary = format!(
        "{} with {} listener(s)",
        config.file.display(),
        config.listeners.len()
    );
    let phases = server.watch_execution_phase();
    let (services, live) = start::build(config, text, filters, &server.configuration, phases)?;
    server.add_services(services);
    log::info!("tioga: starting {summary}");
    server.run(RunArgs {
        shutdown_signal: Box::new(signals::Signals {
            live: live.clone(),
            upgrade_sock,
            relay: relay.path().to_string(),
        }),
    });
    relay.remove();
    // The last requests' lines may still wait for the writer thread.
    live.flush_access_log();
    std::process::exit(0);
}
