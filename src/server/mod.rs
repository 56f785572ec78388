//! Bootstrap: turns a validated [`Config`] into a running Pingora `Server` — one
//! shared pool (and health-check service) per configured pool, one proxy service per
//! listener — and runs it until a signal ends it.

mod services;
mod signals;

use crate::config::{Config, ServerSettings};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server};
use std::net::{SocketAddr, TcpListener};

/// How the process was asked to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunMode {
    /// Detach and run in the background.
    pub daemon: bool,
    /// Take the listening sockets from a running instance.
    pub upgrade: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
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
    /// TLS could not be set up for a listener.
    #[error("listener {listener}: TLS setup failed: {reason}")]
    Tls {
        /// The listener's name.
        listener: String,
        /// Why.
        reason: String,
    },
}

/// Pingora's process settings from ours.
fn server_conf(s: &ServerSettings, mode: RunMode) -> ServerConf {
    ServerConf {
        threads: s.threads,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        grace_period_seconds: Some(s.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(
            s.graceful_shutdown_timeout.as_secs_f64().ceil() as u64
        ),
        daemon: mode.daemon,
        // One thread: a current-thread runtime, without the multi-thread scheduler's
        // bookkeeping (measured ~9% less CPU per request). More threads: work stealing,
        // so connections accepted by one thread spread over all of them.
        work_stealing: s.threads > 1,
        ..ServerConf::default()
    }
}

/// Fails early, with a clear message, when an address is already taken (Pingora
/// would otherwise leave a process with dead listeners).
fn check_binds(config: &Config) -> Result<(), ServerError> {
    let admin = config.admin.iter().map(|a| ("admin", a));
    let listeners = config
        .listeners
        .iter()
        .flat_map(|l| l.binds.iter().map(|a| (l.name.as_str(), a)));
    for (name, addr) in admin.chain(listeners) {
        {
            if let Err(source) = TcpListener::bind(addr) {
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

/// Builds every service of `config` and runs the server until it is told to stop.
pub fn run(config: Config, mode: RunMode) -> Result<(), ServerError> {
    if !mode.upgrade {
        check_binds(&config)?;
    }
    let opt = Opt {
        upgrade: mode.upgrade,
        daemon: mode.daemon,
        ..Opt::default()
    };
    let upgrade_sock = config.server.upgrade_sock.clone();
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config.server, mode));
    if mode.upgrade {
        log::warn!(
            "upgrade: waiting about 5 s for the running instance to hand over its listening sockets on {upgrade_sock} \
             (send it SIGQUIT); if none does, this process exits with an error"
        );
    }
    server.bootstrap();
    let summary = format!(
        "{} with {} listener(s)",
        config.file.display(),
        config.listeners.len()
    );
    let (services, access_log) = services::build(config, &server.configuration)?;
    server.add_services(services);
    log::info!("tioga: starting {summary}");
    server.run(RunArgs {
        shutdown_signal: Box::new(signals::Signals { upgrade_sock }),
    });
    // The last requests' lines may still wait for the writer thread.
    if let Some(log) = access_log {
        log.flush();
    }
    std::process::exit(0);
}
