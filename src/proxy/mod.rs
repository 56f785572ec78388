//! The request path: the L7 `ProxyHttp` implementation ([`http`]) and the L4 TCP
//! proxy ([`tcp`]), both thin layers over routing and the shared pools.

pub(crate) use first_request::FirstRequest;
#[cfg(feature = "fuzzing")]
pub(crate) use head::check as check_head;

mod busy_poll;
mod coalesce;
mod first_request;
mod head;
pub(crate) mod http;
mod http_log;
mod splice;
pub(crate) mod tcp;
