//! Builds the Pingora services of a config: one proxy service per listener sharing
//! the pools, and the admin service. Each listener's app (routes, pools, filters) is
//! built apart from its service (sockets, accept stack), so a reload can build a new
//! app and put it in place (`live.rs`). Observability handles are resolved here.

use super::ServerError;
use crate::config::{ListenerKind, ListenerSpec, RouteSpec, TcpRouteSpec};
use crate::filter::FilterChain;
use crate::observability::access_log::AccessLog;
use crate::observability::metrics::Metrics;
use crate::observability::reload::ConfigState;
use crate::observability::status::{
    ListenerInfo, ListenerStatus, RouteStatus, Status, TcpRouteStatus,
};
use crate::proxy::accept::{HeadTimeouts, Limit, ProxyProtocol, Stack};
use crate::proxy::http::{HttpProxy, RouteTarget};
use crate::proxy::live::{slot, LiveHttp, LiveTcp, Slot};
use crate::proxy::tcp::{route_name, TcpProxy, TcpRoute};
use crate::proxy::tls::{Certificates, ListenerTls};
use crate::proxy::udp::{UdpProxy, UdpService};
use crate::routing::RouteTable;
use crate::upstream::{PeerTemplate, Pool};
use crate::vocab::{HeadRules, TlsSpec};
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::ServiceWithDependents;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

mod udp;

/// Pingora services.
pub(super) type Services = Vec<Box<dyn ServiceWithDependents>>;

/// Everything a listener needs from the shared parts.
pub(super) struct Shared {
    pub(super) pools: BTreeMap<String, Arc<Pool>>,
    pub(super) grace_period: std::time::Duration,
    pub(super) metrics: Arc<Metrics>,
    pub(super) access_log: Option<Arc<AccessLog>>,
    pub(super) phases: tokio::sync::broadcast::Receiver<pingora_core::server::ExecutionPhase>,
}

/// A listener's app: what serves its requests, connections or datagrams, and what a
/// reload replaces.
pub(super) enum App {
    /// An HTTP listener's.
    Http(HttpProxy),
    /// A TCP listener's.
    Tcp(TcpProxy),
    /// A UDP listener's.
    Udp(UdpProxy),
}

/// What only a new process changes about a listener: its sockets and accept stack.
pub(super) struct Accept {
    name: String,
    binds: Vec<std::net::SocketAddr>,
    limit: Option<Limit>,
    proxy: Option<ProxyProtocol>,
    kind: AcceptKind,
}

enum AcceptKind {
    Http {
        tls: Option<TlsSpec>,
        head: HeadRules,
        coalesce: bool,
        http2: bool,
        timeouts: HeadTimeouts,
    },
    Tcp,
    Udp,
}

impl Accept {
    /// The TLS settings of an HTTP listener that terminates TLS.
    pub(super) fn tls(&self) -> Option<&TlsSpec> {
        match &self.kind {
            AcceptKind::Http { tls, .. } => tls.as_ref(),
            _ => None,
        }
    }
}

/// Where a reload puts a running listener's new app (and certificates).
pub(super) enum Handle {
    /// An HTTP listener.
    Http {
        /// Its app.
        slot: Slot<HttpProxy>,
        /// Its certificates, with TLS.
        certs: Option<Arc<Certificates>>,
    },
    /// A TCP listener.
    Tcp(Slot<TcpProxy>),
    /// A UDP listener.
    Udp(Slot<UdpProxy>),
}

impl Handle {
    /// Whether `app` is of this listener's kind.
    pub(super) fn accepts(&self, app: &App) -> bool {
        matches!(
            (self, app),
            (Handle::Http { .. }, App::Http(_))
                | (Handle::Tcp(_), App::Tcp(_))
                | (Handle::Udp(_), App::Udp(_))
        )
    }

    /// Puts `app` in place; `false` (nothing changed) when it is another kind.
    pub(super) fn swap(&self, app: App) -> bool {
        match (self, app) {
            (Handle::Http { slot, .. }, App::Http(a)) => slot.store(Arc::new(a)),
            (Handle::Tcp(slot), App::Tcp(a)) => slot.store(Arc::new(a)),
            (Handle::Udp(slot), App::Udp(a)) => slot.store(Arc::new(a)),
            _ => return false,
        }
        true
    }
}

/// Opens the access log `spec` names.
pub(super) fn open_access_log(
    spec: &crate::config::AccessLogSpec,
    metrics: &Metrics,
) -> Result<Arc<AccessLog>, ServerError> {
    AccessLog::open(
        &spec.target,
        spec.format,
        metrics.access_log_dropped().clone(),
    )
    .map(Arc::new)
    .map_err(|e| ServerError::AccessLog(e.to_string()))
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The status document of `listeners` over `shared`'s pools.
pub(super) fn status(
    config_file: &std::path::Path,
    started_at: SystemTime,
    config: Arc<ConfigState>,
    listeners: Vec<ListenerStatus>,
    shared: &Shared,
) -> Status {
    Status {
        config_file: config_file.display().to_string(),
        started_at,
        config,
        listeners,
        pools: shared.pools.values().cloned().collect(),
    }
}

/// A listener's app and status entry, and what its service is built from.
pub(super) fn app(l: ListenerSpec, shared: &Shared) -> (App, ListenerStatus, Accept) {
    let name: Arc<str> = Arc::from(l.name.as_str());
    let info = ListenerInfo {
        name: l.name.clone(),
        binds: l.binds.iter().map(ToString::to_string).collect(),
        tls: matches!(&l.kind, ListenerKind::Http { tls: Some(_), .. }),
    };
    let refused = shared.metrics.proxy_protocol_refused(&l.name);
    let limit = l
        .max_connections
        .map(|max| Limit::new(max, shared.metrics.connections_refused(&l.name)));
    let mut accept = Accept {
        name: l.name.clone(),
        binds: l.binds,
        limit,
        proxy: None,
        kind: AcceptKind::Udp,
    };
    let trusted = l.proxy_protocol;
    match l.kind {
        ListenerKind::Http {
            tls,
            routes,
            head,
            coalesce,
            http2,
            healthz,
        } => {
            let mut route_status = Vec::new();
            let table = RouteTable::new(
                routes
                    .into_iter()
                    .map(|r| route(&name, r, shared, &mut route_status))
                    .collect(),
            );
            let proxy = HttpProxy {
                listener: name.clone(),
                tls: tls.is_some(),
                routes: table,
                metrics: shared.metrics.listener(&name),
                no_route: shared.metrics.route(&name, "-", "-"),
                access_log: shared.access_log.clone(),
                head_rules: head,
                healthz,
            };
            let status = ListenerStatus::Http {
                info,
                metrics: proxy.metrics.clone(),
                no_route: proxy.no_route.clone(),
                routes: route_status,
            };
            accept.proxy =
                trusted.map(|t| ProxyProtocol::new(t, head.request_header_timeout, refused));
            accept.kind = AcceptKind::Http {
                tls,
                head,
                coalesce,
                http2,
                timeouts: HeadTimeouts {
                    request_header: head.request_header_timeout,
                    keepalive: head.keepalive_timeout,
                    counters: shared.metrics.head_timeouts(&l.name),
                },
            };
            (App::Http(proxy), status, accept)
        }
        ListenerKind::Tcp {
            routes,
            peek_timeout,
            filters,
            busy_poll,
        } => {
            let (routes, pools) = tcp_routes(&name, routes, shared);
            let app = TcpProxy {
                listener: name.clone(),
                routes,
                peek_timeout,
                no_route: shared.metrics.tcp(&name, "-"),
                filters: FilterChain::new(filters.iter().map(|f| f.filter.clone())),
                access_log: shared.access_log.clone(),
                grace_period: shared.grace_period,
                busy_poll,
            };
            let status = tcp_status(&app, info, pools, filters);
            accept.proxy = trusted.map(|t| ProxyProtocol::new(t, peek_timeout, refused));
            accept.kind = AcceptKind::Tcp;
            (App::Tcp(app), status, accept)
        }
        ListenerKind::Udp(spec) => {
            let (app, status) = udp::app(name, info, spec, shared);
            (App::Udp(app), status, accept)
        }
    }
}

/// A TCP listener's status entry.
fn tcp_status(
    app: &TcpProxy,
    info: ListenerInfo,
    pools: String,
    filters: Vec<crate::config::FilterSpec>,
) -> ListenerStatus {
    let first = app.routes.routes().next().map(|(_, r)| r.metrics.clone());
    ListenerStatus::Tcp {
        info,
        pool: pools,
        filters: filters.into_iter().map(|f| f.name).collect(),
        metrics: first.unwrap_or_else(|| app.no_route.clone()),
        routes: app
            .routes
            .routes()
            .filter_map(|(m, r)| {
                Some(TcpRouteStatus {
                    name: r.name.as_deref()?.to_string(),
                    matches: m.describe(),
                    pool: r.pool.name().to_string(),
                    connections: r.taken.clone()?,
                })
            })
            .collect(),
        no_route: app.no_route.connections.clone(),
    }
}

/// A listener's service, running `app` behind the accept stack `accept` describes,
/// and the handle through which reloads replace the app.
pub(super) fn serve_listener(
    app: App,
    accept: Accept,
    shared: &Shared,
    conf: &Arc<ServerConf>,
) -> Result<(Box<dyn ServiceWithDependents>, Handle), ServerError> {
    let service_name = format!("listener {}", accept.name);
    let tls_error = |reason: String| ServerError::Tls {
        listener: accept.name.clone(),
        reason,
    };
    match (app, accept.kind) {
        (
            App::Http(proxy),
            AcceptKind::Http {
                tls,
                head,
                coalesce,
                http2,
                timeouts,
            },
        ) => {
            let (tls, certs) = match tls {
                None => (None, None),
                Some(spec) => {
                    let certs = Certificates::new(Certificates::read(&spec).map_err(tls_error)?);
                    let tls = ListenerTls {
                        spec,
                        certs: certs.clone(),
                    };
                    (Some(tls), Some(certs))
                }
            };
            let plain = tls.is_none();
            let slot = slot(proxy);
            let live = LiveHttp { slot: slot.clone() };
            let mut app = pingora_proxy::HttpProxy::new(live, conf.clone());
            app.handle_init_modules();
            app.server_options = Some(super::http2::server_options(
                http2 && plain,
                head.keepalive_timeout,
            ));
            let stack = Stack::http(tls, coalesce, timeouts)
                .with_http2(http2)
                .with_limit(accept.limit)
                .with_proxy_protocol(accept.proxy);
            let service = serve(&stack, service_name, app, &accept.binds, &accept.name)?;
            Ok((service, Handle::Http { slot, certs }))
        }
        (App::Tcp(proxy), _) => {
            let slot = slot(proxy);
            let stack = Stack::tcp()
                .with_limit(accept.limit)
                .with_proxy_protocol(accept.proxy);
            let live = LiveTcp { slot: slot.clone() };
            let service = serve(&stack, service_name, live, &accept.binds, &accept.name)?;
            Ok((service, Handle::Tcp(slot)))
        }
        (App::Udp(proxy), _) => {
            let slot = slot(proxy);
            let service = UdpService::new(slot.clone(), accept.binds, shared.phases.resubscribe());
            Ok((Box::new(service), Handle::Udp(slot)))
        }
        (App::Http(_), _) => Err(tls_error("an HTTP app without HTTP settings".into())),
    }
}

/// A TCP listener's route table, and its pools' names for the status page.
fn tcp_routes(
    listener: &str,
    routes: Vec<TcpRouteSpec>,
    shared: &Shared,
) -> (crate::routing::tcp::TcpRouteTable<TcpRoute>, String) {
    let routed = crate::config::tcp_routes_named(&routes);
    let pools = routes
        .iter()
        .map(|r| r.pool.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let table = routes
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let target = TcpRoute {
                name: routed.then(|| route_name(listener, i)),
                pool: shared.pools[&r.pool].clone(),
                metrics: shared.metrics.tcp(listener, &r.pool),
                taken: routed.then(|| {
                    prometheus::IntCounter::new("route_connections", "status page only")
                        .expect("a valid counter name")
                }),
            };
            (r.matcher, target)
        })
        .collect();
    (crate::routing::tcp::TcpRouteTable::new(table), pools)
}

/// A route's runtime target, recording its status entry.
fn route(
    listener: &str,
    r: RouteSpec,
    shared: &Shared,
    status: &mut Vec<RouteStatus>,
) -> (crate::routing::Matcher, RouteTarget) {
    let metrics = shared
        .metrics
        .route(listener, &r.name, r.pool.as_deref().unwrap_or("-"));
    status.push(RouteStatus {
        name: r.name.clone(),
        matches: r.matcher.describe(),
        pool: r.pool.clone(),
        filters: r.filters.iter().map(|f| f.name.clone()).collect(),
        metrics: metrics.clone(),
    });
    let target = RouteTarget {
        peers: r
            .pool
            .as_ref()
            .map(|p| Arc::new(PeerTemplate::new(&shared.pools[p].spec.link))),
        name: Arc::from(r.name.as_str()),
        pool: r.pool.map(|p| shared.pools[&p].clone()),
        filters: FilterChain::new(r.filters.into_iter().map(|f| f.filter)),
        metrics,
    };
    (r.matcher, target)
}

/// A listener's service: `app` behind `stack` on every address in `binds`.
fn serve<A>(
    stack: &Stack,
    name: String,
    app: A,
    binds: &[std::net::SocketAddr],
    listener: &str,
) -> Result<Box<dyn ServiceWithDependents>, ServerError>
where
    A: crate::proxy::accept::Served,
{
    stack
        .service(name, app, binds)
        .map_err(|e| ServerError::Tls {
            listener: listener.to_string(),
            reason: e.to_string(),
        })
}
