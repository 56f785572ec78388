//! Explanations for TCP listeners (`tcp://HOST:PORT`): which route, pool, connection
//! filters and (for `consistent_hash`) backend a connection would get, and why every
//! route before it did not match.
//!
//! The routes are walked by `TcpRouteTable::explain`, whose conditions are the walk
//! `TcpRouteTable::find` (the proxy's path) runs; the connection filters run as in the
//! proxy (except `rate_limit`, so an explanation never spends a client's budget), and
//! the backend is picked by the pool's own selection with the client address as key.
//! A listener with one `pool` has no named route (as in the access log): the answer
//! names its pool and no route.

use super::{Explanation, RouteTried};
use crate::config::{FilterSpec, TcpRouteSpec};
use crate::filter::{Context, Decision, Hooks};
use crate::observability::explain::ExplainQuery;
use crate::proxy::tcp::route_name;
use crate::routing::key::ip_key;
use crate::routing::tcp::TcpRouteTable;
use crate::upstream::Pool;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A TCP listener's routes, for explanations.
pub(super) struct TcpListener {
    name: String,
    ports: Vec<u16>,
    filters: Vec<FilterSpec>,
    routes: TcpRouteTable<TcpRoute>,
}

struct TcpRoute {
    /// `LISTENER[i]`; `None` for a listener with `pool`.
    name: Option<String>,
    pool: Option<Arc<Pool>>,
}

/// Whether `url` asks about a TCP listener.
pub(super) fn is_tcp(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("tcp://"))
}

impl TcpListener {
    /// From a TCP listener's settings.
    pub(super) fn new(
        name: &str,
        binds: &[SocketAddr],
        routes: &[TcpRouteSpec],
        filters: &[FilterSpec],
        pools: &BTreeMap<String, Arc<Pool>>,
    ) -> Self {
        // Named as the proxy names them.
        let routed = crate::config::tcp_routes_named(routes);
        let table = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let route = TcpRoute {
                    name: routed.then(|| route_name(name, i).to_string()),
                    pool: pools.get(&r.pool).cloned(),
                };
                (r.matcher.clone(), route)
            })
            .collect();
        TcpListener {
            name: name.to_string(),
            ports: binds.iter().map(SocketAddr::port).collect(),
            filters: filters.to_vec(),
            routes: TcpRouteTable::new(table),
        }
    }

    /// Whether it is bound on `port`.
    pub(super) fn on_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }

    /// Its name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

/// Explains the connection `q` (a `tcp://` URL) over `listeners`; `http` names the
/// HTTP listener bound on a port, for a clearer error.
pub(super) async fn explain(
    listeners: &[TcpListener],
    http: impl Fn(u16) -> Option<String>,
    q: &ExplainQuery,
    from: IpAddr,
) -> Result<Explanation, String> {
    let uri: http::Uri = q
        .url
        .parse()
        .map_err(|e| format!("`{}` is not a URL: {e}", q.url))?;
    let listener = match uri.port_u16() {
        Some(port) => {
            listeners
                .iter()
                .find(|l| l.on_port(port))
                .ok_or_else(|| match http(port) {
                    Some(name) => {
                        format!("port {port} is the http listener {name}'s: ask with METHOD URL")
                    }
                    None => format!("no tcp listener is bound on port {port}"),
                })?
        }
        None => listeners
            .first()
            .ok_or_else(|| "the config has no tcp listener".to_string())?,
    };
    let sni = server_name(q, &uri);
    let tried = listener.routes.explain(Some(from), sni);
    let mut out = Explanation {
        listener: listener.name.clone(),
        route: None,
        pool: None,
        status: None,
        filters: Vec::new(),
        backend: None,
        routes: tried
            .iter()
            .filter_map(|t| {
                Some(RouteTried {
                    route: listener.routes.get(t.index)?.name.clone()?,
                    matched: t.failed.is_none(),
                    failed: t.failed,
                })
            })
            .collect(),
    };
    let chosen = tried.last().filter(|t| t.failed.is_none());
    let Some(route) = chosen.and_then(|t| listener.routes.get(t.index)) else {
        // The access log's status for a connection closed for want of a route.
        out.status = Some(404);
        return Ok(out);
    };
    out.route = route.name.clone();
    out.pool = route.pool.as_ref().map(|p| p.name().to_string());
    out.filters = listener.filters.iter().map(|f| f.name.clone()).collect();
    out.status = admit(listener, route, from).await;
    if out.status.is_none() {
        match &route.pool {
            Some(pool) if pool.uses_key() => match pool.attempt().next(&ip_key(Some(from))) {
                Ok(addr) => out.backend = Some(addr.to_string()),
                Err(give_up) => out.status = Some(give_up.status()),
            },
            Some(_) => {}
            None => out.status = Some(503),
        }
    }
    Ok(out)
}

/// The ClientHello's server name: `sni` when given (empty: none), else the URL's host
/// when it is a name, as a TLS client sends it (never an IP address).
fn server_name<'a>(q: &'a ExplainQuery, uri: &'a http::Uri) -> Option<&'a str> {
    match q.sni.as_deref() {
        Some("") => None,
        Some(name) => Some(name),
        None => uri.host().filter(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_err()
        }),
    }
}

/// Runs the listener's connection filters in order, as the proxy does (but not
/// `rate_limit`); 403 when one refuses, as the access log records it.
async fn admit(listener: &TcpListener, route: &TcpRoute, from: IpAddr) -> Option<u16> {
    let pool = route.pool.as_ref().map_or("", |p| p.name());
    let mut state = http::Extensions::new();
    for f in &listener.filters {
        if f.name == "rate_limit" || !f.filter.hooks().contains(Hooks::CONNECTION) {
            continue;
        }
        let mut ctx = Context::new(
            &listener.name,
            route.name.as_deref(),
            pool,
            Some(SocketAddr::new(from, 0)),
            false,
            &mut state,
        );
        match f.filter.connection(&mut ctx).await {
            Ok(Decision::Continue) => {}
            Ok(Decision::Respond(_)) | Err(_) => return Some(403),
        }
    }
    None
}
