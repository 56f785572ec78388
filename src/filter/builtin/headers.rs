//! `set_request_headers`, `remove_request_headers`, `set_response_headers`,
//! `remove_response_headers`: replace or remove headers on either side.
//!
//! Request headers are changed on the copy sent to the backend, after Tioga's own
//! `X-Forwarded-*` headers, so a route can override those too.

use crate::filter::{Context, Filter, Hooks};
use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora_error::Result;
use pingora_http::{IntoCaseHeaderName, RequestHeader, ResponseHeader};
use std::collections::BTreeMap;

/// Header name → value pairs, checked at load.
type Pairs = Vec<(HeaderName, HeaderValue)>;

fn pairs(map: BTreeMap<String, crate::vocab::Text>) -> Result<Pairs, String> {
    map.into_iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("`{k}` is not a valid header name"))?;
            let value = HeaderValue::from_str(&v.0)
                .map_err(|_| format!("header {k}: `{}` is not a valid header value", v.0))?;
            Ok((name, value))
        })
        .collect()
}

fn names(list: Vec<String>) -> Result<Vec<HeaderName>, String> {
    list.into_iter()
        .map(|k| {
            HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("`{k}` is not a valid header name"))
        })
        .collect()
}

/// Sets headers on a request or response head. Pingora keeps each header's name as
/// written on the wire beside the map; the setters make that form once, at load,
/// instead of from a `HeaderName` on every insert, which saves an allocation and a
/// copy per header per request. (Its type cannot be named outside `pingora_http`, hence
/// the closure.)
type Setter<H> = Box<dyn Fn(&mut H) -> Result<()> + Send + Sync>;

/// A request or response head.
trait Head: 'static {
    fn insert(&mut self, name: impl IntoCaseHeaderName, value: HeaderValue) -> Result<()>;
}

impl Head for RequestHeader {
    fn insert(&mut self, name: impl IntoCaseHeaderName, value: HeaderValue) -> Result<()> {
        self.insert_header(name, value)
    }
}

impl Head for ResponseHeader {
    fn insert(&mut self, name: impl IntoCaseHeaderName, value: HeaderValue) -> Result<()> {
        self.insert_header(name, value)
    }
}

fn setter<H: Head>(map: BTreeMap<String, crate::vocab::Text>) -> Result<Setter<H>, String> {
    let pairs: Vec<_> = pairs(map)?
        .into_iter()
        .map(|(k, v)| (k.into_case_header_name(), v))
        .collect();
    Ok(Box::new(move |head: &mut H| {
        for (k, v) in &pairs {
            head.insert(k.clone(), v.clone())?;
        }
        Ok(())
    }))
}

/// `set_request_headers: {name: value}`.
pub(crate) struct SetRequestHeaders(Setter<RequestHeader>);

impl SetRequestHeaders {
    /// Builds from the settings map.
    pub(crate) fn new(map: BTreeMap<String, crate::vocab::Text>) -> Result<Self, String> {
        setter(map).map(Self)
    }
}

#[async_trait]
impl Filter for SetRequestHeaders {
    fn hooks(&self) -> Hooks {
        Hooks::UPSTREAM_REQUEST
    }

    fn upstream_request(&self, req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<()> {
        (self.0)(req)
    }
}

/// `remove_request_headers: [name, …]`.
pub(crate) struct RemoveRequestHeaders(Vec<HeaderName>);

impl RemoveRequestHeaders {
    /// Builds from the list of names.
    pub(crate) fn new(list: Vec<String>) -> Result<Self, String> {
        names(list).map(Self)
    }
}

#[async_trait]
impl Filter for RemoveRequestHeaders {
    fn hooks(&self) -> Hooks {
        Hooks::UPSTREAM_REQUEST
    }

    fn upstream_request(&self, req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<()> {
        for k in &self.0 {
            req.remove_header(k);
        }
        Ok(())
    }
}

/// `set_response_headers: {name: value}`.
pub(crate) struct SetResponseHeaders(Setter<ResponseHeader>);

impl SetResponseHeaders {
    /// Builds from the settings map.
    pub(crate) fn new(map: BTreeMap<String, crate::vocab::Text>) -> Result<Self, String> {
        setter(map).map(Self)
    }
}

#[async_trait]
impl Filter for SetResponseHeaders {
    fn hooks(&self) -> Hooks {
        Hooks::RESPONSE
    }

    fn response(&self, resp: &mut ResponseHeader, _ctx: &mut Context<'_>) -> Result<()> {
        (self.0)(resp)
    }
}

/// `remove_response_headers: [name, …]`.
pub(crate) struct RemoveResponseHeaders(Vec<HeaderName>);

impl RemoveResponseHeaders {
    /// Builds from the list of names.
    pub(crate) fn new(list: Vec<String>) -> Result<Self, String> {
        names(list).map(Self)
    }
}

#[async_trait]
impl Filter for RemoveResponseHeaders {
    fn hooks(&self) -> Hooks {
        Hooks::RESPONSE
    }

    fn response(&self, resp: &mut ResponseHeader, _ctx: &mut Context<'_>) -> Result<()> {
        for k in &self.0 {
            resp.remove_header(k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::filter::Context;

    #[test]
    fn set_and_remove_request_headers() {
        let set = build("set_request_headers", "{x-env: prod, x-n: 2}").unwrap();
        let remove = build("remove_request_headers", "[x-secret]").unwrap();
        let mut req = request("GET", "/", &[("x-env", "dev"), ("x-secret", "s")]);
        let mut state = http::Extensions::new();
        let mut ctx = Context::new("l", None, "p", None, false, &mut state);
        set.upstream_request(&mut req, &mut ctx).unwrap();
        remove.upstream_request(&mut req, &mut ctx).unwrap();
        assert_eq!(req.headers.get_all("x-env").iter().count(), 1);
        assert_eq!(req.headers["x-env"], "prod");
        assert_eq!(req.headers["x-n"], "2");
        assert!(req.headers.get("x-secret").is_none());
    }

    #[test]
    fn bad_names_are_config_errors() {
        let err = build("set_request_headers", "{\"bad name\": x}")
            .err()
            .unwrap();
        assert!(err.message.contains("not a valid header name"), "{err:?}");
        assert!(build("remove_response_headers", "{a: b}").is_err());
    }

    #[test]
    fn set_and_remove_response_headers() {
        let set = build("set_response_headers", "{x-frame-options: DENY}").unwrap();
        let remove = build("remove_response_headers", "[server]").unwrap();
        let mut resp = pingora_http::ResponseHeader::build(200, None).unwrap();
        resp.insert_header("server", "backend").unwrap();
        let mut state = http::Extensions::new();
        let mut ctx = Context::new("l", None, "p", None, false, &mut state);
        set.response(&mut resp, &mut ctx).unwrap();
        remove.response(&mut resp, &mut ctx).unwrap();
        assert_eq!(resp.headers["x-frame-options"], "DENY");
        assert!(resp.headers.get("server").is_none());
    }
}
