//! The route table: which route of an HTTP listener serves a request.
//!
//! A route's `match:` block is compiled once, when the config is loaded, into a
//! [`Matcher`]: method names are uppercased, hosts lowercased, header names parsed and
//! regexes built, and every problem is returned at once as [`MatchError`]s for the
//! config validator to report with its key path. Matching is then a pure function of
//! the request head that does not allocate: the cheap conditions (method, host, plain
//! path) run first and the path regex last. A [`RouteTable`] keeps the routes in
//! config order and [`RouteTable::find`] returns the first one that matches.
//!
//! Each kind of condition lives in its own file: `host.rs`, `path.rs` (`path`,
//! `path_prefix`, `path_regex`), `method.rs`, `header.rs`, `query.rs` and `cookie.rs`.

use std::fmt;

use http::request::Parts;

mod spec;
pub(crate) use spec::MatchSpec;

mod cookie;
pub(crate) use cookie::cookie_value;
mod explain;
pub(crate) use query::query_value;
mod header;
mod host;
pub(crate) mod key;
mod method;
mod normalize;
pub(crate) use normalize::normalize_path;
mod path;
mod query;
pub(crate) mod tcp;
#[cfg(test)]
mod tests;

use cookie::CookieMatch;
use header::HeaderMatch;
use host::HostMatch;
use method::MethodMatch;
use path::{PathMatch, PathRegex};
use query::QueryMatch;

/// A problem in one `match:` key, for the config validator to report with its path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MatchError {
    /// The key below `match:`, such as `path_regex`, `method[1]` or `headers.x-a`.
    pub(crate) key: String,
    /// What is wrong, and where possible how to fix it.
    pub(crate) message: String,
}

impl MatchError {
    /// A problem with `key`.
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        MatchError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for MatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for MatchError {}

/// The compiled conditions of one route's `match:` block.
///
/// Every given condition must hold; a matcher without conditions (no `match:` block,
/// or [`Matcher::default`]) matches every request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    method: Option<MethodMatch>,
    host: Option<HostMatch>,
    path: Option<PathMatch>,
    headers: Option<HeaderMatch>,
    query: Option<QueryMatch>,
    cookie: Option<CookieMatch>,
    path_regex: Option<PathRegex>,
}

impl Matcher {
    /// Compiles a match block; returns EVERY problem (bad regex, empty method, invalid
    /// header name, host with a port or a bad wildcard like `a.*.com`, `path` or
    /// `path_prefix` not starting with `/`, conditions that can never hold together…).
    pub(crate) fn compile(spec: &MatchSpec) -> Result<Matcher, Vec<MatchError>> {
        let mut errors = Vec::new();
        let matcher = Matcher {
            method: spec
                .method
                .as_ref()
                .and_then(|m| MethodMatch::compile(m, &mut errors)),
            host: spec
                .host
                .as_deref()
                .and_then(|h| HostMatch::compile(h, &mut errors)),
            path: PathMatch::compile(
                spec.path.as_deref(),
                spec.path_prefix.as_deref(),
                &mut errors,
            ),
            headers: spec
                .headers
                .as_ref()
                .and_then(|h| HeaderMatch::compile(h, &mut errors)),
            query: spec
                .query
                .as_ref()
                .and_then(|q| QueryMatch::compile(q, &mut errors)),
            cookie: spec
                .cookie
                .as_ref()
                .and_then(|c| CookieMatch::compile(c, &mut errors)),
            path_regex: spec
                .path_regex
                .as_deref()
                .and_then(|r| PathRegex::compile(r, &mut errors)),
        };
        if let (Some(exact), Some(regex)) = (
            matcher.path.as_ref().and_then(PathMatch::exact),
            &matcher.path_regex,
        ) {
            if !regex.is_match(exact) {
                errors.push(MatchError::new(
                    "path_regex",
                    format!("does not match the `path` {exact:?}, so this route can never match"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(matcher)
        } else {
            Err(errors)
        }
    }

    /// True when every given condition holds. No match block = matches all. The one
    /// walk over the conditions is [`Matcher::first_failure`], which `explain` reports.
    pub(crate) fn matches(&self, req: &Parts) -> bool {
        self.first_failure(req).is_none()
    }

    /// True when the matcher has no conditions and so matches every request.
    #[cfg(test)]
    pub(crate) fn is_catch_all(&self) -> bool {
        self.method.is_none()
            && self.host.is_none()
            && self.path.is_none()
            && self.headers.is_none()
            && self.query.is_none()
            && self.cookie.is_none()
            && self.path_regex.is_none()
    }

    /// A short human description like `host=api.example.com path_prefix=/api/` for
    /// logs and the status page; `any` when the matcher has no conditions.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(host) = &self.host {
            host.describe(&mut out);
        }
        if let Some(method) = &self.method {
            method.describe(&mut out);
        }
        if let Some(path) = &self.path {
            path.describe(&mut out);
        }
        if let Some(regex) = &self.path_regex {
            regex.describe(&mut out);
        }
        if let Some(headers) = &self.headers {
            headers.describe(&mut out);
        }
        if let Some(query) = &self.query {
            query.describe(&mut out);
        }
        if let Some(cookie) = &self.cookie {
            cookie.describe(&mut out);
        }
        if out.is_empty() {
            out.push_str("any");
        }
        out
    }
}

/// Appends `key=value` to a description, space-separated, quoting values that would
/// otherwise be ambiguous (empty, or containing whitespace, quotes or control bytes).
fn push_term(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(key);
    out.push('=');
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"');
    if plain {
        out.push_str(value);
    } else {
        out.push_str(&format!("{value:?}"));
    }
}

/// The routes of one HTTP listener, in config order; the first matching route wins.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable<T> {
    routes: Vec<(Matcher, T)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { routes: Vec::new() }
    }
}

impl<T> RouteTable<T> {
    /// A table of `routes`, tried in the given order.
    pub(crate) fn new(routes: Vec<(Matcher, T)>) -> Self {
        RouteTable { routes }
    }

    /// First matching route wins, in order. Returns its index and value.
    pub(crate) fn find(&self, req: &Parts) -> Option<(usize, &T)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, (matcher, _))| matcher.matches(req))
            .map(|(index, (_, value))| (index, value))
    }

    /// True when the table has no routes (and so matches no request).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes with their matchers, in order.
    #[cfg(test)]
    pub(crate) fn routes(&self) -> impl Iterator<Item = (&Matcher, &T)> {
        self.routes.iter().map(|(matcher, value)| (matcher, value))
    }

    /// The value of the route at `index`, as returned by [`RouteTable::find`].
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.routes.get(index).map(|(_, value)| value)
    }
}
