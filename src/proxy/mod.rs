//! The request path: the L7 `ProxyHttp` implementation ([`http`]) and the L4 TCP
//! proxy ([`tcp`]), both thin layers over routing and the shared pools, each behind its
//! listener's accept stack (`accept`: buffering, first-request guard, coalescing); and
//! the UDP listeners ([`udp`]), a service of their own over the same pools.

#[cfg(feature = "fuzzing")]
pub(crate) use head::check as check_head;

pub(crate) mod accept;
mod busy_poll;
mod direction;
mod fd;
mod forwarded;
mod grpc;
mod h2_retained;
pub(crate) mod head;
mod healthz;
pub(crate) mod http;
mod http_log;
mod http_retry;
mod http_sticky;
pub(crate) mod live;
mod relay;
pub(crate) mod sni;
mod splice;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod udp;
mod upgrade;
