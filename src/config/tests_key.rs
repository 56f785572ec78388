//! The top-level `tests:` key: requests (`METHOD URL`) or connections to a TCP listener
//! (`tcp://HOST:PORT`, with `sni`) with the route, pool or status the operator expects
//! them to get. Checked here for form (method, URL, headers, address); run
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
    /// `METHOD URL`, or `tcp://HOST:PORT`.
    request: String,
    #[serde(default)]
    headers: BTreeMap<String, Text>,
    from: Option<String>,
    /// For `tcp://`: the ClientHello's server name (`""`: none).
    sni: Option<String>,
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
    /// `GET`…; empty for a `tcp://` connection.
    pub(crate) method: String,
    /// The URL as written.
    pub(crate) url: String,
    /// Extra headers.
    pub(crate) headers: Vec<(String, String)>,
    /// The client address.
    pub(crate) from: Option<String>,
    /// For `tcp://`: the server name.
    pub(crate) sni: Option<String>,
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
    let request = t.request.trim();
    let tcp = request
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("tcp://"));
    let (method, url) = if tcp {
        check_tcp(request, &request_path, p);
        if !t.headers.is_empty() {
            p.add(join(path, "headers"), "a tcp:// connection has no headers");
        }
        ("", request)
    } else {
        let Some((method, url)) = request.split_once(' ') else {
            p.add(
                request_path,
                "write the request as `METHOD URL`, like `GET https://api.example.com/v1/users`, \
                 or a connection as `tcp://HOST:PORT`",
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
        if t.sni.is_some() {
            p.add(
                join(path, "sni"),
                "`sni` applies to a connection to a tcp listener (`request: tcp://HOST:PORT`)",
            );
        }
        (method, url)
    };
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
        sni: t.sni,
        expect: Expect {
            route: e.route,
            pool: e.pool,
            status: e.status,
        },
    })
}

/// A connection's URL: `tcp://HOST:PORT` (or `tcp://HOST`), nothing after it.
fn check_tcp(url: &str, at: &str, p: &mut Problems) {
    match url.parse::<http::Uri>() {
        Ok(uri)
            if uri.host().is_some_and(|h| !h.is_empty())
                && matches!(uri.path(), "" | "/")
                && uri.query().is_none() => {}
        _ => p.add(
            at,
            format!("`{url}` is not a connection like tcp://HOST:PORT"),
        ),
    }
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
                "tests[0].request: write the request as `METHOD URL`, like `GET https://api.example.com/v1/users`, or a connection as `tcp://HOST:PORT`",
                "tests[1].request: `G(T` is not an HTTP method",
                "tests[2].request: `nowhere` is not a URL like https://host/path or /path",
                "tests[2].headers.bad name: not a valid header name",
                "tests[2].from: `me` is not an IP address",
                "tests[2].expect: expect at least one of route, pool, status",
                "tests[3].extra: unknown key (expected one of `request`, `headers`, `from`, `sni`, `expect`)",
            ]
        );
    }

    #[test]
    fn a_tcp_connection_test() {
        let (tests, problems) = parse_yaml(
            "[{request: 'tcp://127.0.0.1:443', sni: a.example, from: 10.0.0.7,
               expect: {route: 'edge[0]', pool: a}},
              {request: 'TCP://edge.example', expect: {status: 404}}]",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let t = &tests[0];
        assert_eq!(
            (t.method.as_str(), t.url.as_str()),
            ("", "tcp://127.0.0.1:443")
        );
        assert_eq!(t.sni.as_deref(), Some("a.example"));
        assert_eq!(tests[1].url, "TCP://edge.example");
        let (_, problems) = parse_yaml(
            "[{request: 'tcp://127.0.0.1:443/x', headers: {a: b}, expect: {status: 404}},
              {request: 'GET /', sni: a.example, expect: {status: 404}},
              {request: 'tcp://', expect: {status: 404}}]",
        );
        assert_eq!(
            problems,
            [
                "tests[0].request: `tcp://127.0.0.1:443/x` is not a connection like tcp://HOST:PORT",
                "tests[0].headers: a tcp:// connection has no headers",
                "tests[1].sni: `sni` applies to a connection to a tcp listener (`request: tcp://HOST:PORT`)",
                "tests[2].request: `tcp://` is not a connection like tcp://HOST:PORT",
            ]
        );
    }
}
