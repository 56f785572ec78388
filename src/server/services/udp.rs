//! A UDP listener's app and status entry, from its validated settings.

use super::Shared;
use crate::config::ProxyVersion;
use crate::config::UdpSpec;
use crate::filter::FilterChain;
use crate::observability::status::{ListenerInfo, ListenerStatus};
use crate::proxy::udp::{UdpProxy, UdpSettings};
use std::sync::Arc;

/// The app of UDP listener `name`, and its status entry.
pub(super) fn app(
    name: Arc<str>,
    info: ListenerInfo,
    spec: UdpSpec,
    shared: &Shared,
) -> (UdpProxy, ListenerStatus) {
    let pool = &shared.pools[&spec.pool];
    let proxy = UdpProxy {
        name: name.clone(),
        pool: pool.clone(),
        filters: FilterChain::new(spec.filters.iter().map(|f| f.filter.clone())),
        spec: UdpSettings {
            session_timeout: spec.session_timeout,
            max_flows: spec.max_flows,
            proxy_protocol: pool.spec.proxy_protocol == Some(ProxyVersion::V2),
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
    (proxy, status)
}
