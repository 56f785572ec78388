//! The built-in filters of the contract, each written on the public [`Filter`] trait
//! exactly as a user filter would be.
//!
//! [`Filter`]: super::Filter

mod access;
mod client_cert;
mod headers;
mod path;
mod rate_limit;
mod redirect;
mod redis_store;

use super::Registry;

pub(crate) use redis_store::store_collectors;

/// Registers every built-in filter.
pub(crate) fn register(r: &mut Registry) {
    r.register("set_request_headers", headers::SetRequestHeaders::new);
    r.register("remove_request_headers", headers::RemoveRequestHeaders::new);
    r.register("set_response_headers", headers::SetResponseHeaders::new);
    r.register(
        "remove_response_headers",
        headers::RemoveResponseHeaders::new,
    );
    r.register("strip_prefix", path::StripPrefix::new);
    r.register("rewrite_path", path::RewritePath::new);
    r.register("redirect", redirect::Redirect::new);
    r.register("allow", access::Access::allow);
    r.register("deny", access::Access::deny);
    r.register("rate_limit", rate_limit::RateLimit::new);
    r.register("client_cert_header", client_cert::ClientCertHeader::new);
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builds filters from YAML and runs their hooks without a server.
    use crate::filter::{Context, Decision, Filter, Registry};
    use pingora_http::RequestHeader;
    use std::sync::Arc;

    /// Builds `name` from YAML `settings`.
    pub(crate) fn build(
        name: &str,
        settings: &str,
    ) -> Result<Arc<dyn Filter>, crate::filter::FilterError> {
        let value: serde_yaml::Value = serde_yaml::from_str(settings).unwrap();
        Registry::with_builtins()
            .build(name, &value)
            .expect("a built-in filter")
    }

    /// A request head.
    pub(crate) fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    /// Runs the request hook for a client at `client`.
    pub(crate) fn run_request(f: &dyn Filter, req: &mut RequestHeader, client: &str) -> Decision {
        let mut state = http::Extensions::new();
        let mut ctx = Context::new(
            "l",
            Some("l[0]"),
            "p",
            Some(client.parse().unwrap()),
            false,
            &mut state,
        );
        futures::executor::block_on(f.request(req, &mut ctx)).unwrap()
    }

    /// The status of a decision (0 for Continue).
    pub(crate) fn status(d: &Decision) -> u16 {
        match d {
            Decision::Continue => 0,
            Decision::Respond(r) => r.status.as_u16(),
        }
    }
}
