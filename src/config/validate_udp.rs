//! Validation of a `udp` listener: its pool, the filters run when a flow starts,
//! `session_timeout` and `max_flows`; and the refusal of those two keys elsewhere.

use super::file::ListenerSection;
use super::problems::{join, Problems};
use super::validate_listener::{filters, Context};
use super::values::{check_pool, duration};
use super::{ListenerKind, ListenerSpec, PoolSpec, ProxyVersion, UdpSpec};
use crate::filter::Scope;

/// A flow's `session_timeout` when none is given.
const DEFAULT_SESSION_TIMEOUT: &str = "30s";

/// `max_flows` when none is given. Each flow holds one socket (a descriptor).
pub(crate) const DEFAULT_MAX_FLOWS: usize = 65_536;

/// The most `max_flows` a listener takes.
const MAX_FLOWS: usize = 10_000_000;

/// Validates a `udp` listener.
pub(super) fn udp(
    cx: &Context,
    path: &str,
    s: &ListenerSection,
    p: &mut Problems,
) -> Option<ListenerKind> {
    let not_udp = [
        (
            "tls",
            s.tls.is_some(),
            "TLS termination is for http listeners only (DTLS is not supported)",
        ),
        (
            "routes",
            s.routes.is_some(),
            "routes are for http and tcp listeners: a udp listener names one `pool`",
        ),
        (
            "busy_poll",
            s.busy_poll.is_some(),
            "busy_poll is for tcp listeners (it applies to their zero-copy relay)",
        ),
        (
            "coalesce",
            s.coalesce.is_some(),
            "coalesce is for http listeners (it batches their answers)",
        ),
        (
            "max_connections",
            s.max_connections.is_some(),
            "a udp listener has flows, not connections: use `max_flows`",
        ),
    ];
    for (key, _, why) in not_udp.iter().filter(|(_, given, _)| *given) {
        p.add(join(path, key), *why);
    }
    super::validate_head::not_on_tcp(path, s, p);
    let filters = filters(
        cx,
        s.filters.as_deref().unwrap_or_default(),
        &join(path, "filters"),
        Scope::HttpAndTcp,
        p,
    );
    let session_timeout = duration(
        s.session_timeout.as_deref(),
        &join(path, "session_timeout"),
        DEFAULT_SESSION_TIMEOUT,
        p,
    );
    let max_flows = s.max_flows.unwrap_or(DEFAULT_MAX_FLOWS);
    if !(1..=MAX_FLOWS).contains(&max_flows) {
        p.add(
            join(path, "max_flows"),
            format!("{max_flows} is out of range: 1 to {MAX_FLOWS}"),
        );
    }
    let Some(pool) = &s.pool else {
        p.add(join(path, "pool"), "missing: a udp listener needs `pool`");
        return None;
    };
    check_pool(pool, join(path, "pool"), cx.known, p);
    Some(ListenerKind::Udp(UdpSpec {
        pool: pool.clone(),
        filters,
        session_timeout,
        max_flows: max_flows.clamp(1, MAX_FLOWS),
    }))
}

/// Records a problem for each udp-only key given on an http or tcp listener.
pub(super) fn not_on_streams(path: &str, s: &ListenerSection, p: &mut Problems) {
    for (key, given) in [
        ("session_timeout", s.session_timeout.is_some()),
        ("max_flows", s.max_flows.is_some()),
    ] {
        if given {
            p.add(join(path, key), "is for udp listeners only");
        }
    }
}

/// A pool behind a UDP listener can send only a v2 PROXY header: v1 has no datagram form.
pub(super) fn pools_fit(listeners: &[ListenerSpec], pools: &[PoolSpec], p: &mut Problems) {
    for l in listeners {
        let ListenerKind::Udp(udp) = &l.kind else {
            continue;
        };
        let v1 = pools
            .iter()
            .any(|pool| pool.name == udp.pool && pool.proxy_protocol == Some(ProxyVersion::V1));
        if v1 {
            p.add(
                format!("pools.{}.proxy_protocol", udp.pool),
                format!(
                    "v1 has no form for datagrams, and listeners.{} (udp) uses this pool: use v2",
                    l.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{validate::validate, ListenerKind, Probe};
    use crate::filter::Registry;
    use std::path::Path;
    use std::time::Duration;

    fn check(yaml: &str) -> Result<crate::config::Config, Vec<(String, String)>> {
        validate(Path::new("lb.yaml"), yaml, &Registry::with_builtins()).map_err(|e| {
            e.problems()
                .iter()
                .map(|p| (p.path.clone(), p.message.clone()))
                .collect()
        })
    }

    const POOL: &str = "pools:\n  dns:\n    backends: [127.0.0.1:53]\n";

    #[test]
    fn a_udp_listener_with_defaults_and_with_every_key() {
        let c = check(&format!(
            "{POOL}listeners:\n  d: {{protocol: udp, bind: 127.0.0.1:5353, pool: dns}}\n  \
             e: {{protocol: udp, bind: 127.0.0.1:5354, pool: dns, session_timeout: 2s, \
             max_flows: 10, filters: [{{allow: [10.0.0.0/8]}}]}}\n"
        ))
        .unwrap();
        let ListenerKind::Udp(d) = &c.listeners[0].kind else {
            panic!("a udp listener")
        };
        assert_eq!(d.session_timeout, Duration::from_secs(30));
        assert_eq!(d.max_flows, super::DEFAULT_MAX_FLOWS);
        let ListenerKind::Udp(e) = &c.listeners[1].kind else {
            panic!("a udp listener")
        };
        assert_eq!(
            (e.session_timeout, e.max_flows),
            (Duration::from_secs(2), 10)
        );
        assert_eq!(e.filters.len(), 1);
    }

    #[test]
    fn keys_of_other_protocols_are_refused_with_their_path() {
        let problems = check(&format!(
            "{POOL}listeners:\n  d: {{protocol: udp, bind: 127.0.0.1:5353, pool: dns, \
             busy_poll: 10us, max_connections: 5, max_flows: 0, session_timeout: soon, \
             filters: [{{redirect: {{to: /x}}}}]}}\n  \
             t: {{protocol: tcp, bind: 127.0.0.1:5354, pool: dns, session_timeout: 1s}}\n  \
             n: {{protocol: udp, bind: 127.0.0.1:5355}}\n"
        ))
        .unwrap_err();
        for (path, words) in [
            ("listeners.d.busy_poll", "tcp listeners"),
            ("listeners.d.max_connections", "use `max_flows`"),
            ("listeners.d.max_flows", "out of range"),
            ("listeners.d.session_timeout", "not a duration"),
            ("listeners.d.filters[0].redirect", "HTTP routes only"),
            ("listeners.t.session_timeout", "udp listeners only"),
            ("listeners.n.pool", "needs `pool`"),
        ] {
            assert!(
                problems.iter().any(|(p, m)| p == path && m.contains(words)),
                "{path}: {words} not in {problems:#?}"
            );
        }
    }

    #[test]
    fn tcp_and_udp_may_share_an_address_two_udp_may_not() {
        let both = format!(
            "{POOL}listeners:\n  t: {{protocol: tcp, bind: 127.0.0.1:53, pool: dns}}\n  \
             u: {{protocol: udp, bind: 127.0.0.1:53, pool: dns}}\n"
        );
        assert!(check(&both).is_ok());
        let problems = check(&format!(
            "{both}  v: {{protocol: udp, bind: 0.0.0.0:53, pool: dns}}\n"
        ))
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].1.contains("already used by listeners.u"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_udp_health_check_takes_send_and_expect_only() {
        let c = check(
            "pools:\n  dns:\n    backends: [127.0.0.1:53]\n    \
             health_check: {type: udp, send: ping, expect: pong}\n\
             listeners:\n  d: {protocol: udp, bind: 127.0.0.1:5353, pool: dns}\n",
        )
        .unwrap();
        let probe = &c.pools[0].health_check.as_ref().unwrap().probe;
        assert_eq!(
            probe,
            &Probe::Udp {
                send: b"ping".to_vec(),
                expect: Some(b"pong".to_vec())
            }
        );
        let problems = check(
            "pools:\n  dns:\n    backends: [127.0.0.1:53]\n    \
             health_check: {type: udp, path: /x}\n  \
             web:\n    backends: [127.0.0.1:80]\n    health_check: {type: http, expect: ok}\n\
             listeners:\n  d: {protocol: udp, bind: 127.0.0.1:5353, pool: dns}\n",
        )
        .unwrap_err();
        for (path, words) in [
            ("pools.dns.health_check.path", "`type: http`"),
            ("pools.web.health_check.expect", "`type: udp`"),
        ] {
            assert!(
                problems.iter().any(|(p, m)| p == path && m.contains(words)),
                "{path}: {words} not in {problems:#?}"
            );
        }
    }
}
