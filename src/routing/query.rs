//! `query:` — query parameters with exact values.
//!
//! The configured names and values are the decoded text (`{q: "a b"}`); the request's
//! query is split on `&`, each pair at its first `=`, and both sides are
//! percent-decoded with `+` read as a space (`application/x-www-form-urlencoded`)
//! while being compared, so matching never allocates. A `%` not followed by two hex
//! digits stands for itself. A parameter without `=` has the empty value, and when a
//! parameter appears several times any one equal value satisfies the condition.

use std::collections::BTreeMap;

use super::{push_term, MatchError};

/// A compiled `query:` condition: every listed parameter has its value.
#[derive(Debug, Clone)]
pub(super) struct QueryMatch(Vec<(String, String)>);

impl QueryMatch {
    /// Compiles the map, pushing a problem for each bad name to `errors`. An empty map
    /// is no condition at all.
    pub(super) fn compile(
        spec: &BTreeMap<String, String>,
        errors: &mut Vec<MatchError>,
    ) -> Option<Self> {
        let before = errors.len();
        for name in spec.keys().filter(|name| name.is_empty()) {
            errors.push(MatchError::new(
                format!("query.{name}"),
                "empty parameter name",
            ));
        }
        let pairs: Vec<(String, String)> = spec
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        (errors.len() == before && !pairs.is_empty()).then_some(QueryMatch(pairs))
    }

    /// True when every configured parameter has its value in `query`.
    pub(super) fn matches(&self, query: Option<&str>) -> bool {
        let query = query.unwrap_or("").as_bytes();
        self.0.iter().all(|(name, value)| {
            pairs(query).any(|(have_name, have_value)| {
                decoded_eq(have_name, name.as_bytes()) && decoded_eq(have_value, value.as_bytes())
            })
        })
    }

    /// Appends `query.NAME=VALUE` for each parameter to a description.
    pub(super) fn describe(&self, out: &mut String) {
        for (name, value) in &self.0 {
            push_term(out, &format!("query.{name}"), value);
        }
    }
}

/// The raw (still encoded) value of the first parameter whose decoded name is `name`
/// (used as a hashing key).
pub(crate) fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a [u8]> {
    pairs(query.as_bytes())
        .find(|(n, _)| decoded_eq(n, name.as_bytes()))
        .map(|(_, v)| v)
}

/// The `name=value` pairs of a raw query, still encoded.
fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        })
}

/// True when `encoded`, percent-decoded with `+` as a space, equals `expected`.
fn decoded_eq(encoded: &[u8], expected: &[u8]) -> bool {
    let mut want = expected.iter();
    let mut i = 0;
    while i < encoded.len() {
        let (byte, width) = match encoded[i] {
            b'+' => (b' ', 1),
            b'%' => match (
                encoded.get(i + 1).and_then(|&b| hex(b)),
                encoded.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(high), Some(low)) => ((high << 4) | low, 3),
                _ => (b'%', 1),
            },
            other => (other, 1),
        };
        if want.next() != Some(&byte) {
            return false;
        }
        i += width;
    }
    want.next().is_none()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::{compile_errors, matcher, request};

    fn get(uri: &str) -> http::request::Parts {
        request("GET", uri, &[])
    }

    #[test]
    fn decoded_eq_decodes_percent_and_plus() {
        assert!(decoded_eq(b"abc", b"abc"));
        assert!(decoded_eq(b"", b""));
        assert!(!decoded_eq(b"abc", b"ab"));
        assert!(!decoded_eq(b"ab", b"abc"));
        assert!(decoded_eq(b"a+b", b"a b"));
        assert!(decoded_eq(b"a%20b", b"a b"));
        assert!(decoded_eq(b"%2B", b"+"));
        assert!(decoded_eq(b"%2b%2F", b"+/"));
        assert!(decoded_eq(b"%C3%A9t%C3%A9", "été".as_bytes()));
        assert!(!decoded_eq(b"a+b", b"a+b"));
        assert!(!decoded_eq(b"%41", b"%41"));
    }

    #[test]
    fn malformed_escapes_stand_for_themselves() {
        assert!(decoded_eq(b"100%", b"100%"));
        assert!(decoded_eq(b"%zz", b"%zz"));
        assert!(decoded_eq(b"%4", b"%4"));
        assert!(decoded_eq(b"%%41", b"%A"));
    }

    #[test]
    fn pairs_split_on_ampersand_and_first_equals() {
        let got: Vec<(&[u8], &[u8])> = pairs(b"a=1&&b=x=y&flag&=v&").collect();
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"a", b"1"), (b"b", b"x=y"), (b"flag", b""), (b"", b"v")];
        assert_eq!(got, want);
        assert_eq!(pairs(b"").count(), 0);
    }

    #[test]
    fn parameter_must_equal() {
        let m = matcher("query: {version: '2'}");
        assert!(m.matches(&get("/?version=2")));
        assert!(m.matches(&get("/x?a=1&version=2&b=3")));
        assert!(!m.matches(&get("/?version=20")));
        assert!(!m.matches(&get("/?version=")));
        assert!(!m.matches(&get("/?version")));
        assert!(!m.matches(&get("/?Version=2")));
        assert!(!m.matches(&get("/?xversion=2")));
        assert!(!m.matches(&get("/")));
        assert!(!m.matches(&get("/version=2")));
    }

    #[test]
    fn numbers_are_read_as_text() {
        assert!(matcher("query: {version: 2}").matches(&get("/?version=2")));
    }

    #[test]
    fn names_and_values_are_decoded() {
        let m = matcher("query: {'my key': 'a b+c'}");
        assert!(m.matches(&get("/?my+key=a+b%2Bc")));
        assert!(m.matches(&get("/?my%20key=a%20b%2bc")));
        assert!(!m.matches(&get("/?my+key=a+b+c")));
    }

    #[test]
    fn any_occurrence_of_a_repeated_parameter_matches() {
        let m = matcher("query: {tag: b}");
        assert!(m.matches(&get("/?tag=a&tag=b&tag=c")));
        assert!(!m.matches(&get("/?tag=a&tag=c")));
    }

    #[test]
    fn an_empty_value_matches_a_bare_or_empty_parameter() {
        let m = matcher("query: {debug: ''}");
        assert!(m.matches(&get("/?debug")));
        assert!(m.matches(&get("/?a=1&debug=")));
        assert!(!m.matches(&get("/?debug=1")));
        assert!(!m.matches(&get("/")));
    }

    #[test]
    fn every_parameter_must_hold() {
        let m = matcher("query: {a: '1', b: '2'}");
        assert!(m.matches(&get("/?b=2&a=1")));
        assert!(!m.matches(&get("/?a=1")));
        assert!(!m.matches(&get("/?a=1&b=3")));
    }

    #[test]
    fn an_empty_name_is_an_error() {
        let errors = compile_errors("query: {'': x}");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "query.");
        assert!(errors[0].message.contains("empty parameter name"));
    }

    #[test]
    fn an_empty_map_matches_everything() {
        let m = matcher("query: {}");
        assert!(m.is_catch_all());
        assert!(m.matches(&get("/?a=1")));
    }

    #[test]
    fn describe_lists_each_parameter() {
        assert_eq!(
            matcher("query: {b: '2', a: x y}").describe(),
            "query.a=\"x y\" query.b=2"
        );
    }
}
