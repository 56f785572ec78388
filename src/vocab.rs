//! The words every layer shares: how a pool balances and what it hashes on, what a
//! health probe does, where and how the access log is written, and the small YAML
//! value types that several parts of the file format use. A leaf: it imports nothing
//! of Tioga's, and anything may import it.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Balancing algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Balance {
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Fewest active requests/connections relative to weight.
    LeastConn,
    /// Consistent (ketama) hashing on a key.
    ConsistentHash(HashKey),
    /// Two random choices, the lower peak-EWMA latency × load.
    P2cEwma,
}

/// The PROXY protocol version a pool sends its backends (`proxy_protocol: v1 | v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// What `consistent_hash` (and `rate_limit`) hash on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashKey {
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

/// The kind of probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A TCP connect.
    Tcp,
    /// An HTTP GET.
    Http {
        /// Path to request.
        path: String,
        /// Status expected; `None` means any 2xx.
        expect_status: Option<u16>,
    },
    /// A UDP datagram, answered (Tioga's UDP listeners).
    Udp {
        /// Bytes to send (the YAML text, as UTF-8).
        send: Vec<u8>,
        /// Bytes the answer must contain; `None`: any answer, or none at all as long
        /// as the backend's host does not refuse the port (ICMP unreachable).
        expect: Option<Vec<u8>>,
    },
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(std::path::PathBuf),
}

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object per line.
    Json,
    /// Apache combined log format, followed by Tioga's fields as `key=value`.
    Combined,
}

/// One string or a list of strings (`bind:`, `method:`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    /// A single string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

impl OneOrMany {
    /// All values as a slice-like vector.
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A YAML scalar read as text, so `{version: 2}` means the same as `{version: "2"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Text(pub String);

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
pub(crate) fn describe(v: &serde_yaml::Value) -> &'static str {
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
pub(crate) fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let map: Option<BTreeMap<String, Text>> = Option::deserialize(d)?;
    Ok(map.map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect()))
}

/// What an HTTP listener accepts of a request head (`listeners.NAME.*`); beyond it a
/// request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadRules {
    /// Normalise the path before routing (`normalize_path`).
    pub(crate) normalize_path: bool,
    /// The longest request head, request line included (`max_request_header_size`).
    pub(crate) max_header_size: usize,
    /// The longest request target (`max_uri_length`).
    pub(crate) max_uri_length: usize,
    /// The most header lines (`max_header_count`).
    pub(crate) max_header_count: usize,
    /// A new connection's first request head, whole, from accept
    /// (`request_header_timeout`).
    pub(crate) request_header_timeout: std::time::Duration,
    /// A kept-alive connection's next request head, whole, from the previous request's
    /// end (`keepalive_timeout`).
    pub(crate) keepalive_timeout: std::time::Duration,
}

impl Default for HeadRules {
    fn default() -> Self {
        HeadRules {
            normalize_path: true,
            max_header_size: 64 * 1024,
            max_uri_length: 8 * 1024,
            max_header_count: 100,
            request_header_timeout: std::time::Duration::from_secs(10),
            keepalive_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// TLS termination on a listener (`listeners.NAME.tls`).
#[derive(Debug, Clone)]
pub(crate) struct TlsSpec {
    /// The certificates, in file order: chosen by SNI, the first when none matches.
    pub(crate) certs: Vec<CertFiles>,
    /// Client certificates must be signed by one of these CAs (mTLS), when given.
    pub(crate) client_ca: Option<std::path::PathBuf>,
    /// The oldest TLS version accepted.
    pub(crate) min_version: TlsVersion,
}

/// One certificate chain and its private key, as PEM files.
#[derive(Debug, Clone)]
pub(crate) struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub(crate) cert: std::path::PathBuf,
    /// PEM private key.
    pub(crate) key: std::path::PathBuf,
}

/// A TLS protocol version (`min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}
