//! `cookie:` — request cookies with exact values.
//!
//! Cookies are read from every `Cookie:` header line (HTTP/2 clients may send one per
//! cookie), each split as `a=1; b=2`, straight from the header bytes without
//! allocating. Names and values are compared byte for byte, case-sensitively, after
//! trimming spaces around them; a value sent in double quotes (`b="yes"`) also
//! matches its unquoted text. Cookie values are not percent-decoded: configure them
//! as the client sends them. When a cookie appears several times, any one equal value
//! satisfies the condition.

use std::collections::BTreeMap;

use http::header::{HeaderMap, COOKIE};

use super::{push_term, MatchError};

/// Bytes that RFC 6265 does not allow in a cookie name (besides controls and space).
const NAME_SEPARATORS: &[u8] = b"()<>@,;:\\\"/[]?={}";

/// A compiled `cookie:` condition: every listed cookie has its value.
#[derive(Debug, Clone)]
pub(super) struct CookieMatch(Vec<(String, String)>);

impl CookieMatch {
    /// Compiles the map, pushing a problem for each bad name or value to `errors`.
    /// An empty map is no condition at all.
    pub(super) fn compile(
        spec: &BTreeMap<String, String>,
        errors: &mut Vec<MatchError>,
    ) -> Option<Self> {
        let before = errors.len();
        for (name, value) in spec {
            let key = format!("cookie.{name}");
            if let Err(message) = check_name(name) {
                errors.push(MatchError::new(&key, message));
            }
            if let Err(message) = check_value(value) {
                errors.push(MatchError::new(&key, message));
            }
        }
        let pairs: Vec<(String, String)> = spec
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        (errors.len() == before && !pairs.is_empty()).then_some(CookieMatch(pairs))
    }

    /// True when every configured cookie has its value in the request.
    pub(super) fn matches(&self, headers: &HeaderMap) -> bool {
        self.0.iter().all(|(name, value)| {
            cookies(headers).any(|(have_name, have_value)| {
                have_name == name.as_bytes()
                    && (have_value == value.as_bytes() || unquote(have_value) == value.as_bytes())
            })
        })
    }

    /// Appends `cookie.NAME=VALUE` for each cookie to a description.
    pub(super) fn describe(&self, out: &mut String) {
        for (name, value) in &self.0 {
            push_term(out, &format!("cookie.{name}"), value);
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty cookie name".to_string());
    }
    let bad = |b: &u8| b.is_ascii_control() || *b == b' ' || NAME_SEPARATORS.contains(b);
    match name.bytes().find(bad) {
        Some(b) => Err(format!(
            "{name:?} is not a valid cookie name ({:?} is not allowed)",
            b as char
        )),
        None => Ok(()),
    }
}

fn check_value(value: &str) -> Result<(), String> {
    if value.trim() != value {
        return Err(format!(
            "{value:?} has leading or trailing whitespace, which is dropped when cookies are read"
        ));
    }
    if value.bytes().any(|b| b == b';' || b.is_ascii_control()) {
        return Err(format!(
            "{value:?} contains ';' or a control character, which cannot be part of a cookie value"
        ));
    }
    Ok(())
}

/// Every `name=value` cookie of every `Cookie:` line, trimmed, in order. Pieces
/// without `=` are skipped.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b';'))
        .filter_map(|piece| {
            let eq = piece.iter().position(|&b| b == b'=')?;
            Some((piece[..eq].trim_ascii(), piece[eq + 1..].trim_ascii()))
        })
}

/// The value of the first cookie called `name`, unquoted (used as a hashing key).
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    cookies(headers)
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| unquote(v))
}

/// `"yes"` → `yes`; anything else unchanged.
fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::{compile_errors, matcher, request};

    fn with_cookies(lines: &[&str]) -> http::request::Parts {
        let headers: Vec<(&str, &str)> = lines.iter().map(|line| ("cookie", *line)).collect();
        request("GET", "/", &headers)
    }

    #[test]
    fn cookies_are_split_and_trimmed() {
        let req = with_cookies(&["a=1; b=2;c=3 ;  d = 4 ; flag; e=x=y;", "f="]);
        let got: Vec<(&[u8], &[u8])> = cookies(&req.headers).collect();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"a", b"1"),
            (b"b", b"2"),
            (b"c", b"3"),
            (b"d", b"4"),
            (b"e", b"x=y"),
            (b"f", b""),
        ];
        assert_eq!(got, want);
        assert_eq!(cookies(&with_cookies(&[]).headers).count(), 0);
    }

    #[test]
    fn cookie_must_equal() {
        let m = matcher("cookie: {beta: 'yes'}");
        assert!(m.matches(&with_cookies(&["beta=yes"])));
        assert!(m.matches(&with_cookies(&["a=1; beta=yes; b=2"])));
        assert!(!m.matches(&with_cookies(&["beta=no"])));
        assert!(!m.matches(&with_cookies(&["beta=yess"])));
        assert!(!m.matches(&with_cookies(&["beta=Yes"])));
        assert!(!m.matches(&with_cookies(&["Beta=yes"])));
        assert!(!m.matches(&with_cookies(&["xbeta=yes"])));
        assert!(!m.matches(&with_cookies(&[])));
        assert!(!m.matches(&request("GET", "/", &[("x-cookie", "beta=yes")])));
    }

    #[test]
    fn several_cookie_headers_are_all_read() {
        let m = matcher("cookie: {a: '1', b: '2'}");
        assert!(m.matches(&with_cookies(&["a=1", "b=2"])));
        assert!(m.matches(&with_cookies(&["x=0", "b=2; a=1"])));
        assert!(!m.matches(&with_cookies(&["a=1", "b=3"])));
    }

    #[test]
    fn any_occurrence_of_a_repeated_cookie_matches() {
        let m = matcher("cookie: {id: b}");
        assert!(m.matches(&with_cookies(&["id=a; id=b"])));
        assert!(m.matches(&with_cookies(&["id=a", "id=b"])));
        assert!(!m.matches(&with_cookies(&["id=a; id=c"])));
    }

    #[test]
    fn quoted_values_match_their_text() {
        let m = matcher("cookie: {beta: 'yes'}");
        assert!(m.matches(&with_cookies(&["beta=\"yes\""])));
        assert!(!m.matches(&with_cookies(&["beta=\"yes"])));
        let quoted = matcher("cookie: {beta: '\"yes\"'}");
        assert!(quoted.matches(&with_cookies(&["beta=\"yes\""])));
        assert!(!quoted.matches(&with_cookies(&["beta=yes"])));
        assert_eq!(unquote(b"\""), b"\"");
        assert_eq!(unquote(b"\"\""), b"");
    }

    #[test]
    fn values_are_not_decoded() {
        let m = matcher("cookie: {q: 'a%20b'}");
        assert!(m.matches(&with_cookies(&["q=a%20b"])));
        assert!(!matcher("cookie: {q: 'a b'}").matches(&with_cookies(&["q=a%20b"])));
    }

    #[test]
    fn an_empty_value_matches_an_empty_cookie() {
        let m = matcher("cookie: {a: ''}");
        assert!(m.matches(&with_cookies(&["a="])));
        assert!(!m.matches(&with_cookies(&["a"])));
        assert!(!m.matches(&with_cookies(&["a=1"])));
    }

    #[test]
    fn bad_names_and_values_are_all_reported() {
        let errors =
            compile_errors("cookie: {'': x, 'a b': '1', 'c': 'x;y', 'd': ' x', 'e=f': '1'}");
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cookie.",
                "cookie.a b",
                "cookie.c",
                "cookie.d",
                "cookie.e=f"
            ]
        );
        assert!(errors[0].message.contains("empty cookie name"));
        assert!(errors[1].message.contains("not a valid cookie name"));
        assert!(errors[2].message.contains("';'"));
        assert!(errors[3].message.contains("whitespace"));
        assert!(errors[4].message.contains("'='"));
    }

    #[test]
    fn an_empty_map_matches_everything() {
        let m = matcher("cookie: {}");
        assert!(m.is_catch_all());
        assert!(m.matches(&with_cookies(&[])));
    }

    #[test]
    fn describe_lists_each_cookie() {
        assert_eq!(
            matcher("cookie: {beta: 'yes', a: '1'}").describe(),
            "cookie.a=1 cookie.beta=yes"
        );
    }
}
