//! Validation of one listener's protocol-specific part: routes, filters and TLS for
//! HTTP; the pool and connection filters for TCP. Split from `validate` to keep each
//! file to one concern.

use super::file::{ListenerSection, RouteSection};
use super::problems::{join, Problems};
use super::values::{check_pool, duration, duration_or_zero};
use super::{FilterSpec, ListenerKind, RouteSpec};
use crate::filter::{Registry, Scope};
use crate::routing::Matcher;
use serde_yaml::Value;
use std::path::Path;
use std::time::Duration;

/// A TCP listener's `busy_poll` when none is given.
const DEFAULT_BUSY_POLL: &str = "50us";

/// A TCP listener's `peek_timeout` when none is given.
const DEFAULT_PEEK_TIMEOUT: &str = "5s";

/// The longest `busy_poll` accepted: past this, a window mostly burns CPU.
const MAX_BUSY_POLL: Duration = Duration::from_millis(1);

/// What listener validation needs from the rest of the file.
pub(super) struct Context<'a> {
    /// The config file (relative TLS paths may be beside it).
    pub(crate) file: &'a Path,
    /// Names of every configured pool.
    pub(crate) known: &'a [&'a str],
    /// Filters that can be named.
    pub(crate) filters: &'a Registry,
}

/// Validates an `http` listener.
pub(super) fn http(
    cx: &Context,
    path: &str,
    s: &ListenerSection,
    p: &mut Problems,
) -> Option<ListenerKind> {
    if s.pool.is_some() {
        p.add(
            join(path, "pool"),
            "an http listener chooses its pool per route: move `pool` into `routes`",
        );
    }
    if s.filters.is_some() {
        p.add(
            join(path, "filters"),
            "http listeners take filters per route (`routes[i].filters`)",
        );
    }
    if s.busy_poll.is_some() {
        p.add(
            join(path, "busy_poll"),
            "busy_poll is for tcp listeners (it applies to their zero-copy relay)",
        );
    }
    if s.peek_timeout.is_some() {
        p.add(
            join(path, "peek_timeout"),
            "peek_timeout is for tcp listeners (routes by `sni`)",
        );
    }
    let base = cx.file.parent().unwrap_or(Path::new("."));
    let tls = (s.tls.as_ref()).and_then(|t| super::validate_tls::listener(base, path, t, p));
    let routes_path = join(path, "routes");
    let Some(raw_routes) = &s.routes else {
        p.add(
            &routes_path,
            "missing: an http listener needs at least one route",
        );
        return None;
    };
    if raw_routes.is_empty() {
        p.add(&routes_path, "at least one route is required");
    }
    let listener = path.trim_start_matches("listeners.");
    let routes = raw_routes
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            route(
                cx,
                &format!("{listener}[{i}]"),
                &format!("{routes_path}[{i}]"),
                v,
                p,
            )
        })
        .collect();
    let head = super::validate_head::rules(path, s, p);
    Some(ListenerKind::Http {
        tls,
        routes,
        head,
        coalesce: s.coalesce.unwrap_or(true),
        http2: s.http2.unwrap_or(s.tls.is_some()),
        healthz: healthz(path, s, p),
    })
}

fn route(
    cx: &Context,
    name: &str,
    path: &str,
    value: &Value,
    p: &mut Problems,
) -> Option<RouteSpec> {
    let r: RouteSection = p.parse(path, value)?;
    let matcher = match Matcher::compile(&r.matches) {
        Ok(m) => Some(m),
        Err(errors) => {
            for e in errors {
                p.add(join(&join(path, "match"), &e.key), e.message);
            }
            None
        }
    };
    let filters = filters(
        cx,
        r.filters.as_deref().unwrap_or_default(),
        &join(path, "filters"),
        Scope::Http,
        p,
    );
    match &r.pool {
        Some(pool) => check_pool(pool, join(path, "pool"), cx.known, p),
        None if filters.is_empty() => {
            p.add(join(path, "pool"), "missing: a route names the pool that serves it (only a route with filters that answer, like `redirect`, may leave it out)");
        }
        None => {}
    }
    Some(RouteSpec {
        name: name.to_string(),
        matcher: matcher?,
        pool: r.pool,
        filters,
    })
}

/// An http listener's `healthz` path: absolute, no query.
fn healthz(path: &str, s: &ListenerSection, p: &mut Problems) -> Option<String> {
    let h = s.healthz.as_ref()?;
    if !h.starts_with('/') || h.contains(['?', '#', ' ']) {
        p.add(
            join(path, "healthz"),
            format!("`{h}` is not a path: write it like /healthz"),
        );
        return None;
    }
    Some(h.clone())
}

/// Validates a `tcp` listener.
pub(super) fn tcp(
    cx: &Context,
    path: &str,
    s: &ListenerSection,
    p: &mut Problems,
) -> Option<ListenerKind> {
    if s.tls.is_some() {
        p.add(
            join(path, "tls"),
            "TLS termination is for http listeners only",
        );
    }
    super::validate_head::not_on_tcp(path, s, p);
    if s.http2.is_some() {
        p.add(join(path, "http2"), "http2 is for http listeners");
    }
    if s.coalesce.is_some() {
        p.add(
            join(path, "coalesce"),
            "coalesce is for http listeners (it batches their answers)",
        );
    }
    if s.healthz.is_some() {
        p.add(
            join(path, "healthz"),
            "healthz is for http listeners: a TCP health check needs only the port to accept",
        );
    }
    let filters = filters(
        cx,
        s.filters.as_deref().unwrap_or_default(),
        &join(path, "filters"),
        Scope::HttpAndTcp,
        p,
    );
    let peek_timeout = duration(
        s.peek_timeout.as_deref(),
        &join(path, "peek_timeout"),
        DEFAULT_PEEK_TIMEOUT,
        p,
    );
    let routes = super::validate_tcp_routes::routes(cx.known, path, s, p)?;
    let busy_path = join(path, "busy_poll");
    let mut busy_poll = duration_or_zero(s.busy_poll.as_deref(), &busy_path, DEFAULT_BUSY_POLL, p);
    if busy_poll > MAX_BUSY_POLL {
        p.add(
            busy_path,
            format!("{busy_poll:?} is too long: at most 1ms (0s turns busy-polling off)"),
        );
        busy_poll = MAX_BUSY_POLL;
    }
    Some(ListenerKind::Tcp {
        routes,
        peek_timeout,
        filters,
        busy_poll,
    })
}

/// Builds a `filters:` list; each item is a one-key map `NAME: SETTINGS`. On a TCP
/// listener (`needs` = `HttpAndTcp`) only filters with a connection hook are allowed.
pub(super) fn filters(
    cx: &Context,
    list: &[Value],
    path: &str,
    needs: Scope,
    p: &mut Problems,
) -> Vec<FilterSpec> {
    let known = || cx.filters.names().collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for (j, item) in list.iter().enumerate() {
        let at = format!("{path}[{j}]");
        let entry = item
            .as_mapping()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next());
        let Some((Value::String(name), settings)) = entry else {
            p.add(&at, format!("a filter is a one-key map `NAME: SETTINGS`, such as `- strip_prefix: /api` (known filters: {})", known()));
            continue;
        };
        let at = join(&at, name);
        match cx.filters.build(name, settings) {
            None => p.add(&at, format!("unknown filter `{name}` (known: {})", known())),
            Some(Err(e)) => p.add(join(&at, &e.path), e.message),
            Some(Ok(filter))
                if needs == Scope::HttpAndTcp && filter.scope() != Scope::HttpAndTcp =>
            {
                p.add(&at, format!("filter `{name}` works on HTTP routes only with these settings: a tcp listener has no requests, only client addresses"));
            }
            Some(Ok(filter)) => out.push(FilterSpec {
                name: name.clone(),
                filter,
            }),
        }
    }
    out
}

/// `proxy_protocol.trusted`, on http and tcp listeners alike.
pub(super) fn trusted(
    path: &str,
    s: &ListenerSection,
    p: &mut Problems,
) -> Option<Vec<ipnet::IpNet>> {
    let section = s.proxy_protocol.as_ref()?;
    if section.trusted.is_empty() {
        p.add(
            join(&join(path, "proxy_protocol"), "trusted"),
            "the list is empty: give the addresses (or CIDR blocks) of the proxies in front",
        );
    }
    Some(section.trusted.iter().map(|c| c.0).collect())
}
