//! Validation: YAML text → [`Config`], collecting every problem instead of stopping
//! at the first.
//!
//! The file is parsed once into a YAML value, then each section, pool, listener and
//! route is deserialized on its own (with `serde_path_to_error` for the inner key
//! path), so one bad route does not hide a bad pool. Cross-references (a route's pool,
//! duplicate bind addresses) are checked last. Lines come from the `source` line index.

use super::error::ConfigError;
use super::file::{self, ListenerSection};
use super::problems::{join, Problems};
use super::source::LineIndex;
use super::values::{address, duration_or_zero};
use super::*;
use crate::filter::Registry;
use serde_yaml::Value;
use std::collections::BTreeMap;

/// The most `max_connections` a listener takes.
const MAX_CONNECTIONS: usize = 10_000_000;

/// The most worker threads per listener.
const MAX_THREADS: usize = 1024;

const TOP_KEYS: &[&str] = &[
    "server",
    "admin",
    "access_log",
    "pools",
    "listeners",
    "tests",
    "reload_guard",
];

/// Validates the text of `file`.
pub(crate) fn validate(file: &Path, text: &str, filters: &Registry) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        file: file.to_path_buf(),
        problems,
    };
    if let Err(too_big) = super::shape::check(text) {
        return Err(invalid(vec![Problem {
            path: String::new(),
            line: too_big.line,
            message: too_big.message,
        }]));
    }
    let root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let message = e.to_string();
            return Err(invalid(vec![Problem {
                path: String::new(),
                line: e.location().map(|l| l.line()),
                message,
            }]));
        }
    };
    let mut p = Problems::default();
    let config = build(file, &root, filters, &mut p);
    if p.list.is_empty() {
        if let Some(mut config) = config {
            if !config.tests.is_empty() {
                let index = LineIndex::build(text);
                for t in &mut config.tests {
                    t.line = index.line(&t.path);
                }
            }
            return Ok(config);
        }
    }
    let index = LineIndex::build(text);
    let mut problems = p.list;
    for problem in &mut problems {
        problem.line = index.line(&problem.path);
    }
    problems.sort_by_key(|pr| pr.line.unwrap_or(usize::MAX));
    Err(invalid(problems))
}

fn build(file: &Path, root: &Value, filters: &Registry, p: &mut Problems) -> Option<Config> {
    let Some(map) = root.as_mapping() else {
        p.add(
            "",
            format!(
                "expected a map with keys {}, found {}",
                TOP_KEYS.join(", "),
                file::describe(root)
            ),
        );
        return None;
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or("?");
        if !TOP_KEYS.contains(&name) {
            p.add(
                name,
                format!("unknown key (expected one of {})", TOP_KEYS.join(", ")),
            );
        }
    }
    let server = server(map.get("server"), p);
    let (admin, admin_token) = match map.get("admin").and_then(|v| admin(file, v, p)) {
        Some((bind, token)) => (bind, token),
        None => (None, None),
    };
    let access_log = map.get("access_log").and_then(|v| access_log(v, p));
    let raw_pools = named(map.get("pools"), "pools", p);
    // Every named pool counts as known, even one with problems of its own.
    let known: Vec<&str> = raw_pools.keys().map(String::as_str).collect();
    let context = super::validate_listener::Context {
        file,
        known: &known,
        filters,
    };
    let listeners = named(map.get("listeners"), "listeners", p)
        .into_iter()
        .filter_map(|(name, v)| listener(&context, &name, &v, p))
        .collect::<Vec<_>>();
    let pools = raw_pools
        .iter()
        .filter_map(|(name, v)| {
            let base = file.parent().unwrap_or(std::path::Path::new("."));
            super::validate_pool::pool(name, v, base, p)
        })
        .collect::<Vec<_>>();
    check_binds(&listeners, admin, p);
    super::validate_udp::pools_fit(&listeners, &pools, p);
    let reload_guard = map
        .get("reload_guard")
        .and_then(|v| super::guard::parse(v, p));
    let tests = map
        .get("tests")
        .map(|v| super::tests_key::parse(v, p))
        .unwrap_or_default();
    Some(Config {
        file: file.to_path_buf(),
        server: server?,
        admin,
        admin_token,
        reload_guard,
        access_log,
        pools,
        listeners,
        tests,
    })
}

/// A required map of name → section (`pools`, `listeners`).
fn named(value: Option<&Value>, key: &str, p: &mut Problems) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    match value {
        None => p.add(
            key,
            format!("missing: at least one entry is required under `{key}:`"),
        ),
        Some(Value::Mapping(m)) if m.is_empty() => p.add(key, "at least one entry is required"),
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                match k.as_str() {
                    Some(name) if valid_name(name) => {
                        out.insert(name.to_string(), v.clone());
                    }
                    _ => p.add(
                        key,
                        format!("bad name {k:?}: use letters, digits, `_`, `-` and `.`"),
                    ),
                }
            }
        }
        Some(other) => p.add(
            key,
            format!(
                "expected a map of name → settings, found {}",
                file::describe(other)
            ),
        ),
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn server(value: Option<&Value>, p: &mut Problems) -> Option<ServerSettings> {
    let s: file::ServerSection = match value {
        None | Some(Value::Null) => file::ServerSection::default(),
        Some(v) => p.parse("server", v)?,
    };
    let threads = s
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !(1..=MAX_THREADS).contains(&threads) {
        p.add(
            "server.threads",
            format!("{threads} is out of range: 1 to {MAX_THREADS}"),
        );
    }
    Some(ServerSettings {
        threads: threads.clamp(1, MAX_THREADS),
        pid_file: s.pid_file.unwrap_or_else(|| default_file("tioga.pid")),
        upgrade_sock: s
            .upgrade_sock
            .unwrap_or_else(|| default_file("upgrade.sock")),
        grace_period: duration_or_zero(s.grace_period.as_deref(), "server.grace_period", "5s", p),
        graceful_shutdown_timeout: duration_or_zero(
            s.graceful_shutdown_timeout.as_deref(),
            "server.graceful_shutdown_timeout",
            "5s",
            p,
        ),
    })
}

/// `name` in [`default_runtime_dir`].
fn default_file(name: &str) -> String {
    default_runtime_dir()
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// `admin.bind`, and the token read from `admin.token_file` (read at every load, so a
/// reload picks up a new token).
fn admin(
    file: &Path,
    value: &Value,
    p: &mut Problems,
) -> Option<(Option<SocketAddr>, Option<String>)> {
    let a: file::AdminSection = p.parse("admin", value)?;
    let bind = address(&a.bind, "admin.bind", p);
    let token = a.token_file.and_then(|t| {
        let base = file.parent().unwrap_or(Path::new("."));
        let path = base.join(&t);
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Ok(_) => {
                p.add(
                    "admin.token_file",
                    format!("{}: the file is empty", path.display()),
                );
                None
            }
            Err(e) => {
                p.add(
                    "admin.token_file",
                    format!("{}: cannot read: {e}", path.display()),
                );
                None
            }
        }
    });
    Some((bind, token))
}

fn access_log(value: &Value, p: &mut Problems) -> Option<AccessLogSpec> {
    use crate::observability::access_log::{Format, Target};
    let a: file::AccessLogSection = match value {
        Value::Null => file::AccessLogSection::default(),
        v => p.parse("access_log", v)?,
    };
    let target = match a.target.as_deref().unwrap_or("stdout") {
        "stdout" => Target::Stdout,
        "stderr" => Target::Stderr,
        "" => {
            p.add(
                "access_log.target",
                "empty: use stdout, stderr or a file path",
            );
            return None;
        }
        path => {
            let path = PathBuf::from(path);
            if let Err(e) = check_appendable(&path) {
                p.add(
                    "access_log.target",
                    format!("cannot open {} for appending: {e}", path.display()),
                );
            }
            Target::File(path)
        }
    };
    let format = match a.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "combined" => Format::Combined,
        other => {
            p.add(
                "access_log.format",
                format!("unknown format `{other}` (expected json or combined)"),
            );
            return None;
        }
    };
    Some(AccessLogSpec { target, format })
}

/// Whether `path` could be opened for appending, without creating it (`-t` leaves no
/// trace): an existing file is opened, a missing one needs a writable directory.
fn check_appendable(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().append(true).open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            nix::unistd::access(
                dir,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .map_err(|errno| match errno {
                nix::errno::Errno::ENOENT => std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("directory {} does not exist", dir.display()),
                ),
                other => std::io::Error::from(other),
            })
        }
        other => other.map(drop),
    }
}

fn listener(
    cx: &super::validate_listener::Context,
    name: &str,
    value: &Value,
    p: &mut Problems,
) -> Option<ListenerSpec> {
    let path = format!("listeners.{name}");
    let s: ListenerSection = p.parse(&path, value)?;
    let bind_path = join(&path, "bind");
    let bind_list = s.bind.to_vec();
    if bind_list.is_empty() {
        p.add(&bind_path, "give at least one address");
    }
    let binds = bind_list
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let at = match &s.bind {
                file::OneOrMany::One(_) => bind_path.clone(),
                file::OneOrMany::Many(_) => format!("{bind_path}[{i}]"),
            };
            address(b, &at, p)
        })
        .collect();
    let proxy_protocol = super::validate_listener::trusted(&path, &s, p);
    if s.protocol != "udp" {
        super::validate_udp::not_on_streams(&path, &s, p);
    }
    let kind = match s.protocol.as_str() {
        "http" => super::validate_listener::http(cx, &path, &s, p),
        "tcp" => super::validate_listener::tcp(cx, &path, &s, p),
        "udp" => super::validate_udp::udp(cx, &path, &s, p),
        other => {
            p.add(
                join(&path, "protocol"),
                format!("unknown protocol `{other}` (expected http, tcp or udp)"),
            );
            None
        }
    }?;
    let max_connections = s.max_connections.filter(|n| {
        let ok = (1..=MAX_CONNECTIONS).contains(n);
        if !ok {
            p.add(
                join(&path, "max_connections"),
                format!("{n} is out of range: 1 to {MAX_CONNECTIONS}"),
            );
        }
        ok
    });
    Some(ListenerSpec {
        name: name.to_string(),
        binds,
        max_connections,
        kind,
        proxy_protocol,
    })
}

/// A TCP and a UDP listener may share an address (DNS is served on both); two of the
/// same transport may not.
fn check_binds(listeners: &[ListenerSpec], admin: Option<SocketAddr>, p: &mut Problems) {
    let mut seen: Vec<(SocketAddr, bool, String)> = admin
        .map(|a| (a, false, "admin.bind".to_string()))
        .into_iter()
        .collect();
    for l in listeners {
        let udp = matches!(l.kind, ListenerKind::Udp(_));
        for b in &l.binds {
            if let Some((_, _, other)) = seen
                .iter()
                .find(|(s, s_udp, _)| *s_udp == udp && overlaps(*s, *b))
            {
                p.add(
                    format!("listeners.{}.bind", l.name),
                    format!(
                        "{b} is already used by {other}: two listeners cannot share an address"
                    ),
                );
            } else {
                seen.push((*b, udp, format!("listeners.{}", l.name)));
            }
        }
    }
}

/// Two binds conflict on the same port when their IPs are equal or one is a wildcard
/// of the same family.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
