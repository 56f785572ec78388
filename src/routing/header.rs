//! `headers:` — request headers with exact values.
//!
//! Header names are case-insensitive (they are parsed, and so lowercased, when the
//! config is loaded); values are compared byte for byte. When a header appears on
//! several lines, any one line with the configured value satisfies the condition.
//! A comma-separated line is one value: `x-a: 1, 2` does not match `x-a: "1"`.

use std::collections::BTreeMap;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{push_term, MatchError};

/// A compiled `headers:` condition: every listed header has its value.
#[derive(Debug, Clone)]
pub(super) struct HeaderMatch(Vec<(HeaderName, HeaderValue)>);

impl HeaderMatch {
    /// Compiles the map, pushing a problem for each bad name or value to `errors`.
    /// An empty map is no condition at all.
    pub(super) fn compile(
        spec: &BTreeMap<String, String>,
        errors: &mut Vec<MatchError>,
    ) -> Option<Self> {
        let before = errors.len();
        let mut pairs = Vec::with_capacity(spec.len());
        for (name, value) in spec {
            let key = format!("headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| MatchError::new(&key, format!("{name:?} is not a valid header name")));
            let value = parse_value(value).map_err(|message| MatchError::new(&key, message));
            match (name, value) {
                (Ok(name), Ok(value)) => pairs.push((name, value)),
                (name, value) => errors.extend(name.err().into_iter().chain(value.err())),
            }
        }
        (errors.len() == before && !pairs.is_empty()).then_some(HeaderMatch(pairs))
    }

    /// True when every configured header has its value on at least one line.
    pub(super) fn matches(&self, headers: &HeaderMap) -> bool {
        self.0
            .iter()
            .all(|(name, value)| headers.get_all(name).iter().any(|have| have == value))
    }

    /// Appends `headers.NAME=VALUE` for each header to a description.
    pub(super) fn describe(&self, out: &mut String) {
        for (name, value) in &self.0 {
            let value = String::from_utf8_lossy(value.as_bytes());
            push_term(out, &format!("headers.{name}"), &value);
        }
    }
}

/// Checks that `value` can arrive in a request as written.
fn parse_value(value: &str) -> Result<HeaderValue, String> {
    if value.trim() != value {
        return Err(format!(
            "{value:?} has leading or trailing whitespace, which HTTP strips from values"
        ));
    }
    HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
        format!("{value:?} is not a valid header value (control characters are not allowed)")
    })
}

#[cfg(test)]
mod tests {
    use crate::routing::tests::{compile_errors, matcher, request};

    #[test]
    fn value_must_be_exact() {
        let m = matcher("headers: {x-canary: '1'}");
        assert!(m.matches(&request("GET", "/", &[("x-canary", "1")])));
        assert!(!m.matches(&request("GET", "/", &[("x-canary", "10")])));
        assert!(!m.matches(&request("GET", "/", &[("x-canary", "")])));
        assert!(!m.matches(&request("GET", "/", &[])));
        assert!(!m.matches(&request("GET", "/", &[("x-canary-2", "1")])));
    }

    #[test]
    fn values_are_case_sensitive() {
        let m = matcher("headers: {x-env: Prod}");
        assert!(m.matches(&request("GET", "/", &[("x-env", "Prod")])));
        assert!(!m.matches(&request("GET", "/", &[("x-env", "prod")])));
    }

    #[test]
    fn names_are_case_insensitive() {
        let m = matcher("headers: {X-Canary: yes}");
        assert!(m.matches(&request("GET", "/", &[("x-canary", "yes")])));
        assert!(m.matches(&request("GET", "/", &[("X-CANARY", "yes")])));
    }

    #[test]
    fn numbers_and_booleans_are_read_as_text() {
        let m = matcher("headers: {x-a: 1, x-b: true}");
        assert!(m.matches(&request("GET", "/", &[("x-a", "1"), ("x-b", "true")])));
    }

    #[test]
    fn any_one_of_several_lines_matches() {
        let m = matcher("headers: {x-a: '2'}");
        let req = request("GET", "/", &[("x-a", "1"), ("x-a", "2"), ("x-a", "3")]);
        assert!(m.matches(&req));
        let req = request("GET", "/", &[("x-a", "1"), ("x-a", "3")]);
        assert!(!m.matches(&req));
    }

    #[test]
    fn a_comma_list_is_one_value() {
        let m = matcher("headers: {x-a: '1'}");
        assert!(!m.matches(&request("GET", "/", &[("x-a", "1, 2")])));
    }

    #[test]
    fn every_header_must_hold() {
        let m = matcher("headers: {x-a: '1', x-b: '2'}");
        assert!(m.matches(&request("GET", "/", &[("x-b", "2"), ("x-a", "1")])));
        assert!(!m.matches(&request("GET", "/", &[("x-a", "1")])));
        assert!(!m.matches(&request("GET", "/", &[("x-a", "1"), ("x-b", "3")])));
    }

    #[test]
    fn an_empty_value_matches_a_present_empty_header() {
        let m = matcher("headers: {x-a: ''}");
        assert!(m.matches(&request("GET", "/", &[("x-a", "")])));
        assert!(!m.matches(&request("GET", "/", &[])));
    }

    #[test]
    fn an_empty_map_matches_everything() {
        let m = matcher("headers: {}");
        assert!(m.is_catch_all());
        assert!(m.matches(&request("GET", "/", &[])));
    }

    #[test]
    fn bad_names_and_values_are_all_reported() {
        let errors = compile_errors(
            "headers: {'x a': '1', 'x-b': \"a\\nb\", 'x-c': ' padded', 'x(d': \"\\t\"}",
        );
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "headers.x a",
                "headers.x(d",
                "headers.x(d",
                "headers.x-b",
                "headers.x-c"
            ]
        );
        assert!(errors[0].message.contains("not a valid header name"));
        assert!(errors[3].message.contains("not a valid header value"));
        assert!(errors[4].message.contains("whitespace"));
        assert!(compile_errors("headers: {'': '1'}")[0]
            .message
            .contains("header name"));
        assert!(compile_errors("headers: {':authority': a}")[0]
            .message
            .contains("header name"));
    }

    #[test]
    fn describe_uses_lowercase_names() {
        assert_eq!(
            matcher("headers: {X-A: '1', x-b: two words}").describe(),
            "headers.x-a=1 headers.x-b=\"two words\""
        );
    }
}
