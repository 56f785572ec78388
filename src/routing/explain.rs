//! Why a request took the route it took: [`Matcher::first_failure`] is the matcher's
//! one walk over its conditions, which [`Matcher::matches`] (the proxy's path) also
//! runs, so an explanation cannot disagree with routing; [`RouteTable::explain`] walks
//! the table as [`RouteTable::find`] does, recording each route tried.

use super::{Matcher, RouteTable};
use http::request::Parts;

/// One route tried for a request, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tried {
    /// The route's index.
    pub(crate) index: usize,
    /// The first condition that did not hold (`host`, `path`, `path_prefix`,
    /// `path_regex`, `method`, `headers`, `query`, `cookie`); `None`: it matched.
    pub(crate) failed: Option<&'static str>,
}

impl Matcher {
    /// The first condition that does not hold for `req`, in the order matching checks
    /// them (cheap ones first, the regex last); `None` when every one holds.
    pub(crate) fn first_failure(&self, req: &Parts) -> Option<&'static str> {
        let path = req.uri.path();
        if !self.method.as_ref().is_none_or(|m| m.matches(&req.method)) {
            return Some("method");
        }
        if !self.host.as_ref().is_none_or(|h| h.matches(req)) {
            return Some("host");
        }
        if let Some(failed) = self.path.as_ref().and_then(|p| p.failure(path)) {
            return Some(failed);
        }
        if !self
            .headers
            .as_ref()
            .is_none_or(|h| h.matches(&req.headers))
        {
            return Some("headers");
        }
        if !self
            .query
            .as_ref()
            .is_none_or(|q| q.matches(req.uri.query()))
        {
            return Some("query");
        }
        if !self.cookie.as_ref().is_none_or(|c| c.matches(&req.headers)) {
            return Some("cookie");
        }
        if !self.path_regex.as_ref().is_none_or(|r| r.is_match(path)) {
            return Some("path_regex");
        }
        None
    }
}

impl<T> RouteTable<T> {
    /// Every route tried for `req`, in order, up to and including the one that matched
    /// (the same one [`RouteTable::find`] returns), with why each earlier one did not.
    pub(crate) fn explain(&self, req: &Parts) -> Vec<Tried> {
        let mut tried = Vec::new();
        for (index, (matcher, _)) in self.routes.iter().enumerate() {
            let failed = matcher.first_failure(req);
            tried.push(Tried { index, failed });
            if failed.is_none() {
                break;
            }
        }
        tried
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::MatchSpec;

    fn table(specs: &[&str]) -> RouteTable<usize> {
        RouteTable::new(
            specs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let spec: MatchSpec = serde_yaml::from_str(s).unwrap();
                    (Matcher::compile(&spec).unwrap(), i)
                })
                .collect(),
        )
    }

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn names_the_first_failing_condition_of_each_route_tried() {
        let t = table(&[
            "{method: POST, host: a.example}",
            "{host: api.example, path_prefix: /v1/}",
            "{path: /exact}",
            "{headers: {x-canary: '1'}}",
            "{query: {v: '2'}}",
            "{cookie: {beta: 'yes'}}",
            "{path_regex: '^/z'}",
            "{}",
        ]);
        let r = req("GET", "/v2/users", &[("host", "api.example")]);
        let failed: Vec<_> = t.explain(&r).iter().map(|t| t.failed).collect();
        assert_eq!(
            failed,
            [
                Some("method"),
                Some("path_prefix"),
                Some("path"),
                Some("headers"),
                Some("query"),
                Some("cookie"),
                Some("path_regex"),
                None
            ]
        );
        assert_eq!(t.find(&r).map(|(i, _)| i), Some(7));
        let r = req("GET", "/x", &[("host", "b.example")]);
        let tried = t.explain(&r);
        assert_eq!(tried[0].failed, Some("method"));
        let r = req("POST", "/", &[("host", "other")]);
        assert_eq!(t.explain(&r)[0].failed, Some("host"));
    }

    #[test]
    fn stops_at_the_route_find_returns() {
        let t = table(&["{path_prefix: /a}", "{path_prefix: /a/b}", "{}"]);
        let r = req("GET", "/a/b", &[]);
        assert_eq!(
            t.explain(&r),
            [Tried {
                index: 0,
                failed: None
            }]
        );
        let t = table(&["{path_prefix: /a}"]);
        assert_eq!(
            t.explain(&req("GET", "/b", &[])),
            [Tried {
                index: 0,
                failed: Some("path_prefix")
            }]
        );
    }
}
