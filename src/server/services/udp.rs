//! A UDP listener's service and status entry, from its validated settings.

use super::Shared;
use crate::config::ProxyVersion;
use crate::config::UdpSpec;
use crate::filter::FilterChain;
use crate::observability::status::{ListenerInfo, ListenerStatus};
use crate::proxy::udp::{UdpProxy, UdpService, UdpSettings};
use pingora_core::services::ServiceWithDependents;
use std::net::SocketAddr;
use std::sync::Arc;

/// The service of UDP listener `name`, and its status entry.
pub(super) fn listener(
    name: Arc<str>,
    info: ListenerInfo,
    binds: Vec<SocketAddr>,
    spec: UdpSpec,
    shared: &Shared,
) -> (Box<dyn ServiceWithDependents>, ListenerStatus) {
    let proxy = UdpProxy {
        name: name.clone(),
        pool: shared.pools[&spec.pool].clone(),
        filters: FilterChain::new(spec.filters.iter().map(|f| f.filter.clone())),
        spec: UdpSettings {
            session_timeout: spec.session_timeout,
            max_flows: spec.max_flows,
            proxy_protocol: shared.pools[&spec.pool].spec.proxy_protocol == Some(ProxyVersion::V2),
        },
        metrics: shared.metrics.udp(&name, &spec.pool),
        access_log: shared.access_log.clone(),
        grace_period: shared.grace_period,
    };
    let status = ListenerStatus::Udp {
        info,
        pool: spec.pool,
        filters: spec.filters.into_iter().map(|f| f.name).collect(),
        metrics: proxy.metrics.clone(),
    };
    let service = UdpService::new(proxy, binds, shared.phases.resubscribe());
    (Box::new(service), status)
}
