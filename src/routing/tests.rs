//! Tests of the route table as a whole: order, catch-all routes, combined conditions
//! and error reporting. Also the helpers the matcher files' tests share.

use http::request::Parts;

use super::MatchSpec;
use super::{MatchError, Matcher, RouteTable};

/// A request head with `method`, `uri` and `headers` (repeats allowed).
pub(super) fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("valid test request").into_parts().0
}

/// Reads a `match:` block from YAML, as the config file would.
pub(super) fn spec(yaml: &str) -> MatchSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

/// Compiles a `match:` block that must be valid.
pub(super) fn matcher(yaml: &str) -> Matcher {
    Matcher::compile(&spec(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e:?}"))
}

/// Compiles a `match:` block that must be invalid, and returns its problems.
pub(super) fn compile_errors(yaml: &str) -> Vec<MatchError> {
    match Matcher::compile(&spec(yaml)) {
        Ok(m) => panic!("{yaml} compiled to {}", m.describe()),
        Err(errors) => errors,
    }
}

fn table(routes: &[(&str, &'static str)]) -> RouteTable<&'static str> {
    RouteTable::new(
        routes
            .iter()
            .map(|(yaml, name)| (matcher(yaml), *name))
            .collect(),
    )
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Parts {
    request("GET", uri, headers)
}

#[test]
fn first_matching_route_wins() {
    let t = table(&[
        ("path_prefix: /api/v2/", "v2"),
        ("path_prefix: /api/", "api"),
        ("path_prefix: /api/v3/", "never"),
        ("{}", "fallback"),
    ]);
    assert_eq!(t.find(&get("/api/v2/x", &[])), Some((0, &"v2")));
    assert_eq!(t.find(&get("/api/v3/x", &[])), Some((1, &"api")));
    assert_eq!(t.find(&get("/api/", &[])), Some((1, &"api")));
    assert_eq!(t.find(&get("/other", &[])), Some((3, &"fallback")));
}

#[test]
fn a_catch_all_first_shadows_everything_after_it() {
    let t = table(&[("{}", "all"), ("path: /x", "x")]);
    assert_eq!(t.find(&get("/x", &[])), Some((0, &"all")));
}

#[test]
fn no_match_finds_nothing() {
    let t = table(&[("host: a.example.com", "a"), ("path: /x", "x")]);
    assert_eq!(t.find(&get("/y", &[("host", "b.example.com")])), None);
    let empty: RouteTable<()> = RouteTable::new(Vec::new());
    assert!(empty.is_empty());
    assert_eq!(empty.routes().count(), 0);
    assert_eq!(empty.find(&get("/", &[])), None);
    assert!(RouteTable::<()>::default().is_empty());
}

#[test]
fn an_empty_match_matches_everything() {
    let m = matcher("{}");
    assert!(m.is_catch_all());
    assert_eq!(m.describe(), "any");
    assert!(Matcher::default().matches(&get("/", &[])));
    assert!(m.matches(&request("DELETE", "/x?y=1", &[("host", "z")])));
    assert!(m.matches(&request("GET", "*", &[])));
    assert!(m.matches(&request("CONNECT", "example.com:443", &[])));
    assert!(m.matches(&request("GET", "http://example.com", &[])));
    assert!(Matcher::compile(&MatchSpec::default())
        .unwrap()
        .is_catch_all());
}

#[test]
fn every_condition_must_hold() {
    let m = matcher(
        r#"
        host: "*.example.com"
        path_prefix: /api/
        path_regex: "^/api/v[0-9]+/"
        method: [GET, POST]
        headers: {x-canary: "1"}
        query: {version: 2}
        cookie: {beta: "yes"}
        "#,
    );
    let good = [
        ("host", "a.example.com"),
        ("x-canary", "1"),
        ("cookie", "beta=yes"),
    ];
    assert!(m.matches(&request("GET", "/api/v1/x?version=2", &good)));
    assert!(m.matches(&request("POST", "/api/v1/x?version=2", &good)));

    // Break one condition at a time.
    assert!(!m.matches(&request("PUT", "/api/v1/x?version=2", &good)));
    assert!(!m.matches(&request("GET", "/apx/v1/x?version=2", &good)));
    assert!(!m.matches(&request("GET", "/api/x/x?version=2", &good)));
    assert!(!m.matches(&request("GET", "/api/v1/x?version=3", &good)));
    let mut other = good;
    other[0] = ("host", "example.com");
    assert!(!m.matches(&request("GET", "/api/v1/x?version=2", &other)));
    let mut other = good;
    other[1] = ("x-canary", "0");
    assert!(!m.matches(&request("GET", "/api/v1/x?version=2", &other)));
    let mut other = good;
    other[2] = ("cookie", "beta=no");
    assert!(!m.matches(&request("GET", "/api/v1/x?version=2", &other)));
}

#[test]
fn combined_routes_pick_the_right_pool() {
    let t = table(&[
        (
            "{host: api.example.com, headers: {x-canary: '1'}}",
            "canary",
        ),
        ("{host: api.example.com, method: [GET, HEAD]}", "api-read"),
        ("host: api.example.com", "api-write"),
        ("path_prefix: /static/", "static"),
    ]);
    let api = ("host", "api.example.com:443");
    assert_eq!(
        t.find(&get("/", &[api, ("x-canary", "1")])).unwrap().1,
        &"canary"
    );
    assert_eq!(t.find(&get("/", &[api])).unwrap().1, &"api-read");
    assert_eq!(t.find(&request("HEAD", "/", &[api])).unwrap().0, 1);
    assert_eq!(
        t.find(&request("POST", "/", &[api])).unwrap().1,
        &"api-write"
    );
    assert_eq!(t.find(&get("/static/a.css", &[])).unwrap().1, &"static");
    assert_eq!(t.find(&get("/", &[("host", "www.example.com")])), None);
}

#[test]
fn compile_reports_every_problem_at_once() {
    let errors = compile_errors(
        r#"
        host: "a.*.com"
        path: exact
        path_prefix: api/
        path_regex: "(unclosed"
        method: [GET, "", "B@D"]
        headers: {"bad header": "1", x-ok: "1"}
        query: {"": x}
        cookie: {"a;b": "1"}
        "#,
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "method[1]",
            "method[2]",
            "host",
            "path",
            "path_prefix",
            "headers.bad header",
            "query.",
            "cookie.a;b",
            "path_regex",
        ]
    );
    assert!(errors.iter().all(|e| !e.message.is_empty()));
}

#[test]
fn match_errors_display_key_and_message() {
    let e = MatchError::new("method[1]", "empty method name");
    assert_eq!(e.to_string(), "method[1]: empty method name");
}

#[test]
fn describe_combines_conditions_in_a_fixed_order() {
    let m = matcher(
        "{cookie: {b: '1'}, query: {v: '2'}, headers: {X-A: '1'}, path_prefix: /api/, \
         method: get, host: API.example.com}",
    );
    assert_eq!(
        m.describe(),
        "host=api.example.com method=GET path_prefix=/api/ headers.x-a=1 query.v=2 cookie.b=1"
    );
}

#[test]
fn table_accessors_follow_config_order() {
    let t = table(&[("path: /a", "a"), ("path: /b", "b")]);
    assert_eq!(t.routes().count(), 2);
    assert!(!t.is_empty());
    assert_eq!(t.routes().map(|(_, v)| *v).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(t.get(1), Some(&"b"));
    assert_eq!(t.get(2), None);
    let described: Vec<String> = t.routes().map(|(m, _)| m.describe()).collect();
    assert_eq!(described, ["path=/a", "path=/b"]);
}
