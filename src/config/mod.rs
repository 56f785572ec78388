//! Configuration: the YAML file (`file`), its validation into the runtime types
//! below (`validate`), and the errors that name file, key path and line (`error`).
//!
//! The runtime types are the buffer between the stable file format and the rest of
//! Tioga: addresses are `SocketAddr`s, durations `Duration`s, regexes compiled, pool
//! references checked. Nothing past this module re-parses user text.

pub(crate) mod diff;
mod discovery;
pub mod error;
pub(crate) mod file;
pub(crate) mod guard;
mod problems;
mod resilience;
mod shape;
mod source;
pub(crate) mod tests_key;
pub(crate) mod validate;
mod validate_head;
mod validate_listener;
mod validate_pool;
mod validate_tcp_routes;
mod validate_tls;
mod validate_udp;
mod values;

use crate::routing::Matcher;
pub(crate) use crate::upstream::{BackendSpec, HealthCheckSpec, PoolSpec};
pub(crate) use crate::vocab::{
    Balance, CertFiles, HashKey, Probe, ProxyVersion, TlsSpec, TlsVersion,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Problem};

/// The directory of the default pid file and upgrade socket, one only Tioga's user may
/// enter: `/run/tioga` for root; otherwise `$XDG_RUNTIME_DIR/tioga`, or `/tmp/tioga-UID`
/// when that is unset. The server creates it (mode 0700) and refuses to start when it
/// exists with another owner or mode.
pub(crate) fn default_runtime_dir() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/tioga");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("tioga"),
        _ => PathBuf::from(format!("/tmp/tioga-{}", uid.as_raw())),
    }
}

/// A validated configuration.
#[derive(Debug)]
pub(crate) struct Config {
    /// The file it was read from.
    pub(crate) file: PathBuf,
    /// Process settings.
    pub(crate) server: ServerSettings,
    /// The admin endpoint, if any.
    pub(crate) admin: Option<SocketAddr>,
    /// The token `POST`s to the admin endpoint must carry (`admin.token_file`'s text).
    pub(crate) admin_token: Option<String>,
    /// Watches each reload in place and rolls it back when it hurts (`reload_guard`).
    pub(crate) reload_guard: Option<guard::ReloadGuard>,
    /// The access log, if enabled.
    pub(crate) access_log: Option<AccessLogSpec>,
    /// Pools, in name order.
    pub(crate) pools: Vec<PoolSpec>,
    /// Listeners, in name order.
    pub(crate) listeners: Vec<ListenerSpec>,
    /// The operator's routing expectations (`tests:`), run before serving.
    pub(crate) tests: Vec<tests_key::ConfigTest>,
}

/// `server:` with defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    /// Worker threads per listener.
    pub(crate) threads: usize,
    /// Pid file path.
    pub(crate) pid_file: String,
    /// Upgrade socket path.
    pub(crate) upgrade_sock: String,
    /// How long the old process keeps serving after a hand-over or SIGTERM.
    pub(crate) grace_period: Duration,
    /// How long to wait for in-flight work after the grace period.
    pub(crate) graceful_shutdown_timeout: Duration,
}

/// Where and how the access log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessLogSpec {
    /// Where lines go.
    pub(crate) target: crate::observability::access_log::Target,
    /// How lines look.
    pub(crate) format: crate::observability::access_log::Format,
}

/// A named entry point.
#[derive(Debug)]
pub(crate) struct ListenerSpec {
    /// The listener's name.
    pub(crate) name: String,
    /// Addresses to listen on.
    pub(crate) binds: Vec<SocketAddr>,
    /// The most connections open at once (`max_connections`); `None`: no limit.
    pub(crate) max_connections: Option<usize>,
    /// Protocol-specific settings.
    pub(crate) kind: ListenerKind,
    /// Senders whose PROXY header is believed (`proxy_protocol.trusted`); `None`: no
    /// header is read.
    pub(crate) proxy_protocol: Option<Vec<ipnet::IpNet>>,
}

/// Protocol-specific listener settings.
#[derive(Debug)]
pub(crate) enum ListenerKind {
    /// An L7 HTTP listener.
    Http {
        /// TLS termination.
        tls: Option<TlsSpec>,
        /// Routes, in order.
        routes: Vec<RouteSpec>,
        /// What it accepts of a request head.
        head: crate::vocab::HeadRules,
        /// Whether plain connections send a worker's answers together (`coalesce`).
        coalesce: bool,
        /// HTTP/2: offered by ALPN with TLS, h2c prior knowledge without (`http2`).
        http2: bool,
        /// The path Tioga answers itself for health checks (`healthz`).
        healthz: Option<String>,
    },
    /// An L4 TCP listener.
    Tcp {
        /// Its routes, in order; a listener with `pool` has one that matches all.
        routes: Vec<TcpRouteSpec>,
        /// How long a route that needs the server name waits for the ClientHello.
        peek_timeout: Duration,
        /// Connection filters, in order.
        filters: Vec<FilterSpec>,
        /// How long a spliced direction busy-polls before it sleeps (zero: never).
        busy_poll: Duration,
    },
    /// An L4 UDP listener.
    Udp(UdpSpec),
}

/// A UDP listener's settings.
#[derive(Debug)]
pub(crate) struct UdpSpec {
    /// The pool it forwards to.
    pub(crate) pool: String,
    /// Filters run when a flow starts, in order.
    pub(crate) filters: Vec<FilterSpec>,
    /// How long a flow is kept without a datagram either way (`session_timeout`).
    pub(crate) session_timeout: Duration,
    /// The most flows at once (`max_flows`).
    pub(crate) max_flows: usize,
}

/// One route of an HTTP listener.
#[derive(Debug)]
pub(crate) struct RouteSpec {
    /// A name for logs and metrics: `LISTENER[i]`.
    pub(crate) name: String,
    /// Its conditions.
    pub(crate) matcher: Matcher,
    /// The pool that serves it; `None` for a route whose filters always answer.
    pub(crate) pool: Option<String>,
    /// Filters, in order.
    pub(crate) filters: Vec<FilterSpec>,
}

/// One route of a TCP listener.
#[derive(Debug)]
pub(crate) struct TcpRouteSpec {
    /// Its conditions.
    pub(crate) matcher: crate::routing::tcp::TcpMatcher,
    /// The pool that serves it.
    pub(crate) pool: String,
}

/// Whether a TCP listener's routes are named `LISTENER[i]` in logs and metrics: it has
/// `routes` of its own, not just `pool` (one route matching all).
pub(crate) fn tcp_routes_named(routes: &[TcpRouteSpec]) -> bool {
    routes.len() > 1 || routes.iter().any(|r| !r.matcher.describe().is_empty())
}

/// A filter built from the config, with the name it was configured under.
#[derive(Clone)]
pub(crate) struct FilterSpec {
    /// The filter's registered name.
    pub(crate) name: String,
    /// The filter.
    pub(crate) filter: std::sync::Arc<dyn crate::filter::Filter>,
}

impl std::fmt::Debug for FilterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FilterSpec({})", self.name)
    }
}

impl Config {
    /// Reads and validates `file`, building filters from `filters`, and returns every
    /// problem at once.
    pub(crate) fn load(
        file: &Path,
        filters: &crate::filter::Registry,
    ) -> Result<Config, ConfigError> {
        Self::read(file, filters).map(|(_, config)| config)
    }

    /// Validates `text` as the contents of `file` (a config kept in memory: a
    /// rollback's).
    pub(crate) fn parse(
        file: &Path,
        text: &str,
        filters: &crate::filter::Registry,
    ) -> Result<Config, ConfigError> {
        validate::validate(file, text, filters)
    }

    /// As [`Config::load`], with the text the config was read from.
    pub(crate) fn read(
        file: &Path,
        filters: &crate::filter::Registry,
    ) -> Result<(String, Config), ConfigError> {
        use std::io::Read;
        let read_error = |source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        };
        // Read one byte past the limit: a larger file is refused without it all in
        // memory.
        let mut bytes = Vec::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(shape::MAX_SIZE as u64 + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() > shape::MAX_SIZE {
            return Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                problems: vec![Problem {
                    path: String::new(),
                    line: None,
                    message: format!(
                        "the file is larger than {} bytes, the most a config may be",
                        shape::MAX_SIZE
                    ),
                }],
            });
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let config = validate::validate(file, &text, filters)?;
        Ok((text, config))
    }

    /// The pool named `name`.
    #[cfg(test)]
    pub(crate) fn pool(&self, name: &str) -> Option<&PoolSpec> {
        self.pools.iter().find(|p| p.name == name)
    }
}
