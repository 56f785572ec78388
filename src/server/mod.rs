//! Bootstrap: turns a validated [`Config`] into a running Pingora `Server` — one
//! shared pool (and health-check service) per configured pool, one proxy service per
//! listener — and runs it until a signal ends it.

use crate::config::{Config, ListenerKind, ServerSettings};
use crate::proxy::http::{HttpProxy, RouteTarget};
use crate::proxy::tcp::TcpProxy;
use crate::routing::RouteTable;
use crate::upstream::Pool;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use pingora_core::services::ServiceWithDependents;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

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
        ..ServerConf::default()
    }
}

/// Fails early, with a clear message, when an address is already taken (Pingora
/// would otherwise leave a process with dead listeners).
fn check_binds(config: &Config) -> Result<(), ServerError> {
    for l in &config.listeners {
        for addr in &l.binds {
            if let Err(source) = TcpListener::bind(addr) {
                return Err(ServerError::Bind {
                    listener: l.name.clone(),
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
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config.server, mode));
    server.bootstrap();
    let summary = format!(
        "{} with {} listener(s)",
        config.file.display(),
        config.listeners.len()
    );
    let services = build_services(config, &server.configuration)?;
    server.add_services(services);
    log::info!("tioga: starting {summary}");
    server.run_forever();
}

/// Pools first (each with its health-check service), then one service per listener.
fn build_services(
    config: Config,
    conf: &Arc<ServerConf>,
) -> Result<Vec<Box<dyn ServiceWithDependents>>, ServerError> {
    let mut services: Vec<Box<dyn ServiceWithDependents>> = Vec::new();
    let mut pools = BTreeMap::new();
    for spec in config.pools {
        let name = spec.name.clone();
        let (pool, health) = Pool::build(spec);
        if let Some(h) = health {
            services.push(Box::new(h));
        }
        pools.insert(name, pool);
    }
    for l in config.listeners {
        let name = format!("listener {}", l.name);
        match l.kind {
            ListenerKind::Http { tls, routes } => {
                let table = RouteTable::new(
                    routes
                        .into_iter()
                        .map(|r| {
                            let target = RouteTarget {
                                name: r.name,
                                pool: r.pool.map(|p| pools[&p].clone()),
                                filters: r.filters.into_iter().map(|f| f.filter).collect(),
                            };
                            (r.matcher, target)
                        })
                        .collect(),
                );
                let proxy = HttpProxy {
                    listener: l.name.clone(),
                    tls: tls.is_some(),
                    routes: table,
                };
                let mut service = pingora_proxy::http_proxy_service_with_name(conf, proxy, &name);
                for addr in &l.binds {
                    let addr = addr.to_string();
                    match &tls {
                        None => service.add_tcp(&addr),
                        Some(t) => service
                            .add_tls(&addr, &t.cert.to_string_lossy(), &t.key.to_string_lossy())
                            .map_err(|e| ServerError::Tls {
                                listener: l.name.clone(),
                                reason: e.to_string(),
                            })?,
                    }
                }
                services.push(Box::new(service));
            }
            ListenerKind::Tcp { pool, filters } => {
                let app = TcpProxy {
                    listener: l.name.clone(),
                    pool: pools[&pool].clone(),
                    filters: filters.into_iter().map(|f| f.filter).collect(),
                };
                let mut service = Service::new(name, app);
                for addr in &l.binds {
                    service.add_tcp(&addr.to_string());
                }
                services.push(Box::new(service));
            }
        }
    }
    Ok(services)
}
