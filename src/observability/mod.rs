//! Operations: Prometheus metrics ([`metrics`]), the access log ([`access_log`]), and
//! the admin endpoint ([`admin`]) serving `/metrics`, `/status` (JSON, from
//! [`status`]) and `/` (a self-updating HTML status page).

pub mod access_log;
pub mod admin;
mod log_line;
pub mod metrics;
pub mod status;

pub use access_log::AccessLog;
pub use metrics::Metrics;
