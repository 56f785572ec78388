//! `path:`, `path_prefix:` and `path_regex:` — conditions on the request's path.
//!
//! The path is the request URI's path exactly as received: without the query
//! (`?…`), not percent-decoded and not normalized, so `/a/../b` and `/%61` are
//! compared as written. `path` must equal it, `path_prefix` is a plain string prefix
//! (`/api` also matches `/apis`; write `/api/` to stop at a segment) and `path_regex`
//! is searched anywhere in it unless anchored with `^`/`$`. Plain conditions are kept
//! apart from the regex so that the matcher can run the regex last.

use regex::Regex;

use super::{push_term, MatchError};

/// Compiled `path` and `path_prefix` conditions.
#[derive(Debug, Clone)]
pub(super) struct PathMatch {
    exact: Option<String>,
    prefix: Option<String>,
}

impl PathMatch {
    /// Compiles `path` and `path_prefix`; `None` when neither is given or one is bad.
    pub(super) fn compile(
        exact: Option<&str>,
        prefix: Option<&str>,
        errors: &mut Vec<MatchError>,
    ) -> Option<Self> {
        let before = errors.len();
        if let Some(exact) = exact {
            check("path", exact, errors);
        }
        if let Some(prefix) = prefix {
            check("path_prefix", prefix, errors);
        }
        if errors.len() > before || (exact.is_none() && prefix.is_none()) {
            return None;
        }
        if let (Some(exact), Some(prefix)) = (exact, prefix) {
            if !exact.starts_with(prefix) {
                errors.push(MatchError::new(
                    "path",
                    format!(
                        "{exact:?} does not start with the `path_prefix` {prefix:?}, \
                         so this route can never match"
                    ),
                ));
                return None;
            }
        }
        Some(PathMatch {
            exact: exact.map(str::to_string),
            prefix: prefix.map(str::to_string),
        })
    }

    /// The `path` condition, if any.
    pub(super) fn exact(&self) -> Option<&str> {
        self.exact.as_deref()
    }

    /// True when `path` satisfies both plain conditions.
    #[cfg(test)]
    pub(super) fn matches(&self, path: &str) -> bool {
        self.failure(path).is_none()
    }

    /// The condition `path` fails (`path`, else `path_prefix`), if any.
    pub(super) fn failure(&self, path: &str) -> Option<&'static str> {
        if self.exact.as_deref().is_some_and(|exact| path != exact) {
            return Some("path");
        }
        self.prefix
            .as_deref()
            .is_some_and(|prefix| !path.starts_with(prefix))
            .then_some("path_prefix")
    }

    /// Appends `path=…` and `path_prefix=…` to a description.
    pub(super) fn describe(&self, out: &mut String) {
        if let Some(exact) = &self.exact {
            push_term(out, "path", exact);
        }
        if let Some(prefix) = &self.prefix {
            push_term(out, "path_prefix", prefix);
        }
    }
}

/// Pushes what would stop `value` from ever equalling (a prefix of) a request path.
fn check(key: &str, value: &str, errors: &mut Vec<MatchError>) {
    let problem = if !value.starts_with('/') {
        Some(format!("{value:?} must start with '/'"))
    } else if value.contains('?') {
        Some(format!(
            "{value:?} contains '?', but the path never includes the query; \
             match parameters with `query:`"
        ))
    } else if value.contains('#') {
        Some(format!(
            "{value:?} contains '#', but a fragment is never sent to the server"
        ))
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(format!(
            "{value:?} contains whitespace or control characters, which never appear \
             in a request path; percent-encode them (a space is %20)"
        ))
    } else {
        None
    };
    if let Some(message) = problem {
        errors.push(MatchError::new(key, message));
    }
}

/// A compiled `path_regex` condition.
#[derive(Debug, Clone)]
pub(super) struct PathRegex(Regex);

impl PathRegex {
    /// Compiles the regex, or pushes the regex crate's explanation to `errors`.
    pub(super) fn compile(raw: &str, errors: &mut Vec<MatchError>) -> Option<Self> {
        match Regex::new(raw) {
            Ok(regex) => Some(PathRegex(regex)),
            Err(e) => {
                errors.push(MatchError::new(
                    "path_regex",
                    format!("invalid regex {raw:?}: {e}"),
                ));
                None
            }
        }
    }

    /// True when the regex matches somewhere in `path`.
    pub(super) fn is_match(&self, path: &str) -> bool {
        self.0.is_match(path)
    }

    /// Appends `path_regex=…` to a description.
    pub(super) fn describe(&self, out: &mut String) {
        push_term(out, "path_regex", self.0.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::{compile_errors, matcher, request};

    fn plain(exact: Option<&str>, prefix: Option<&str>) -> PathMatch {
        let mut errors = Vec::new();
        let m = PathMatch::compile(exact, prefix, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        m.unwrap()
    }

    fn regex(raw: &str) -> PathRegex {
        let mut errors = Vec::new();
        let m = PathRegex::compile(raw, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        m.unwrap()
    }

    #[test]
    fn exact_path_must_be_equal() {
        let m = plain(Some("/exact"), None);
        assert!(m.matches("/exact"));
        assert!(!m.matches("/exact/"));
        assert!(!m.matches("/exactly"));
        assert!(!m.matches("/EXACT"));
        assert!(!m.matches("/"));
    }

    #[test]
    fn prefix_is_a_plain_string_prefix() {
        let m = plain(None, Some("/api/"));
        assert!(m.matches("/api/"));
        assert!(m.matches("/api/users/1"));
        assert!(!m.matches("/api"));
        assert!(!m.matches("/apis/"));
        assert!(!m.matches("/v1/api/"));
        let m = plain(None, Some("/api"));
        assert!(m.matches("/apis"));
        assert!(plain(None, Some("/")).matches("/anything"));
    }

    #[test]
    fn exact_and_prefix_both_hold() {
        let m = plain(Some("/api/x"), Some("/api/"));
        assert!(m.matches("/api/x"));
        assert!(!m.matches("/api/y"));
    }

    #[test]
    fn nothing_given_compiles_to_nothing() {
        let mut errors = Vec::new();
        assert!(PathMatch::compile(None, None, &mut errors).is_none());
        assert!(errors.is_empty());
    }

    #[test]
    fn regex_searches_the_path() {
        let m = regex("^/v[0-9]+/");
        assert!(m.is_match("/v1/users"));
        assert!(m.is_match("/v42/"));
        assert!(!m.is_match("/v/"));
        assert!(!m.is_match("/api/v1/"));
        let unanchored = regex("[0-9]+$");
        assert!(unanchored.is_match("/users/17"));
        assert!(!unanchored.is_match("/users/17/edit"));
    }

    #[test]
    fn the_query_is_not_part_of_the_path() {
        let m = matcher("path: /search");
        assert!(m.matches(&request("GET", "/search?q=1", &[])));
        assert!(m.matches(&request("GET", "http://h.example/search?q=1", &[])));
        assert!(!m.matches(&request("GET", "/search/?q=1", &[])));
        let m = matcher("path_regex: '=1$'");
        assert!(!m.matches(&request("GET", "/search?q=1", &[])));
        let m = matcher("path_regex: 'search$'");
        assert!(m.matches(&request("GET", "/search?q=1", &[])));
    }

    #[test]
    fn the_path_is_compared_as_received() {
        let m = matcher("path_prefix: /api/");
        assert!(!m.matches(&request("GET", "/%61pi/x", &[])));
        assert!(m.matches(&request("GET", "/api/../admin", &[])));
    }

    #[test]
    fn paths_must_start_with_a_slash() {
        let errors = compile_errors("{path: exact, path_prefix: api/}");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].key, "path");
        assert!(errors[0].message.contains("must start with '/'"));
        assert_eq!(errors[1].key, "path_prefix");
        assert!(errors[1].message.contains("must start with '/'"));
        assert_eq!(compile_errors("path: ''")[0].key, "path");
    }

    #[test]
    fn paths_that_can_never_appear_are_errors() {
        assert!(compile_errors("path: /a?b=1")[0].message.contains("query"));
        assert!(compile_errors("path_prefix: /a#top")[0]
            .message
            .contains("fragment"));
        assert!(compile_errors("path: /a b")[0].message.contains("%20"));
    }

    #[test]
    fn contradictory_conditions_are_errors() {
        let errors = compile_errors("{path: /a, path_prefix: /b/}");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "path");
        assert!(errors[0].message.contains("never match"));
        let errors = compile_errors("{path: /a, path_regex: '^/b'}");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "path_regex");
        matcher("{path: /b/1, path_prefix: /b/, path_regex: '^/b/[0-9]$'}");
    }

    #[test]
    fn bad_regex_is_an_error() {
        let errors = compile_errors("path_regex: '^/v[0-9+/'");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "path_regex");
        assert!(errors[0].message.contains("invalid regex"));
        assert!(errors[0].message.contains("unclosed character class"));
    }

    #[test]
    fn describe_lists_each_condition() {
        assert_eq!(
            matcher("{path: /a/b, path_prefix: /a/, path_regex: '^/a'}").describe(),
            "path=/a/b path_prefix=/a/ path_regex=^/a"
        );
    }
}
