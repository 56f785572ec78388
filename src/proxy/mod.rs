//! The request path: the L7 `ProxyHttp` implementation ([`http`]) and the L4 TCP
//! proxy ([`tcp`]), both thin layers over routing and the shared pools, each behind its
//! listener's accept stack (`accept`: buffering, first-request guard, coalescing).

#[cfg(feature = "fuzzing")]
pub(crate) use head::check as check_head;

pub(crate) mod accept;
mod busy_poll;
mod direction;
mod fd;
mod head;
pub(crate) mod http;
mod http_log;
mod http_retry;
mod http_sticky;
mod relay;
mod splice;
pub(crate) mod tcp;
