//! Validation of one pool: its backends and weights, the balance mode and hash key,
//! the health check and the timeouts. Split from `validate` to keep each file to one
//! concern.

use super::file::{BackendEntry, HealthCheckSection, PoolSection};
use super::problems::{join, Problems};
use super::values::{address, duration};
use super::*;
use serde_yaml::Value;

/// The most `retries` and `rise`/`fall` a pool takes.
const MAX_RETRIES: usize = 100;
const MAX_RISE_FALL: usize = 1000;

/// The largest UDP payload over IPv4, for a `udp` health check's `send`.
const MAX_DATAGRAM: usize = 65_507;

pub(super) fn pool(
    name: &str,
    value: &Value,
    base: &std::path::Path,
    p: &mut Problems,
) -> Option<PoolSpec> {
    let path = format!("pools.{name}");
    let s: PoolSection = p.parse(&path, value)?;
    let discovery = s
        .discovery
        .as_ref()
        .and_then(|d| super::discovery::discovery(d, &path, p));
    let backends = match &s.discovery {
        None => backends(&s, &path, p),
        Some(_) => {
            if !s.backends.is_empty() {
                p.add(
                    join(&path, "backends"),
                    "give either `backends` or `discovery`, not both",
                );
            }
            Vec::new()
        }
    };
    let balance = balance(&s, &path, p);
    let health_check = s
        .health_check
        .as_ref()
        .and_then(|h| health_check(h, &path, p));
    let connect_timeout = duration(
        s.connect_timeout.as_deref(),
        &join(&path, "connect_timeout"),
        "1s",
        p,
    );
    let read_timeout = duration(
        s.read_timeout.as_deref(),
        &join(&path, "read_timeout"),
        "60s",
        p,
    );
    Some(PoolSpec {
        name: name.to_string(),
        backends,
        balance: balance?,
        health_check,
        connect_timeout,
        read_timeout,
        retries: retries(s.retries, &path, p),
        link: super::validate_tls::pool(base, &path, &s, p),
        proxy_protocol: proxy_version(s.proxy_protocol.as_deref(), &path, p),
        discovery,
        resilience: super::resilience::resilience(
            super::resilience::ResilienceKeys {
                outlier: s.outlier.as_ref(),
                panic_threshold: s.panic_threshold.as_ref(),
                slow_start: s.slow_start.as_deref(),
                retry_on: s.retry_on.as_deref(),
                retry_budget: s.retry_budget.as_ref(),
                max_conns: s.max_conns,
                queue: s.queue.as_ref(),
                sticky: s.sticky.as_ref(),
            },
            &path,
            p,
        ),
    })
}

fn backends(s: &PoolSection, path: &str, p: &mut Problems) -> Vec<BackendSpec> {
    let list_path = join(path, "backends");
    if s.backends.is_empty() {
        p.add(
            &list_path,
            "the backend list is empty: give at least one host:port",
        );
    }
    let mut out: Vec<BackendSpec> = Vec::new();
    for (i, entry) in s.backends.iter().enumerate() {
        let item = format!("{list_path}[{i}]");
        let (text, weight, at) = match entry {
            BackendEntry::Address(a) => (a.as_str(), 1, item.clone()),
            BackendEntry::Detailed(d) => (d.address.as_str(), d.weight, join(&item, "address")),
        };
        if !(1..=1000).contains(&weight) {
            p.add(
                join(&item, "weight"),
                format!("weight {weight} is out of range: must be from 1 to 1000"),
            );
        }
        let Some(addr) = address(text, &at, p) else {
            continue;
        };
        if out.iter().any(|b| b.addr == addr) {
            p.add(&item, format!("backend {addr} is listed twice"));
            continue;
        }
        out.push(BackendSpec {
            addr,
            weight: weight.clamp(1, 1000) as usize,
        });
    }
    out
}

fn balance(s: &PoolSection, path: &str, p: &mut Problems) -> Option<Balance> {
    let key_path = join(path, "hash_key");
    let balance = match s.balance.as_deref().unwrap_or("round_robin") {
        "round_robin" => Balance::RoundRobin,
        "random" => Balance::Random,
        "least_conn" => Balance::LeastConn,
        "p2c_ewma" => Balance::P2cEwma,
        "consistent_hash" => match s.hash_key.as_deref() {
            None => {
                p.add(join(path, "balance"), "consistent_hash needs `hash_key` (client_ip | uri | header:NAME | cookie:NAME | query:NAME)");
                return None;
            }
            Some(k) => Balance::ConsistentHash(hash_key(k, &key_path, p)?),
        },
        other => {
            p.add(
                join(path, "balance"),
                format!("unknown balance `{other}` (expected one of round_robin, random, least_conn, consistent_hash, p2c_ewma)"),
            );
            return None;
        }
    };
    if s.hash_key.is_some() && !matches!(balance, Balance::ConsistentHash(_)) {
        p.add(
            key_path,
            "hash_key is only used with `balance: consistent_hash`",
        );
    }
    Some(balance)
}

/// Parses a `hash_key`, recording a problem when it is not one.
fn hash_key(text: &str, path: &str, p: &mut Problems) -> Option<HashKey> {
    text.parse().map_err(|e: String| p.add(path, e)).ok()
}

fn health_check(h: &HealthCheckSection, pool: &str, p: &mut Problems) -> Option<HealthCheckSpec> {
    let path = join(pool, "health_check");
    if h.kind != "udp" {
        for (key, set) in [("send", h.send.is_some()), ("expect", h.expect.is_some())] {
            if set {
                p.add(join(&path, key), "only used with `type: udp`");
            }
        }
    }
    let probe = match h.kind.as_str() {
        "udp" => {
            for (key, set) in [
                ("path", h.path.is_some()),
                ("expect_status", h.expect_status.is_some()),
            ] {
                if set {
                    p.add(join(&path, key), "only used with `type: http`");
                }
            }
            let send = h.send.clone().unwrap_or_default().into_bytes();
            if send.len() > MAX_DATAGRAM {
                p.add(
                    join(&path, "send"),
                    format!(
                        "{} bytes is more than a UDP datagram carries ({MAX_DATAGRAM})",
                        send.len()
                    ),
                );
            }
            Probe::Udp {
                send,
                expect: h.expect.clone().map(String::into_bytes),
            }
        }
        "tcp" => {
            for (key, set) in [
                ("path", h.path.is_some()),
                ("expect_status", h.expect_status.is_some()),
            ] {
                if set {
                    p.add(join(&path, key), "only used with `type: http`");
                }
            }
            Probe::Tcp
        }
        "http" => {
            let hc_path = h.path.clone().unwrap_or_else(|| "/".into());
            if !hc_path.starts_with('/') {
                p.add(
                    join(&path, "path"),
                    format!("`{hc_path}` must start with `/`"),
                );
            }
            if let Some(s) = h.expect_status {
                if !(100..=599).contains(&s) {
                    p.add(
                        join(&path, "expect_status"),
                        format!("{s} is not an HTTP status (100-599)"),
                    );
                }
            }
            Probe::Http {
                path: hc_path,
                expect_status: h.expect_status,
            }
        }
        other => {
            p.add(
                join(&path, "type"),
                format!("unknown type `{other}` (expected tcp, http or udp)"),
            );
            return None;
        }
    };
    for (key, v) in [("rise", h.rise), ("fall", h.fall)] {
        if v.is_some_and(|v| !(1..=MAX_RISE_FALL).contains(&v)) {
            p.add(
                join(&path, key),
                format!(
                    "{} is out of range: 1 to {MAX_RISE_FALL}",
                    v.unwrap_or_default()
                ),
            );
        }
    }
    Some(HealthCheckSpec {
        probe,
        interval: duration(h.interval.as_deref(), &join(&path, "interval"), "1s", p),
        timeout: duration(h.timeout.as_deref(), &join(&path, "timeout"), "1s", p),
        rise: h.rise.unwrap_or(1).clamp(1, MAX_RISE_FALL),
        fall: h.fall.unwrap_or(1).clamp(1, MAX_RISE_FALL),
    })
}

/// `retries` (default 1), at most [`MAX_RETRIES`].
fn retries(given: Option<usize>, pool: &str, p: &mut Problems) -> usize {
    let n = given.unwrap_or(1);
    if n > MAX_RETRIES {
        p.add(
            join(pool, "retries"),
            format!("{n} is out of range: 0 to {MAX_RETRIES}"),
        );
    }
    n.min(MAX_RETRIES)
}

/// `proxy_protocol: v1 | v2`.
fn proxy_version(raw: Option<&str>, path: &str, p: &mut Problems) -> Option<ProxyVersion> {
    match raw? {
        "v1" => Some(ProxyVersion::V1),
        "v2" => Some(ProxyVersion::V2),
        other => {
            p.add(
                join(path, "proxy_protocol"),
                format!("unknown PROXY protocol version {other:?}: use v1 or v2"),
            );
            None
        }
    }
}
