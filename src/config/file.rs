//! The YAML file format, as serde types.
//!
//! These types mirror `shared/contract/config.md` key for key and reject unknown keys.
//! They keep addresses, durations and regexes as the strings the user wrote: turning
//! them into runtime types is [`super::validate`]'s job, so that every problem in a
//! file can be reported at once, each with its key path.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `server:` — process settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Worker threads per listener.
    pub threads: Option<usize>,
    /// Where the pid file is written.
    pub pid_file: Option<String>,
    /// The Unix socket over which listening sockets are handed to a new process.
    pub upgrade_sock: Option<String>,
    /// How long the old process keeps serving after a hand-over or SIGTERM.
    pub grace_period: Option<String>,
    /// How long to wait for in-flight work after the grace period.
    pub graceful_shutdown_timeout: Option<String>,
}

/// `admin:` — the operator's endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin HTTP endpoint.
    pub bind: String,
}

/// `access_log:` — one line per HTTP request and TCP connection (Tioga's extension).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// `stdout` (default), `stderr` or a file path.
    pub target: Option<String>,
    /// `json` (default) or `combined`.
    pub format: Option<String>,
}

/// One entry of `pools.NAME.backends`: either `"host:port"` or a map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BackendEntry {
    /// `- 127.0.0.1:9001`
    Address(String),
    /// `- {address: 127.0.0.1:9002, weight: 3}`
    Detailed(DetailedBackend),
}

/// The map form of a backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailedBackend {
    /// `host:port`.
    pub address: String,
    /// Relative weight, at least 1.
    #[serde(default = "default_weight")]
    pub weight: i64,
}

fn default_weight() -> i64 {
    1
}

/// `pools.NAME` — a named backend set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// The backends; at least one.
    pub backends: Vec<BackendEntry>,
    /// Balancing algorithm name.
    pub balance: Option<String>,
    /// Key for `consistent_hash`.
    pub hash_key: Option<String>,
    /// Active health check.
    pub health_check: Option<HealthCheckSection>,
    /// Connect timeout, default 1s.
    pub connect_timeout: Option<String>,
    /// Longest wait for the backend's next bytes, default 60s.
    pub read_timeout: Option<String>,
    /// Extra attempts on another backend when connecting fails, default 1.
    pub retries: Option<usize>,
}

/// `pools.NAME.health_check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// `tcp` or `http`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Time between checks, default 1s.
    pub interval: Option<String>,
    /// Time one check may take, default 1s.
    pub timeout: Option<String>,
    /// Consecutive successes before a down backend is used again.
    pub rise: Option<usize>,
    /// Consecutive failures before an up backend is taken out.
    pub fall: Option<usize>,
    /// HTTP path to request (http only).
    pub path: Option<String>,
    /// Expected HTTP status (http only); default any 2xx.
    pub expect_status: Option<u16>,
}

/// `bind:` takes one address or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

impl OneOrMany {
    /// All values as a slice-like vector.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `listeners.NAME` — an entry point. Routes are kept as raw YAML values so that each
/// route is deserialized (and its errors reported) on its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// `http` or `tcp`.
    pub protocol: String,
    /// Address or addresses to listen on.
    pub bind: OneOrMany,
    /// TLS termination (http only).
    pub tls: Option<TlsSection>,
    /// Routes (http only).
    pub routes: Option<Vec<serde_yaml::Value>>,
    /// Pool (tcp only).
    pub pool: Option<String>,
    /// Connection filters (tcp only); each a one-key map.
    pub filters: Option<Vec<serde_yaml::Value>>,
    /// How long a spliced direction busy-polls before it sleeps (tcp only).
    pub busy_poll: Option<String>,
    /// Whether a worker's answers are sent together (http only), default true.
    pub coalesce: Option<bool>,
}

/// `listeners.NAME.tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// `listeners.NAME.routes[i]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Conditions; absent means "matches everything".
    #[serde(rename = "match", default)]
    pub matches: MatchSection,
    /// The pool that serves the route.
    pub pool: Option<String>,
    /// Filters; each a one-key map, kept raw until the filter registry builds it.
    pub filters: Option<Vec<serde_yaml::Value>>,
}

/// `match:` — every given condition must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    /// Host without port, case-insensitive; `*.example.com` for any subdomain.
    pub host: Option<String>,
    /// Plain string prefix of the path.
    pub path_prefix: Option<String>,
    /// Whole path equals.
    pub path: Option<String>,
    /// Regex on the path.
    pub path_regex: Option<String>,
    /// One method or a list.
    pub method: Option<OneOrMany>,
    /// Header name (case-insensitive) → exact value.
    #[serde(default, deserialize_with = "scalar_map")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Query parameter → value.
    #[serde(default, deserialize_with = "scalar_map")]
    pub query: Option<BTreeMap<String, String>>,
    /// Cookie → value.
    #[serde(default, deserialize_with = "scalar_map")]
    pub cookie: Option<BTreeMap<String, String>>,
}

/// A YAML scalar read as text, so `{version: 2}` means the same as `{version: "2"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(Text(s)),
            serde_yaml::Value::Number(n) => Ok(Text(n.to_string())),
            serde_yaml::Value::Bool(b) => Ok(Text(b.to_string())),
            other => Err(D::Error::custom(format!(
                "expected a string, number or boolean, found {}",
                describe(&other)
            ))),
        }
    }
}

/// A short name for the kind of a YAML value, for error messages.
pub fn describe(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "nothing (null)",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a map",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// Deserializes `Option<map of name → scalar>`, reading every scalar as text.
pub fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let map: Option<BTreeMap<String, Text>> = Option::deserialize(d)?;
    Ok(map.map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect()))
}
