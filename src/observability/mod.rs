//! Operations: Prometheus metrics ([`metrics`]), the access log ([`access_log`]), and
//! the admin endpoint ([`admin`]) serving `/metrics`, `/status` (JSON, from
//! [`status`]) and `/` (a self-updating HTML status page).

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod explain;
mod log_line;
pub(crate) mod metrics;
mod pool_metrics;
pub(crate) mod process_log;
pub(crate) mod reload;
pub(crate) mod status;
pub(crate) mod udp_metrics;

pub(crate) use access_log::AccessLog;
