//! The top-level `tests:` key: requests with the route, pool or status the operator
//! expects them to get. Checked here for form (method, URL, headers, address); run
//! against the route tables by the server (`server::explain::run_tests`) for `-t`, a
//! start and `-u` (before it asks for the sockets), a failure being a config error at
//! `tests[i]` with its line and expected against actual.

use super::problems::{join, Problems};
use crate::vocab::Text;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;

/// `tests[i]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSection {
    /// `METHOD URL`.
    request: String,
    #[serde(default)]
    headers: BTreeMap<String, Text>,
    from: Option<String>,
    expect: ExpectSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSection {
    route: Option<String>,
    pool: Option<String>,
    status: Option<u16>,
}

/// One config test.
#[derive(Debug, Clone)]
pub(crate) struct ConfigTest {
    /// `tests[i]`.
    pub(crate) path: String,
    /// Its line, filled in once the file is valid.
    pub(crate) line: Option<usize>,
    /// `GET`…
    pub(crate) method: String,
    /// The URL as written.
    pub(crate) url: String,
    /// Extra headers.
    pub(crate) headers: Vec<(String, String)>,
    /// The client address.
    pub(crate) from: Option<String>,
    /// What it must get.
    pub(crate) expect: Expect,
}

/// What a test expects; only the keys given are compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expect {
    /// `LISTENER[i]`.
    pub(crate) route: Option<String>,
    /// A pool name.
    pub(crate) pool: Option<String>,
    /// A status made without a backend (404, 301…).
    pub(crate) status: Option<u16>,
}

/// Parses `tests:`, reporting every problem of form.
pub(super) fn parse(value: &Value, p: &mut Problems) -> Vec<ConfigTest> {
    let Some(list) = value.as_sequence() else {
        p.add("tests", "expected a list of tests");
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| one(&format!("tests[{i}]"), v, p))
        .collect()
}

fn one(path: &str, value: &Value, p: &mut Problems) -> Option<ConfigTest> {
    let t: TestSection = p.parse(path, value)?;
    let request_path = join(path, "request");
    let Some((method, url)) = t.request.trim().split_once(' ') else {
        p.add(
            request_path,
            "write the request as `METHOD URL`, like `GET https://api.example.com/v1/users`",
        );
        return None;
    };
    let (method, url) = (method.trim(), url.trim());
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        p.add(&request_path, format!("`{method}` is not an HTTP method"));
    }
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.path().starts_with('/') => {}
        _ => p.add(
            &request_path,
            format!("`{url}` is not a URL like https://host/path or /path"),
        ),
    }
    for name in t.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.add(
                join(&join(path, "headers"), name),
                "not a valid header name",
            );
        }
    }
    if let Some(from) = &t.from {
        if from.parse::<std::net::IpAddr>().is_err() {
            p.add(join(path, "from"), format!("`{from}` is not an IP address"));
        }
    }
    let e = t.expect;
    if e.route.is_none() && e.pool.is_none() && e.status.is_none() {
        p.add(
            join(path, "expect"),
            "expect at least one of route, pool, status",
        );
    }
    Some(ConfigTest {
        path: path.to_string(),
        line: None,
        method: method.to_string(),
        url: url.to_string(),
        headers: t.headers.into_iter().map(|(k, v)| (k, v.0)).collect(),
        from: t.from,
        expect: Expect {
            route: e.route,
            pool: e.pool,
            status: e.status,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_yaml(yaml: &str) -> (Vec<ConfigTest>, Vec<String>) {
        let mut p = Problems::default();
        let tests = parse(&serde_yaml::from_str(yaml).unwrap(), &mut p);
        let problems = p
            .list
            .into_iter()
            .map(|pr| format!("{}: {}", pr.path, pr.message))
            .collect();
        (tests, problems)
    }

    #[test]
    fn a_test_in_full() {
        let (tests, problems) = parse_yaml(
            "[{request: 'GET https://api.example.com/v1?id=3', headers: {x-canary: 1},
               from: 10.0.0.7, expect: {route: 'web[1]', pool: api}}]",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let t = &tests[0];
        assert_eq!((t.path.as_str(), t.method.as_str()), ("tests[0]", "GET"));
        assert_eq!(t.url, "https://api.example.com/v1?id=3");
        assert_eq!(t.headers, [("x-canary".to_string(), "1".to_string())]);
        assert_eq!(t.from.as_deref(), Some("10.0.0.7"));
        assert_eq!(t.expect.route.as_deref(), Some("web[1]"));
        assert_eq!(t.expect.status, None);
    }

    #[test]
    fn every_problem_of_form_has_its_key() {
        let (_, problems) = parse_yaml(
            "[{request: GET, expect: {status: 404}},
              {request: 'G(T /', expect: {status: 404}},
              {request: 'GET nowhere', headers: {'bad name': x}, from: me, expect: {}},
              {request: 'GET /', expect: {route: x}, extra: 1}]",
        );
        assert_eq!(
            problems,
            [
                "tests[0].request: write the request as `METHOD URL`, like `GET https://api.example.com/v1/users`",
                "tests[1].request: `G(T` is not an HTTP method",
                "tests[2].request: `nowhere` is not a URL like https://host/path or /path",
                "tests[2].headers.bad name: not a valid header name",
                "tests[2].from: `me` is not an IP address",
                "tests[2].expect: expect at least one of route, pool, status",
                "tests[3].extra: unknown key (expected one of `request`, `headers`, `from`, `expect`)",
            ]
        );
    }
}
