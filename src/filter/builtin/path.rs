//! `strip_prefix` and `rewrite_path`: change the path the backend sees. The query
//! string is kept as it is.

use crate::filter::settings::Pattern;
use crate::filter::{Context, Decision, Filter, Hooks};
use async_trait::async_trait;
use pingora_error::{ErrorType, OrErr, Result};
use pingora_http::RequestHeader;
use serde::Deserialize;

/// Replaces the path of `req`, keeping its query (and authority, if any).
fn set_path(req: &mut RequestHeader, path: &str) -> Result<()> {
    let mut pq = String::with_capacity(path.len() + 1 + req.uri.query().map_or(0, str::len));
    if !path.starts_with('/') {
        pq.push('/');
    }
    pq.push_str(path);
    if let Some(q) = req.uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .or_err(ErrorType::InvalidHTTPHeader, "rewritten path is not valid")?,
    );
    let uri = http::Uri::from_parts(parts)
        .or_err(ErrorType::InvalidHTTPHeader, "rewritten URI is not valid")?;
    req.set_uri(uri);
    Ok(())
}

/// `strip_prefix: /api` — `/api/users` reaches the backend as `/users`, `/api` as `/`.
/// The prefix is a plain string prefix, as `path_prefix` is: `/api` also strips the
/// front of `/apis` (→ `/s`), `/api/` leaves `/apis` and `/api` alone.
pub(crate) struct StripPrefix(String);

impl StripPrefix {
    /// Builds from the prefix.
    pub(crate) fn new(prefix: String) -> Result<Self, String> {
        if !prefix.starts_with('/') {
            return Err(format!("`{prefix}` must start with `/`"));
        }
        Ok(Self(prefix))
    }
}

#[async_trait]
impl Filter for StripPrefix {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<Decision> {
        if let Some(rest) = req.uri.path().strip_prefix(self.0.as_str()) {
            let rest = rest.to_string();
            set_path(req, &rest)?;
        }
        Ok(Decision::Continue)
    }
}

/// Settings of `rewrite_path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewriteSettings {
    /// Applied to the path.
    regex: Pattern,
    /// The replacement; `$1`, `${name}` refer to capture groups.
    replace: String,
}

/// `rewrite_path: {regex: "^/v1/(.*)", replace: "/api/$1"}` — the first match is replaced.
pub(crate) struct RewritePath(RewriteSettings);

impl RewritePath {
    /// Builds from the settings.
    pub(crate) fn new(s: RewriteSettings) -> Result<Self, String> {
        Ok(Self(s))
    }
}

#[async_trait]
impl Filter for RewritePath {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<Decision> {
        let path = req.uri.path();
        if self.0.regex.0.is_match(path) {
            let new = self
                .0
                .regex
                .0
                .replace(path, self.0.replace.as_str())
                .into_owned();
            set_path(req, &new)?;
        }
        Ok(Decision::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    fn path_after(name: &str, settings: &str, uri: &str) -> String {
        let f = build(name, settings).unwrap();
        let mut req = request("GET", uri, &[]);
        let _ = run_request(f.as_ref(), &mut req, "127.0.0.1:1");
        req.uri.to_string()
    }

    #[test]
    fn strip_prefix_keeps_query_and_root() {
        assert_eq!(
            path_after("strip_prefix", "/api", "/api/users?x=1"),
            "/users?x=1"
        );
        assert_eq!(path_after("strip_prefix", "/api/", "/api/users"), "/users");
        assert_eq!(path_after("strip_prefix", "/api", "/api"), "/");
        assert_eq!(path_after("strip_prefix", "/api", "/other"), "/other");
        // A plain string prefix, like `path_prefix`.
        assert_eq!(path_after("strip_prefix", "/api", "/apis"), "/s");
        assert_eq!(path_after("strip_prefix", "/api/", "/apis"), "/apis");
        assert_eq!(path_after("strip_prefix", "/api/", "/api"), "/api");
        assert!(build("strip_prefix", "api").is_err());
    }

    #[test]
    fn rewrite_path_uses_captures() {
        let s = "{regex: '^/v1/(.*)$', replace: '/api/$1'}";
        assert_eq!(
            path_after("rewrite_path", s, "/v1/users?q=2"),
            "/api/users?q=2"
        );
        assert_eq!(path_after("rewrite_path", s, "/v2/users"), "/v2/users");
    }

    #[test]
    fn bad_regex_is_reported_at_its_key() {
        let err = build("rewrite_path", "{regex: '(', replace: x}")
            .err()
            .unwrap();
        assert_eq!(err.path, "regex");
        assert!(err.message.contains("invalid regex"), "{err:?}");
        let err = build("rewrite_path", "{regex: a, replace: b, extra: 1}")
            .err()
            .unwrap();
        assert!(err.message.contains("unknown field"), "{err:?}");
    }
}
