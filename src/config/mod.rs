//! Configuration: the YAML file (`file`), its validation into the runtime types
//! below (`validate`), and the errors that name file, key path and line (`error`).
//!
//! The runtime types are the buffer between the stable file format and the rest of
//! Tioga: addresses are `SocketAddr`s, durations `Duration`s, regexes compiled, pool
//! references checked. Nothing past this module re-parses user text.

pub mod error;
pub mod file;
mod source;
pub mod validate;
mod validate_listener;
mod validate_pool;

use crate::routing::Matcher;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Problem};

/// The directory of the default pid file and upgrade socket, one only Tioga's user may
/// enter: `/run/tioga` for root; otherwise `$XDG_RUNTIME_DIR/tioga`, or `/tmp/tioga-UID`
/// when that is unset. The server creates it (mode 0700) and refuses to start when it
/// exists with another owner or mode.
pub fn default_runtime_dir() -> PathBuf {
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
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Process settings.
    pub server: ServerSettings,
    /// The admin endpoint, if any.
    pub admin: Option<SocketAddr>,
    /// The access log, if enabled.
    pub access_log: Option<AccessLogSpec>,
    /// Pools, in name order.
    pub pools: Vec<PoolSpec>,
    /// Listeners, in name order.
    pub listeners: Vec<ListenerSpec>,
}

/// `server:` with defaults applied.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Worker threads per listener.
    pub threads: usize,
    /// Pid file path.
    pub pid_file: String,
    /// Upgrade socket path.
    pub upgrade_sock: String,
    /// How long the old process keeps serving after a hand-over or SIGTERM.
    pub grace_period: Duration,
    /// How long to wait for in-flight work after the grace period.
    pub graceful_shutdown_timeout: Duration,
}

/// Where and how the access log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSpec {
    /// Where lines go.
    pub target: crate::observability::access_log::Target,
    /// How lines look.
    pub format: crate::observability::access_log::Format,
}

/// A named backend set.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// The pool's name.
    pub name: String,
    /// Backends, in file order.
    pub backends: Vec<BackendSpec>,
    /// How a backend is chosen.
    pub balance: Balance,
    /// Active health check, if any.
    pub health_check: Option<HealthCheckSpec>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the backend's next bytes.
    pub read_timeout: Duration,
    /// Extra attempts on another backend when connecting fails.
    pub retries: usize,
}

/// One backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSpec {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Relative weight, >= 1.
    pub weight: usize,
}

/// Balancing algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Fewest active requests/connections relative to weight.
    LeastConn,
    /// Consistent (ketama) hashing on a key.
    ConsistentHash(HashKey),
}

/// What `consistent_hash` (and `rate_limit`) hash on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address.
    ClientIp,
    /// The request URI (path and query).
    Uri,
    /// A request header's value.
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
}

impl std::str::FromStr for HashKey {
    type Err = String;

    /// Parses `client_ip | uri | header:NAME | cookie:NAME | query:NAME`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("unknown key `{text}` (expected client_ip, uri, header:NAME, cookie:NAME or query:NAME)")
        };
        match text.split_once(':') {
            None if text == "client_ip" => Ok(HashKey::ClientIp),
            None if text == "uri" => Ok(HashKey::Uri),
            Some((_, "")) | None => Err(bad()),
            Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
                .map(HashKey::Header)
                .map_err(|_| format!("`{name}` is not a valid header name")),
            Some(("cookie", name)) => Ok(HashKey::Cookie(name.to_string())),
            Some(("query", name)) => Ok(HashKey::Query(name.to_string())),
            Some(_) => Err(bad()),
        }
    }
}

/// An active health check.
#[derive(Debug, Clone)]
pub struct HealthCheckSpec {
    /// What a probe does.
    pub probe: Probe,
    /// Time between probes.
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Consecutive successes to bring a backend back.
    pub rise: usize,
    /// Consecutive failures to take a backend out.
    pub fall: usize,
}

/// The kind of probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect.
    Tcp,
    /// An HTTP GET.
    Http {
        /// Path to request.
        path: String,
        /// Status expected; `None` means any 2xx.
        expect_status: Option<u16>,
    },
}

/// A named entry point.
#[derive(Debug)]
pub struct ListenerSpec {
    /// The listener's name.
    pub name: String,
    /// Addresses to listen on.
    pub binds: Vec<SocketAddr>,
    /// Protocol-specific settings.
    pub kind: ListenerKind,
}

/// Protocol-specific listener settings.
#[derive(Debug)]
pub enum ListenerKind {
    /// An L7 HTTP listener.
    Http {
        /// TLS termination.
        tls: Option<TlsSpec>,
        /// Routes, in order.
        routes: Vec<RouteSpec>,
        /// Whether plain connections send a worker's answers together (`coalesce`).
        coalesce: bool,
    },
    /// An L4 TCP listener.
    Tcp {
        /// The pool it forwards to.
        pool: String,
        /// Connection filters, in order.
        filters: Vec<FilterSpec>,
        /// How long a spliced direction busy-polls before it sleeps (zero: never).
        busy_poll: Duration,
    },
}

/// Certificate and key files for TLS termination.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// One route of an HTTP listener.
#[derive(Debug)]
pub struct RouteSpec {
    /// A name for logs and metrics: `LISTENER[i]`.
    pub name: String,
    /// Its conditions.
    pub matcher: Matcher,
    /// The pool that serves it; `None` for a route whose filters always answer.
    pub pool: Option<String>,
    /// Filters, in order.
    pub filters: Vec<FilterSpec>,
}

/// A filter built from the config, with the name it was configured under.
#[derive(Clone)]
pub struct FilterSpec {
    /// The filter's registered name.
    pub name: String,
    /// The filter.
    pub filter: std::sync::Arc<dyn crate::filter::Filter>,
}

impl std::fmt::Debug for FilterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FilterSpec({})", self.name)
    }
}

impl Config {
    /// Reads and validates `file`, building filters from `filters`, and returns every
    /// problem at once.
    pub fn load(file: &Path, filters: &crate::filter::Registry) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        validate::validate(file, &text, filters)
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolSpec> {
        self.pools.iter().find(|p| p.name == name)
    }
}
