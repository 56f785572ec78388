//! Builds the Pingora services of a config: each pool once (with its health-check
//! service), one proxy service per listener sharing those pools, and the admin
//! service. Observability handles are resolved here, once.

use super::ServerError;
use crate::config::{Config, ListenerKind, ListenerSpec, RouteSpec};
use crate::filter::FilterChain;
use crate::observability::access_log::AccessLog;
use crate::observability::admin::Admin;
use crate::observability::metrics::Metrics;
use crate::observability::status::{ListenerInfo, ListenerStatus, RouteStatus, Status};
use crate::proxy::accept::{HeadTimeouts, Limit, Stack};
use crate::proxy::http::{HttpProxy, RouteTarget};
use crate::proxy::tcp::TcpProxy;
use crate::routing::RouteTable;
use crate::upstream::Pool;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use pingora_core::services::ServiceWithDependents;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

type Services = Vec<Box<dyn ServiceWithDependents>>;

/// Everything a listener needs from the shared parts.
struct Shared {
    pools: BTreeMap<String, Arc<Pool>>,
    grace_period: std::time::Duration,
    metrics: Arc<Metrics>,
    access_log: Option<Arc<AccessLog>>,
}

/// All services of `config`, and the access log (to flush at exit).
pub(super) fn build(
    config: Config,
    conf: &Arc<ServerConf>,
) -> Result<(Services, Option<Arc<AccessLog>>), ServerError> {
    let mut services: Services = Vec::new();
    // Nothing can read metrics without the admin endpoint: then they are not recorded.
    let metrics = Arc::new(Metrics::new(config.admin.is_some()));
    metrics.set_config_loaded(unix_now());
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
    };
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
    let limit = l
        .max_connections
        .map(|max| Limit::new(max, shared.metrics.connections_refused(&l.name)));
    match l.kind {
        ListenerKind::Http {
            tls,
            routes,
            head,
            coalesce,
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
            };
            let status = ListenerStatus::Http {
                info,
                metrics: proxy.metrics.clone(),
                no_route: proxy.no_route.clone(),
                routes: route_status,
            };
            let mut app = pingora_proxy::HttpProxy::new(proxy, conf.clone());
            app.handle_init_modules();
            let timeouts = HeadTimeouts {
                request_header: head.request_header_timeout,
                keepalive: head.keepalive_timeout,
                counters: shared.metrics.head_timeouts(&l.name),
            };
            let stack = Stack::http(tls, coalesce, timeouts).with_limit(limit);
            Ok((serve(&stack, service_name, app, &l.binds, &l.name)?, status))
        }
        ListenerKind::Tcp {
            pool,
            filters,
            busy_poll,
        } => {
            let app = TcpProxy {
                listener: name.clone(),
                pool: shared.pools[&pool].clone(),
                filters: FilterChain::new(filters.iter().map(|f| f.filter.clone())),
                metrics: shared.metrics.tcp(&name, &pool),
                access_log: shared.access_log.clone(),
                grace_period: shared.grace_period,
                busy_poll,
            };
            let status = ListenerStatus::Tcp {
                info,
                pool,
                filters: filters.into_iter().map(|f| f.name).collect(),
                metrics: app.metrics.clone(),
            };
            Ok((
                serve(
                    &Stack::tcp().with_limit(limit),
                    service_name,
                    app,
                    &l.binds,
                    &l.name,
                )?,
                status,
            ))
        }
    }
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
    A: pingora_core::apps::ServerApp + Send + Sync + 'static,
{
    stack
        .service(name, app, binds)
        .map_err(|e| ServerError::Tls {
            listener: listener.to_string(),
            reason: e.to_string(),
        })
}
