//! HTTP routing through the real binary: every `match:` condition of the contract
//! (`host` exact and `*.` wildcard, `path`, `path_prefix`, `path_regex`, `method`,
//! `headers`, `query`, `cookie`), a route combining them all, first-match-wins order,
//! and 404 when no route matches.
//!
//! Each test gives every route its own pool holding one named backend, so the
//! backend's `x-backend` answer header says which route served the request.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;

use common::*;

/// Tioga with one HTTP listener in front of one single-backend pool per name.
struct Routed {
    backends: Vec<HttpBackend>,
    addr: SocketAddr,
    _tioga: Tioga,
}

impl Routed {
    /// Starts a backend and a pool for each of `pools` (pool and backend share the
    /// name) and Tioga with `routes`, each a YAML flow mapping such as
    /// `{match: {path: /x}, pool: a}`, in order.
    fn start(pools: &[&str], routes: &[&str]) -> Routed {
        let backends: Vec<HttpBackend> = pools.iter().map(|n| spawn_http_backend(n)).collect();
        let addr = free_addr();
        let mut yaml = String::from(
            "server: {threads: 1, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}\n\
             pools:\n",
        );
        for b in &backends {
            writeln!(yaml, "  {}: {{backends: ['{}']}}", b.name(), b.addr()).unwrap();
        }
        writeln!(
            yaml,
            "listeners:\n  web:\n    protocol: http\n    bind: '{addr}'"
        )
        .unwrap();
        yaml.push_str("    routes:\n");
        for route in routes {
            writeln!(yaml, "      - {route}").unwrap();
        }
        let tioga = Tioga::start(&yaml, &[addr]);
        Routed {
            backends,
            addr,
            _tioga: tioga,
        }
    }

    /// Sends `req`; returns the answering backend's name, or the status when it is not
    /// 200.
    fn hit(&self, req: Request) -> String {
        let resp = req.send(self.addr).expect("request through tioga");
        match (resp.status, resp.header("x-backend")) {
            (200, Some(name)) => name.to_string(),
            (status, _) => status.to_string(),
        }
    }

    /// [`Routed::hit`] for a `GET` of `path` with `Host: host`.
    fn get(&self, host: &str, path: &str) -> String {
        self.hit(Request::get(path).header("host", host))
    }

    /// The backend called `name`.
    fn backend(&self, name: &str) -> &HttpBackend {
        self.backends.iter().find(|b| b.name() == name).unwrap()
    }
}

#[test]
fn host_matches_exactly_ignoring_case_and_port() {
    let lb = Routed::start(
        &["api", "other"],
        &[
            "{match: {host: api.example.com}, pool: api}",
            "{pool: other}",
        ],
    );
    assert_eq!(lb.get("api.example.com", "/"), "api");
    assert_eq!(lb.get("API.Example.COM", "/"), "api");
    assert_eq!(lb.get("api.example.com:8080", "/"), "api");
    assert_eq!(lb.get("Api.Example.Com:443", "/x"), "api");
    assert_eq!(lb.get("www.example.com", "/"), "other");
    assert_eq!(lb.get("x.api.example.com", "/"), "other");
    assert_eq!(lb.get("api.example.com.evil", "/"), "other");
    assert_eq!(lb.get("example.com", "/"), "other");
}

#[test]
fn wildcard_host_matches_subdomains_but_not_the_apex() {
    let lb = Routed::start(
        &["wild", "other"],
        &[
            "{match: {host: '*.example.com'}, pool: wild}",
            "{pool: other}",
        ],
    );
    assert_eq!(lb.get("a.example.com", "/"), "wild");
    assert_eq!(lb.get("Shop.EXAMPLE.com:8080", "/"), "wild");
    assert_eq!(lb.get("a.b.c.example.com", "/"), "wild");
    assert_eq!(lb.get("example.com", "/"), "other");
    assert_eq!(lb.get("example.com:80", "/"), "other");
    assert_eq!(lb.get("badexample.com", "/"), "other");
    assert_eq!(lb.get("a.example.org", "/"), "other");
    assert_eq!(lb.get("a.example.com.evil.net", "/"), "other");
}

#[test]
fn path_matches_the_whole_path_without_the_query() {
    let lb = Routed::start(
        &["exact", "other"],
        &["{match: {path: /exact}, pool: exact}", "{pool: other}"],
    );
    assert_eq!(lb.get("h", "/exact"), "exact");
    assert_eq!(lb.get("h", "/exact?x=1&y=2"), "exact");
    assert_eq!(lb.get("h", "/exact/"), "other");
    assert_eq!(lb.get("h", "/exactly"), "other");
    assert_eq!(lb.get("h", "/Exact"), "other");
    assert_eq!(lb.get("h", "/x/exact"), "other");
    assert_eq!(lb.get("h", "/"), "other");
}

#[test]
fn path_prefix_is_a_plain_prefix_of_the_path() {
    let lb = Routed::start(
        &["api", "other"],
        &["{match: {path_prefix: /api/}, pool: api}", "{pool: other}"],
    );
    assert_eq!(lb.get("h", "/api/"), "api");
    assert_eq!(lb.get("h", "/api/users/7"), "api");
    assert_eq!(lb.get("h", "/api/x?y=1"), "api");
    assert_eq!(lb.get("h", "/api"), "other");
    assert_eq!(lb.get("h", "/apix/"), "other");
    assert_eq!(lb.get("h", "/v1/api/"), "other");
    // The query is not part of the path.
    assert_eq!(lb.get("h", "/x?next=/api/"), "other");
}

#[test]
fn path_regex_is_matched_against_the_path() {
    let lb = Routed::start(
        &["versioned", "other"],
        &[
            "{match: {path_regex: '^/v[0-9]+/'}, pool: versioned}",
            "{pool: other}",
        ],
    );
    assert_eq!(lb.get("h", "/v1/users"), "versioned");
    assert_eq!(lb.get("h", "/v42/"), "versioned");
    assert_eq!(lb.get("h", "/v2/x?a=b"), "versioned");
    assert_eq!(lb.get("h", "/v/users"), "other");
    assert_eq!(lb.get("h", "/v1"), "other");
    assert_eq!(lb.get("h", "/api/v1/"), "other");
    assert_eq!(lb.get("h", "/x?p=/v1/"), "other");
}

#[test]
fn method_matches_one_name_or_a_list() {
    let lb = Routed::start(
        &["post", "writes", "other"],
        &[
            "{match: {method: POST}, pool: post}",
            "{match: {method: [PUT, DELETE]}, pool: writes}",
            "{pool: other}",
        ],
    );
    let with = |method: &str| lb.hit(Request::new(method, "/").header("host", "h"));
    assert_eq!(with("POST"), "post");
    assert_eq!(with("PUT"), "writes");
    assert_eq!(with("DELETE"), "writes");
    assert_eq!(with("GET"), "other");
    assert_eq!(with("PATCH"), "other");
    assert_eq!(with("HEAD"), "other");
}

#[test]
fn headers_match_with_case_insensitive_names_and_exact_values() {
    let lb = Routed::start(
        &["canary", "other"],
        &[
            "{match: {headers: {X-Canary: '1'}}, pool: canary}",
            "{pool: other}",
        ],
    );
    let with = |name: &str, value: &str| lb.hit(Request::get("/").header(name, value));
    assert_eq!(with("x-canary", "1"), "canary");
    assert_eq!(with("X-CANARY", "1"), "canary");
    assert_eq!(with("X-Canary", "1"), "canary");
    assert_eq!(with("x-canary", "2"), "other");
    assert_eq!(with("x-canary", "10"), "other");
    assert_eq!(with("x-canary-2", "1"), "other");
    assert_eq!(lb.get("h", "/"), "other");
}

#[test]
fn query_parameters_match_decoded_values() {
    let lb = Routed::start(
        &["v2", "spaced", "other"],
        &[
            "{match: {query: {version: '2'}}, pool: v2}",
            "{match: {query: {name: 'a b/c'}}, pool: spaced}",
            "{pool: other}",
        ],
    );
    assert_eq!(lb.get("h", "/?version=2"), "v2");
    assert_eq!(lb.get("h", "/items?a=1&version=2&b=3"), "v2");
    assert_eq!(lb.get("h", "/?version=20"), "other");
    assert_eq!(lb.get("h", "/?Version=2"), "other");
    assert_eq!(lb.get("h", "/version=2"), "other");
    // Percent-encoded (and form-encoded `+`) values are compared decoded.
    assert_eq!(lb.get("h", "/?name=a%20b%2Fc"), "spaced");
    assert_eq!(lb.get("h", "/?name=a+b%2fc"), "spaced");
    assert_eq!(lb.get("h", "/?name=a%20b"), "other");
    assert_eq!(lb.get("h", "/?name=a%2520b%2Fc"), "other");
}

#[test]
fn cookie_matches_its_exact_value() {
    let lb = Routed::start(
        &["beta", "other"],
        &[
            "{match: {cookie: {beta: 'yes'}}, pool: beta}",
            "{pool: other}",
        ],
    );
    let with = |cookie: &str| lb.hit(Request::get("/").header("cookie", cookie));
    assert_eq!(with("beta=yes"), "beta");
    assert_eq!(with("session=abc; beta=yes; theme=dark"), "beta");
    assert_eq!(with("beta=no"), "other");
    assert_eq!(with("beta=Yes"), "other");
    assert_eq!(with("xbeta=yes"), "other");
    assert_eq!(lb.hit(Request::get("/").header("x-beta", "yes")), "other");
    assert_eq!(lb.get("h", "/"), "other");
}

/// A request meeting every condition of the combined route except number `skip`
/// (0 method, 1 path_prefix, 2 path_regex, 3 query, 4 host, 5 header, 6 cookie).
fn combined_request(skip: Option<usize>) -> Request {
    let pick = |i: usize, good: &'static str, bad: &'static str| match skip == Some(i) {
        true => bad,
        false => good,
    };
    let path = match skip {
        Some(1) => "/web/v3/items",
        Some(2) => "/api/items",
        _ => "/api/v3/items",
    };
    let query = pick(3, "?a=1&version=2", "?a=1&version=1");
    Request::new(pick(0, "POST", "GET"), &format!("{path}{query}"))
        .header("host", pick(4, "API.example.com:8080", "www.example.com"))
        .header("x-canary", pick(5, "1", "0"))
        .header("cookie", pick(6, "id=7; beta=yes", "id=7; beta=no"))
        .body("x")
}

#[test]
fn every_condition_of_a_route_must_hold() {
    let lb = Routed::start(
        &["all", "other"],
        &[
            "{match: {method: [POST, PUT], path_prefix: /api/, query: {version: '2'}, \
             host: api.example.com, headers: {x-canary: '1'}, cookie: {beta: 'yes'}, \
             path_regex: '/v[0-9]+/'}, pool: all}",
            "{pool: other}",
        ],
    );
    assert_eq!(lb.hit(combined_request(None)), "all");
    for skipped in 0..7 {
        assert_eq!(
            lb.hit(combined_request(Some(skipped))),
            "other",
            "condition {skipped} does not hold, yet the combined route matched"
        );
    }
    // `path` with other conditions: both must hold.
    let lb = Routed::start(
        &["exact", "other"],
        &[
            "{match: {path: /login, method: POST}, pool: exact}",
            "{pool: other}",
        ],
    );
    assert_eq!(lb.hit(Request::post("/login", "x")), "exact");
    assert_eq!(lb.hit(Request::get("/login")), "other");
    assert_eq!(lb.hit(Request::post("/logout", "x")), "other");
}

#[test]
fn first_matching_route_wins() {
    let lb = Routed::start(
        &["v2", "api", "never", "fallback"],
        &[
            "{match: {path_prefix: /api/v2/}, pool: v2}",
            "{match: {path_prefix: /api/}, pool: api}",
            "{match: {path_prefix: /api/v3/}, pool: never}",
            "{pool: fallback}",
            "{match: {path: /late}, pool: never}",
        ],
    );
    assert_eq!(lb.get("h", "/api/v2/x"), "v2");
    assert_eq!(lb.get("h", "/api/v3/x"), "api");
    assert_eq!(lb.get("h", "/api/"), "api");
    assert_eq!(lb.get("h", "/late"), "fallback");
    assert_eq!(lb.get("h", "/"), "fallback");
    assert_eq!(lb.backend("never").requests(), 0);
}

#[test]
fn no_matching_route_is_404() {
    let lb = Routed::start(
        &["api"],
        &[
            "{match: {host: api.example.com}, pool: api}",
            "{match: {path_prefix: /static/, method: GET}, pool: api}",
        ],
    );
    assert_eq!(lb.get("api.example.com", "/"), "api");
    assert_eq!(lb.get("web.example.com", "/"), "404");
    assert_eq!(lb.get("web.example.com", "/api/"), "404");
    assert_eq!(
        lb.hit(Request::post("/static/x", "body").header("host", "web.example.com")),
        "404"
    );
    assert_eq!(lb.get("web.example.com", "/static/x"), "api");
    assert_eq!(lb.backend("api").requests(), 2);
}

#[test]
fn a_404_keeps_the_connection_open() {
    let lb = Routed::start(&["api"], &["{match: {host: api.example.com}, pool: api}"]);
    let mut conn = Conn::open(lb.addr).expect("connect to tioga");
    let miss = Request::get("/").header("host", "web.example.com");
    let hit = Request::get("/").header("host", "api.example.com");
    for (req, expected) in [
        (&miss, 404),
        (&miss, 404),
        (&hit, 200),
        (&miss, 404),
        (&hit, 200),
    ] {
        let resp = conn.send(req).expect("answer on the same connection");
        assert_eq!(resp.status, expected);
        assert!(
            conn.is_reusable(),
            "the {expected} closed the connection: {:?}",
            resp.headers
        );
    }
    assert_eq!(lb.backend("api").requests(), 2);
}
