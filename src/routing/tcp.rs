//! The routes of a TCP listener: which pool serves a connection, chosen from the TLS
//! server name (`sni`, read from the ClientHello without terminating TLS) and the
//! client address (`source`).
//!
//! As with HTTP routes, the first route whose conditions all hold wins and a route
//! without `match:` matches every connection. [`TcpRouteTable::find`] is a pure
//! function; the server name costs a wait for the client's first bytes, so it is
//! asked for only when a route that could still win needs it ([`Find::NeedSni`]): a
//! listener whose routes name no `sni` never waits.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::host::HostMatch;
use super::{push_term, MatchError};
use crate::vocab::OneOrMany;

/// `match:` of a TCP route, as the file writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TcpMatchSpec {
    /// TLS server names; `*.example.com` for any subdomain. One or a list.
    pub(crate) sni: Option<OneOrMany>,
    /// Client addresses: IPs or CIDR blocks. One or a list.
    pub(crate) source: Option<OneOrMany>,
}

/// The compiled conditions of one TCP route: any listed name, and any listed block.
#[derive(Debug, Clone, Default)]
pub(crate) struct TcpMatcher {
    sni: Option<Vec<HostMatch>>,
    source: Option<Vec<IpNet>>,
}

/// What the connection is known to say about its server name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sni<'a> {
    /// Not read yet.
    Unread,
    /// Read: the name, or `None` when the client sent no name (or no TLS).
    Read(Option<&'a str>),
}

/// The answer of [`TcpRouteTable::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Find {
    /// This route (index) serves the connection.
    Route(usize),
    /// A route that could win needs the server name: read it and ask again.
    NeedSni,
    /// No route matches.
    None,
}

impl TcpMatcher {
    /// Compiles `spec`, returning every problem at once.
    pub(crate) fn compile(spec: &TcpMatchSpec) -> Result<TcpMatcher, Vec<MatchError>> {
        let mut errors = Vec::new();
        let sni = spec.sni.as_ref().map(|names| {
            names
                .to_vec()
                .iter()
                .enumerate()
                .filter_map(|(i, raw)| {
                    let mut found = Vec::new();
                    let host = HostMatch::compile(raw, &mut found);
                    errors.extend(found.into_iter().map(|e| MatchError {
                        key: format!("sni[{i}]"),
                        message: e.message,
                    }));
                    host
                })
                .collect::<Vec<_>>()
        });
        let source = spec.source.as_ref().map(|blocks| {
            blocks
                .to_vec()
                .iter()
                .enumerate()
                .filter_map(|(i, raw)| match cidr(raw) {
                    Ok(net) => Some(net),
                    Err(message) => {
                        errors.push(MatchError::new(format!("source[{i}]"), message));
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        for (key, empty) in [
            ("sni", sni.as_ref().is_some_and(Vec::is_empty)),
            ("source", source.as_ref().is_some_and(Vec::is_empty)),
        ] {
            if empty && !errors.iter().any(|e| e.key.starts_with(key)) {
                errors.push(MatchError::new(key, "the list is empty"));
            }
        }
        if errors.is_empty() {
            Ok(TcpMatcher { sni, source })
        } else {
            Err(errors)
        }
    }

    /// Whether the connection matches: `None` when the server name is needed and
    /// not read yet.
    fn matches(&self, client: Option<IpAddr>, sni: Sni<'_>) -> Option<bool> {
        match self.check(client, sni) {
            Check::Holds => Some(true),
            Check::Fails(_) => Some(false),
            Check::NeedSni => None,
        }
    }

    /// The one walk over the conditions, `source` first (it needs no wait), that both
    /// routing ([`TcpRouteTable::find`]) and explanations ([`TcpRouteTable::explain`])
    /// run.
    fn check(&self, client: Option<IpAddr>, sni: Sni<'_>) -> Check {
        if let Some(blocks) = &self.source {
            let Some(ip) = client.map(|ip| ip.to_canonical()) else {
                return Check::Fails("source");
            };
            if !blocks.iter().any(|b| b.contains(&ip)) {
                return Check::Fails("source");
            }
        }
        let Some(names) = &self.sni else {
            return Check::Holds;
        };
        let holds = match sni {
            Sni::Unread => return Check::NeedSni,
            Sni::Read(None) => false,
            Sni::Read(Some(name)) => {
                let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
                names.iter().any(|n| n.matches_name(name))
            }
        };
        if holds {
            Check::Holds
        } else {
            Check::Fails("sni")
        }
    }

    /// `sni=… source=…`, for the status page; empty for a catch-all.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        for n in self.sni.iter().flatten() {
            let mut one = String::new();
            n.describe(&mut one);
            push_term(&mut out, "sni", one.trim_start_matches("host="));
        }
        for b in self.source.iter().flatten() {
            push_term(&mut out, "source", &b.to_string());
        }
        out
    }
}

/// An IP address or CIDR block (`10.0.0.0/8`, `::1`).
fn cidr(raw: &str) -> Result<IpNet, String> {
    let s = raw.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(|ip| IpNet::from(ip.to_canonical()))
        .map_err(|_| format!("`{s}` is not an IP address or CIDR block (like 10.0.0.0/8 or ::1)"))
}

/// The verdict of one route's conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Holds,
    /// The first condition that did not hold: `source` or `sni`.
    Fails(&'static str),
    /// Every condition before `sni` holds and the name is not read yet.
    NeedSni,
}

/// One route tried for a connection, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpTried {
    /// The route's index.
    pub(crate) index: usize,
    /// The first condition that did not hold (`source`, `sni`); `None`: it matched.
    pub(crate) failed: Option<&'static str>,
}

/// A TCP listener's routes in config order, each with its target.
#[derive(Debug)]
pub(crate) struct TcpRouteTable<T> {
    routes: Vec<(TcpMatcher, T)>,
}

impl<T> TcpRouteTable<T> {
    pub(crate) fn new(routes: Vec<(TcpMatcher, T)>) -> Self {
        TcpRouteTable { routes }
    }

    /// The first route that matches the client address and server name.
    pub(crate) fn find(&self, client: Option<IpAddr>, sni: Sni<'_>) -> Find {
        for (i, (m, _)) in self.routes.iter().enumerate() {
            match m.matches(client, sni) {
                Some(true) => return Find::Route(i),
                Some(false) => {}
                None => return Find::NeedSni,
            }
        }
        Find::None
    }

    /// Every route tried for a connection from `client` whose ClientHello named `sni`
    /// (`None`: no name, or no TLS), in order, up to and including the one that matched
    /// (the one [`TcpRouteTable::find`] returns once the name is read), with why each
    /// earlier one did not.
    pub(crate) fn explain(&self, client: Option<IpAddr>, sni: Option<&str>) -> Vec<TcpTried> {
        let mut tried = Vec::new();
        for (index, (m, _)) in self.routes.iter().enumerate() {
            let failed = match m.check(client, Sni::Read(sni)) {
                Check::Fails(condition) => Some(condition),
                // `NeedSni` cannot come back for a name already read.
                Check::Holds | Check::NeedSni => None,
            };
            tried.push(TcpTried { index, failed });
            if failed.is_none() {
                break;
            }
        }
        tried
    }

    /// The target of route `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.routes.get(index).map(|(_, t)| t)
    }

    /// Every route, in order.
    pub(crate) fn routes(&self) -> impl Iterator<Item = (&TcpMatcher, &T)> {
        self.routes.iter().map(|(m, t)| (m, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(sni: Option<&[&str]>, source: Option<&[&str]>) -> TcpMatcher {
        let list = |v: &[&str]| OneOrMany::Many(v.iter().map(|s| s.to_string()).collect());
        TcpMatcher::compile(&TcpMatchSpec {
            sni: sni.map(list),
            source: source.map(list),
        })
        .unwrap()
    }

    fn table() -> TcpRouteTable<&'static str> {
        TcpRouteTable::new(vec![
            (matcher(None, Some(&["10.0.0.0/8"])), "internal"),
            (matcher(Some(&["*.a.example", "b.example"]), None), "a"),
            (matcher(None, None), "default"),
        ])
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn source_decides_without_reading_the_name() {
        let t = table();
        assert_eq!(t.find(ip("10.1.2.3"), Sni::Unread), Find::Route(0));
        assert_eq!(t.find(ip("::ffff:10.1.2.3"), Sni::Unread), Find::Route(0));
    }

    #[test]
    fn a_name_route_asks_for_the_name() {
        let t = table();
        assert_eq!(t.find(ip("192.0.2.1"), Sni::Unread), Find::NeedSni);
        let found = |name| t.find(ip("192.0.2.1"), Sni::Read(name));
        assert_eq!(found(Some("x.a.example")), Find::Route(1));
        assert_eq!(found(Some("X.Y.A.EXAMPLE.")), Find::Route(1));
        assert_eq!(found(Some("b.example")), Find::Route(1));
        assert_eq!(found(Some("a.example")), Find::Route(2));
        assert_eq!(found(None), Find::Route(2));
    }

    #[test]
    fn no_catch_all_means_no_route() {
        let t = TcpRouteTable::new(vec![(matcher(Some(&["a.example"]), None), 1)]);
        assert_eq!(t.find(None, Sni::Read(Some("b.example"))), Find::None);
        assert_eq!(t.find(None, Sni::Read(None)), Find::None);
    }

    #[test]
    fn both_conditions_must_hold() {
        let m = matcher(Some(&["a.example"]), Some(&["192.0.2.0/24"]));
        assert_eq!(
            m.matches(ip("192.0.2.9"), Sni::Read(Some("a.example"))),
            Some(true)
        );
        assert_eq!(m.matches(ip("198.51.100.1"), Sni::Unread), Some(false));
        assert_eq!(m.matches(None, Sni::Read(Some("a.example"))), Some(false));
    }

    #[test]
    fn bad_conditions_are_reported_with_their_key() {
        let spec = TcpMatchSpec {
            sni: Some(OneOrMany::Many(vec![
                "ok.example".into(),
                "a.*.example".into(),
            ])),
            source: Some(OneOrMany::One("10.0.0.0/33".into())),
        };
        let keys: Vec<String> = TcpMatcher::compile(&spec)
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["sni[1]", "source[0]"]);
        let empty = TcpMatchSpec {
            sni: Some(OneOrMany::Many(vec![])),
            source: None,
        };
        assert_eq!(TcpMatcher::compile(&empty).unwrap_err()[0].key, "sni");
    }

    #[test]
    fn explain_names_the_first_failing_condition_and_stops_where_find_does() {
        let t = TcpRouteTable::new(vec![
            (matcher(Some(&["a.example"]), Some(&["10.0.0.0/8"])), 0),
            (matcher(Some(&["*.b.example"]), None), 1),
            (matcher(None, Some(&["192.0.2.0/24"])), 2),
            (matcher(None, None), 3),
        ]);
        let failed = |client, sni| -> Vec<Option<&str>> {
            t.explain(ip(client), sni)
                .iter()
                .map(|t| t.failed)
                .collect()
        };
        // `source` is checked before `sni`, as routing does.
        assert_eq!(
            failed("198.51.100.1", Some("a.example")),
            [Some("source"), Some("sni"), Some("source"), None]
        );
        assert_eq!(failed("10.1.1.1", Some("a.example")), [None]);
        assert_eq!(
            failed("10.1.1.1", None),
            [Some("sni"), Some("sni"), Some("source"), None]
        );
        assert_eq!(
            failed("192.0.2.7", Some("x.b.example")),
            [Some("source"), None]
        );
        for (client, sni) in [
            ("10.1.1.1", Some("a.example")),
            ("10.1.1.1", Some("x.b.example")),
            ("192.0.2.7", None),
            ("198.51.100.1", Some("A.EXAMPLE.")),
        ] {
            let last = t.explain(ip(client), sni).last().copied().unwrap();
            assert_eq!(
                t.find(ip(client), Sni::Read(sni)),
                Find::Route(last.index),
                "{client} {sni:?}"
            );
        }
        let none = TcpRouteTable::new(vec![(matcher(Some(&["a.example"]), None), 0)]);
        assert_eq!(
            none.explain(None, Some("b.example")),
            [TcpTried {
                index: 0,
                failed: Some("sni")
            }]
        );
    }

    #[test]
    fn describes_its_conditions() {
        let m = matcher(Some(&["*.a.example"]), Some(&["10.0.0.0/8"]));
        assert_eq!(m.describe(), "sni=*.a.example source=10.0.0.0/8");
    }
}
