//! Builds the Pingora services of a config: each pool once (with its health-check
//! service), one proxy service per listener sharing those pools, and the admin
//! service. Observability handles are resolved here, once.

use super::ServerError;
use crate::config::{Config, ListenerKind, ListenerSpec, RouteSpec, TcpRouteSpec};
use crate::filter::FilterChain;
use crate::observability::access_log::AccessLog;
use crate::observability::admin::Admin;
use crate::observability::metrics::Metrics;
use crate::observability::status::{
    ListenerInfo, ListenerStatus, RouteStatus, Status, TcpRouteStatus,
};
use crate::proxy::accept::{HeadTimeouts, Limit, ProxyProtocol, Stack};
use crate::proxy::http::{HttpProxy, RouteTarget};
use crate::proxy::tcp::{route_name, TcpProxy, TcpRoute};
use crate::routing::RouteTable;
use crate::upstream::{PeerTemplate, Pool};
use pingora_core::apps::http_app::HttpServer;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use pingora_core::services::ServiceWithDependents;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

mod udp;

type Services = Vec<Box<dyn ServiceWithDependents>>;

/// Everything a listener needs from the shared parts.
struct Shared {
    pools: BTreeMap<String, Arc<Pool>>,
    grace_period: std::time::Duration,
    metrics: Arc<Metrics>,
    access_log: Option<Arc<AccessLog>>,
    phases: tokio::sync::broadcast::Receiver<pingora_core::server::ExecutionPhase>,
}

/// All services of `config`, and the access log (to flush at exit).
pub(super) fn build(
    config: Config,
    conf: &Arc<ServerConf>,
    phases: tokio::sync::broadcast::Receiver<pingora_core::server::ExecutionPhase>,
) -> Result<(Services, Option<Arc<AccessLog>>), ServerError> {
    let mut services: Services = Vec::new();
    // Nothing can read metrics without the admin endpoint: then they are not recorded.
    let metrics = Arc::new(Metrics::new(config.admin.is_some()));
    metrics.set_config_loaded(unix_now());
    metrics.register_collectors(crate::filter::builtin::store_collectors());
    let access_log = match &config.access_log {
        None => None,
        Some(spec) => Some(Arc::new(
            AccessLog::open(
                &spec.target,
                spec.format,
                metrics.access_log_dropped().clone(),
            )
            .map_err(|e| ServerError::AccessLog(e.to_string()))?,
        )),
    };
    let mut pools = BTreeMap::new();
    for spec in config.pools {
        let name = spec.name.clone();
        let (pool, background) = Pool::build(spec);
        services.extend(background);
        pools.insert(name, pool);
    }
    let shared = Shared {
        pools,
        grace_period: config.server.grace_period,
        metrics,
        access_log,
        phases,
    };
    let explainer = Arc::new(super::explain::Explainer::new(
        &config.listeners,
        &shared.pools,
    ));
    let mut statuses = Vec::new();
    for l in config.listeners {
        let (service, status) = listener(l, &shared, conf)?;
        services.push(service);
        statuses.push(status);
    }
    if let Some(addr) = config.admin {
        let status = Status {
            config_file: config.file.display().to_string(),
            started_at: SystemTime::now(),
            listeners: statuses,
            pools: shared.pools.values().cloned().collect(),
        };
        let admin = Admin {
            metrics: shared.metrics.clone(),
            status: Arc::new(status),
            explain: explainer,
        };
        let mut service = Service::new("admin".to_string(), HttpServer::new_app(admin));
        service.add_tcp(&addr.to_string());
        services.push(Box::new(service));
    }
    Ok((services, shared.access_log))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One listener's service and its status entry.
fn listener(
    l: ListenerSpec,
    shared: &Shared,
    conf: &Arc<ServerConf>,
) -> Result<(Box<dyn ServiceWithDependents>, ListenerStatus), ServerError> {
    let service_name = format!("listener {}", l.name);
    let name: Arc<str> = Arc::from(l.name.as_str());
    let info = ListenerInfo {
        name: l.name.clone(),
        binds: l.binds.iter().map(ToString::to_string).collect(),
        tls: matches!(&l.kind, ListenerKind::Http { tls: Some(_), .. }),
    };
    let trusted = l.proxy_protocol;
    let refused = shared.metrics.proxy_protocol_refused(&l.name);
    let limit = l
        .max_connections
        .map(|max| Limit::new(max, shared.metrics.connections_refused(&l.name)));
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
            let mut app = pingora_proxy::HttpProxy::new(proxy, conf.clone());
            app.handle_init_modules();
            app.server_options = Some(super::http2::server_options(
                http2 && tls.is_none(),
                head.keepalive_timeout,
            ));
            let timeouts = HeadTimeouts {
                request_header: head.request_header_timeout,
                keepalive: head.keepalive_timeout,
                counters: shared.metrics.head_timeouts(&l.name),
            };
            let proxy =
                trusted.map(|t| ProxyProtocol::new(t, head.request_header_timeout, refused));
            let stack = Stack::http(tls, coalesce, timeouts)
                .with_http2(http2)
                .with_limit(limit)
                .with_proxy_protocol(proxy);
            Ok((serve(&stack, service_name, app, &l.binds, &l.name)?, status))
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
            let first = app.routes.routes().next().map(|(_, r)| r.metrics.clone());
            let status = ListenerStatus::Tcp {
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
            };
            let proxy = trusted.map(|t| ProxyProtocol::new(t, peek_timeout, refused));
            Ok((
                serve(
                    &Stack::tcp().with_limit(limit).with_proxy_protocol(proxy),
                    service_name,
                    app,
                    &l.binds,
                    &l.name,
                )?,
                status,
            ))
        }
        ListenerKind::Udp(spec) => Ok(udp::listener(name, info, l.binds, spec, shared)),
    }
}

/// A TCP listener's route table, and its pools' names for the status page.
fn tcp_routes(
    listener: &str,
    routes: Vec<TcpRouteSpec>,
    shared: &Shared,
) -> (crate::routing::tcp::TcpRouteTable<TcpRoute>, String) {
    let routed = routes.len() > 1 || routes.iter().any(|r| !r.matcher.describe().is_empty());
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
