//! The request path: the L7 `ProxyHttp` implementation ([`http`]) and the L4 TCP
//! proxy ([`tcp`]), both thin layers over routing and the shared pools.

pub(crate) use first_request::FirstRequest;

mod busy_poll;
mod coalesce;
mod fd;
mod first_request;
pub mod http;
mod http_log;
mod relay;
mod splice;
pub mod tcp;
