//! Start-up: the services of the first config, and the live state reloads change.

use super::live::Live;
use super::services::{app, open_access_log, serve_listener, unix_now, Services, Shared};
use super::ServerError;
use crate::config::Config;
use crate::observability::admin::Admin;
use crate::observability::metrics::Metrics;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Builds the services of `config`'s listeners and admin endpoint, and the live state
/// that reloads change; the pools' background tasks (health checks, DNS discovery) are
/// started by [`Live`], not by Pingora, so a reload can start and stop them.
pub(super) fn build(
    config: Config,
    text: String,
    registry: Arc<crate::filter::Registry>,
    conf: &Arc<ServerConf>,
    phases: tokio::sync::broadcast::Receiver<pingora_core::server::ExecutionPhase>,
) -> Result<(Services, Arc<Live>), ServerError> {
    let mut services: Services = Vec::new();
    // Nothing reads metrics without the admin endpoint or a reload guard: then they
    // are not recorded.
    let metrics = Arc::new(Metrics::new(
        config.admin.is_some() || config.reload_guard.is_some(),
    ));
    metrics.set_config_loaded(unix_now());
    metrics.register_collectors(crate::filter::builtin::store_collectors());
    let access_log = match &config.access_log {
        None => None,
        Some(spec) => Some(open_access_log(spec, &metrics)?),
    };
    let live = Live::new(
        &config,
        text,
        registry,
        metrics.clone(),
        phases.resubscribe(),
    )
    .map_err(ServerError::Upgrade)?;
    let mut shared = Shared {
        pools: BTreeMap::new(),
        grace_period: config.server.grace_period,
        metrics,
        access_log,
        phases,
    };
    for spec in config.pools {
        shared.pools.insert(spec.name.clone(), live.add_pool(spec));
    }
    let explainer = Arc::new(super::explain::Explainer::new(
        &config.listeners,
        &shared.pools,
    ));
    let mut statuses = Vec::new();
    let mut handles = BTreeMap::new();
    for l in config.listeners {
        let name = l.name.clone();
        let (app, status, accept) = app(l, &shared);
        let (service, handle) = serve_listener(app, accept, &shared, conf)?;
        services.push(service);
        statuses.push(status);
        handles.insert(name, handle);
    }
    let view = live.start(handles, &shared, statuses, explainer, config.admin_token);
    if let Some(addr) = config.admin {
        let admin = Admin {
            metrics: shared.metrics.clone(),
            view,
            reload: Arc::new(live.reloader()),
        };
        let mut service = Service::new("admin".to_string(), HttpServer::new_app(admin));
        service.add_tcp(&addr.to_string());
        services.push(Box::new(service));
    }
    Ok((services, live))
}
