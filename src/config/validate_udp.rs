//! Validation of a `udp` listener: its pool, the filters run when a flow starts,
//! `session_timeout` and `max_flows`; and the refusal of those two keys elsewhere.

use super::file::ListenerSection;
use super::problems::{join, Problems};
use super::validate_listener::{filters, Context};
use super::values::{check_pool, duration};
use super::{ListenerKind, UdpSpec};
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
