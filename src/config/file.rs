//! The YAML file format, as serde types.
//!
//! These types mirror `shared/contract/config.md` key for key and reject unknown keys.
//! They keep addresses, durations and regexes as the strings the user wrote: turning
//! them into runtime types is [`super::validate`]'s job, so that every problem in a
//! file can be reported at once, each with its key path.

use crate::routing::MatchSpec;
pub(crate) use crate::vocab::{describe, OneOrMany};
use serde::Deserialize;

/// `server:` — process settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// Worker threads per listener.
    pub(crate) threads: Option<usize>,
    /// Where the pid file is written.
    pub(crate) pid_file: Option<String>,
    /// The Unix socket over which listening sockets are handed to a new process.
    pub(crate) upgrade_sock: Option<String>,
    /// How long the old process keeps serving after a hand-over or SIGTERM.
    pub(crate) grace_period: Option<String>,
    /// How long to wait for in-flight work after the grace period.
    pub(crate) graceful_shutdown_timeout: Option<String>,
}

/// `admin:` — the operator's endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminSection {
    /// Address of the admin HTTP endpoint.
    pub(crate) bind: String,
    /// A file holding the token every POST must carry (`Authorization: Bearer …`).
    pub(crate) token_file: Option<String>,
}

/// `access_log:` — one line per HTTP request and TCP connection (Tioga's extension).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessLogSection {
    /// `stdout` (default), `stderr` or a file path.
    pub(crate) target: Option<String>,
    /// `json` (default) or `combined`.
    pub(crate) format: Option<String>,
}

/// One entry of `pools.NAME.backends`: either `"host:port"` or a map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum BackendEntry {
    /// `- 127.0.0.1:9001`
    Address(String),
    /// `- {address: 127.0.0.1:9002, weight: 3}`
    Detailed(DetailedBackend),
}

/// The map form of a backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetailedBackend {
    /// `host:port`.
    pub(crate) address: String,
    /// Relative weight, at least 1.
    #[serde(default = "default_weight")]
    pub(crate) weight: i64,
}

fn default_weight() -> i64 {
    1
}

/// `pools.NAME` — a named backend set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PoolSection {
    /// The backends; at least one, unless `discovery` finds them.
    #[serde(default)]
    pub(crate) backends: Vec<BackendEntry>,
    /// Balancing algorithm name.
    pub(crate) balance: Option<String>,
    /// Key for `consistent_hash`.
    pub(crate) hash_key: Option<String>,
    /// Active health check.
    pub(crate) health_check: Option<HealthCheckSection>,
    /// Connect timeout, default 1s.
    pub(crate) connect_timeout: Option<String>,
    /// Longest wait for the backend's next bytes, default 60s.
    pub(crate) read_timeout: Option<String>,
    /// Extra attempts on another backend when connecting fails, default 1.
    pub(crate) retries: Option<usize>,
    /// `http1` (default), `h2` (TLS, ALPN) or `h2c`.
    pub(crate) protocol: Option<String>,
    /// TLS to the backends.
    pub(crate) tls: Option<PoolTlsSection>,
    /// `v1` or `v2`: a PROXY header on each new backend connection.
    pub(crate) proxy_protocol: Option<String>,
    /// Passive health (second round; see `resilience.rs` for these keys).
    pub(crate) outlier: Option<super::resilience::OutlierSection>,
    /// Fail open below this percentage of healthy backends.
    pub(crate) panic_threshold: Option<crate::vocab::Text>,
    /// Ramp-up time of a new or recovered backend.
    pub(crate) slow_start: Option<String>,
    /// Failures retried on another backend.
    pub(crate) retry_on: Option<Vec<crate::vocab::Text>>,
    /// Retries allowed relative to requests.
    pub(crate) retry_budget: Option<super::resilience::BudgetSection>,
    /// Requests or connections in flight per backend.
    pub(crate) max_conns: Option<usize>,
    /// Where requests wait beyond `max_conns`.
    pub(crate) queue: Option<super::resilience::QueueSection>,
    /// Sticky sessions (HTTP).
    pub(crate) sticky: Option<super::resilience::StickySection>,
    /// DNS discovery of the backends, instead of `backends`.
    pub(crate) discovery: Option<super::discovery::DiscoverySection>,
}

/// `pools.NAME.health_check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheckSection {
    /// `tcp` or `http`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Time between checks, default 1s.
    pub(crate) interval: Option<String>,
    /// Time one check may take, default 1s.
    pub(crate) timeout: Option<String>,
    /// Consecutive successes before a down backend is used again.
    pub(crate) rise: Option<usize>,
    /// Consecutive failures before an up backend is taken out.
    pub(crate) fall: Option<usize>,
    /// HTTP path to request (http only).
    pub(crate) path: Option<String>,
    /// Expected HTTP status (http only); default any 2xx.
    pub(crate) expect_status: Option<u16>,
    /// The datagram to send (udp only).
    pub(crate) send: Option<String>,
    /// What the answer must contain (udp only).
    pub(crate) expect: Option<String>,
}

/// `listeners.NAME` — an entry point. Routes are kept as raw YAML values so that each
/// route is deserialized (and its errors reported) on its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerSection {
    /// `http`, `tcp` or `udp`.
    pub(crate) protocol: String,
    /// Address or addresses to listen on.
    pub(crate) bind: OneOrMany,
    /// TLS termination (http only).
    pub(crate) tls: Option<TlsSection>,
    /// Routes (http only).
    pub(crate) routes: Option<Vec<serde_yaml::Value>>,
    /// Pool (tcp only).
    pub(crate) pool: Option<String>,
    /// Connection filters (tcp only); each a one-key map.
    pub(crate) filters: Option<Vec<serde_yaml::Value>>,
    /// How long a spliced direction busy-polls before it sleeps (tcp only).
    pub(crate) busy_poll: Option<String>,
    /// Normalise request paths before routing (http only; default true).
    pub(crate) normalize_path: Option<bool>,
    /// The longest request head, in bytes or with a unit (http only).
    pub(crate) max_request_header_size: Option<crate::vocab::Text>,
    /// The longest request target (http only).
    pub(crate) max_uri_length: Option<crate::vocab::Text>,
    /// The most request header lines (http only).
    pub(crate) max_header_count: Option<usize>,
    /// A new connection's first request head, whole (http only).
    pub(crate) request_header_timeout: Option<String>,
    /// A kept-alive connection's next request head, whole (http only).
    pub(crate) keepalive_timeout: Option<String>,
    /// The most connections open at once; beyond it new ones are closed.
    pub(crate) max_connections: Option<usize>,
    /// Whether a worker's answers are sent together (http only), default true.
    pub(crate) coalesce: Option<bool>,
    /// HTTP/2: by ALPN on TLS (default true), h2c prior knowledge on plain (default false).
    pub(crate) http2: Option<bool>,
    /// How long a tcp listener waits for a ClientHello when a route needs its name.
    pub(crate) peek_timeout: Option<String>,
    /// Accept a PROXY header from these senders.
    pub(crate) proxy_protocol: Option<ProxyProtocolSection>,
    /// How long an idle flow is kept (udp only).
    pub(crate) session_timeout: Option<String>,
    /// The most flows at once (udp only).
    pub(crate) max_flows: Option<usize>,
    /// A path Tioga answers `200 ok` itself, for load balancers' health checks
    /// (http only).
    pub(crate) healthz: Option<String>,
}

/// `listeners.NAME.proxy_protocol`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyProtocolSection {
    /// IPs or CIDR blocks whose PROXY headers are believed.
    pub(crate) trusted: Vec<crate::filter::settings::Cidr>,
}

/// `listeners.NAME.routes[i]` of a tcp listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TcpRouteSection {
    /// Conditions; absent means "matches every connection".
    #[serde(rename = "match", default)]
    pub(crate) matches: crate::routing::tcp::TcpMatchSpec,
    /// The pool that serves the route.
    pub(crate) pool: String,
}

/// `listeners.NAME.tls`: one `cert`/`key` pair, or a `certs` list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// PEM certificate chain.
    pub(crate) cert: Option<String>,
    /// PEM private key.
    pub(crate) key: Option<String>,
    /// Several certificates, chosen by SNI.
    pub(crate) certs: Option<Vec<CertSection>>,
    /// PEM CA certificates that sign the client certificates (mTLS).
    pub(crate) client_ca: Option<String>,
    /// `"1.2"` (default) or `"1.3"`.
    pub(crate) min_version: Option<crate::vocab::Text>,
}

/// `listeners.NAME.tls.certs[i]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertSection {
    /// PEM certificate chain.
    pub(crate) cert: String,
    /// PEM private key.
    pub(crate) key: String,
}

/// `pools.NAME.tls`: TLS to the backends.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PoolTlsSection {
    /// The name sent as SNI and checked against the backend's certificate.
    pub(crate) sni: Option<String>,
    /// Whether the backend's certificate is verified, default true.
    pub(crate) verify: Option<bool>,
    /// PEM CA certificates to trust instead of the system's.
    pub(crate) ca: Option<String>,
}

/// `listeners.NAME.routes[i]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteSection {
    /// Conditions; absent means "matches everything".
    #[serde(rename = "match", default)]
    pub(crate) matches: MatchSpec,
    /// The pool that serves the route.
    pub(crate) pool: Option<String>,
    /// Filters; each a one-key map, kept raw until the filter registry builds it.
    pub(crate) filters: Option<Vec<serde_yaml::Value>>,
}
