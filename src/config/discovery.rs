//! `pools.NAME.discovery`: its serde type and its validation into a
//! [`DiscoverySpec`]. A pool gives either `backends` or `discovery`.

use super::problems::{join, Problems};
use super::values::duration;
use crate::upstream::policy::{DiscoverySpec, Target};
use serde::Deserialize;
use std::net::SocketAddr;

/// `pools.NAME.discovery`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoverySection {
    /// `NAME:PORT`: A/AAAA records.
    pub(crate) dns: Option<String>,
    /// `_service._proto.NAME`: SRV records.
    pub(crate) srv: Option<String>,
    /// Time between lookups; default 10s.
    pub(crate) refresh: Option<String>,
    /// The DNS server, `IP:PORT`; default: the system's.
    pub(crate) resolver: Option<String>,
}

/// Validates `discovery` of pool `pool` (its key path).
pub(super) fn discovery(
    d: &DiscoverySection,
    pool: &str,
    p: &mut Problems,
) -> Option<DiscoverySpec> {
    let path = join(pool, "discovery");
    let target = match (&d.dns, &d.srv) {
        (Some(dns), None) => {
            let at = join(&path, "dns");
            let Some((host, port)) = dns.rsplit_once(':') else {
                p.add(at, format!("`{dns}` is not NAME:PORT"));
                return None;
            };
            let Some(port) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
                p.add(at, format!("`{port}` is not a port (1-65535)"));
                return None;
            };
            check_name(host, &at, p)?;
            Target::Dns {
                host: host.to_string(),
                port,
            }
        }
        (None, Some(srv)) => {
            check_name(srv, &join(&path, "srv"), p)?;
            Target::Srv { name: srv.clone() }
        }
        _ => {
            p.add(&path, "give exactly one of `dns: NAME:PORT` or `srv: NAME`");
            return None;
        }
    };
    let resolver = match &d.resolver {
        None => None,
        Some(text) => match text.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.add(
                    join(&path, "resolver"),
                    format!("`{text}` is not IP:PORT (such as 127.0.0.1:53)"),
                );
                return None;
            }
        },
    };
    Some(DiscoverySpec {
        target,
        refresh: duration(d.refresh.as_deref(), &join(&path, "refresh"), "10s", p),
        resolver,
    })
}

/// A DNS name: labels of letters, digits, `-` and `_`, joined by dots.
fn check_name(name: &str, path: &str, p: &mut Problems) -> Option<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Some(())
    } else {
        p.add(path, format!("`{name}` is not a DNS name"));
        None
    }
}
