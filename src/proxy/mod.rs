//! The request path: the L7 `ProxyHttp` implementation ([`http`]) and the L4 TCP
//! proxy ([`tcp`]), both thin layers over routing and the shared pools, each behind its
//! listener's accept stack (`accept`: buffering, first-request guard, coalescing).

pub(crate) mod accept;
mod busy_poll;
mod fd;
pub mod http;
mod http_log;
mod relay;
mod splice;
pub mod tcp;
