//! `tioga explain`, `GET /explain`, config `tests:` and `-t --diff`, through the real
//! binary: for 1,000 generated requests over a config with every matcher kind, the
//! route `explain --json` names is the route the proxy took (read from its access
//! log), and the admin endpoint's JSON is the command's; a failing test is a config
//! error at `tests[i]` with its line; `--diff` groups changes and marks each.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tioga");

/// Every matcher kind, a route without a pool, a consistent_hash pool, and no
/// catch-all (so some requests get 404).
fn config(web: SocketAddr, admin: SocketAddr, a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "admin: {{bind: '{admin}'}}
access_log: {{target: '@DIR@/access.log', format: json}}
pools:
  one: {{backends: ['{a}']}}
  two: {{backends: ['{b}']}}
  hashed: {{backends: ['{a}', '{b}'], balance: consistent_hash, hash_key: 'cookie:sid'}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    routes:
      - match: {{host: '*.api.example', method: [GET, HEAD], path_prefix: /v1/}}
        pool: one
      - match: {{host: api.example, path: /exact}}
        pool: two
      - match: {{path_regex: '^/(users|items)/[0-9]+$'}}
        pool: hashed
      - match: {{headers: {{x-canary: '1'}}, path_prefix: /v}}
        pool: one
      - match: {{query: {{version: '2'}}}}
        pool: two
      - match: {{cookie: {{beta: 'yes'}}, method: POST}}
        pool: hashed
      - match: {{method: DELETE, path_prefix: /old/}}
        filters: [{{redirect: {{to: 'https://example.com$path', status: 301}}}}]
      - match: {{host: www.example, path_prefix: /static/}}
        pool: two
"
    )
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let n = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        from[(n >> 33) as usize % from.len()]
    }
}

/// One generated request: method, target (path and query), headers.
struct Generated {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

fn generate(rng: &mut Rng) -> Generated {
    let method = rng.pick(&["GET", "GET", "POST", "HEAD", "DELETE", "PUT"]);
    let host = rng.pick(&[
        "api.example",
        "x.api.example",
        "Y.API.example",
        "api.example:8080",
        "www.example",
        "other.test",
        "a.b.api.example",
    ]);
    let path = rng.pick(&[
        "/v1/",
        "/v1/users",
        "/v2/x",
        "/exact",
        "/exact/",
        "/users/12",
        "/items/x",
        "/items/7",
        "/static/a.css",
        "/v1/../exact",
        "/old/page",
        "/",
        "/a//b",
        "/%76%31/users",
    ]);
    let query = rng.pick(&[
        "",
        "",
        "version=2",
        "version=3",
        "a=1&version=2",
        "version=%32",
    ]);
    let mut headers = vec![("host".to_string(), host.to_string())];
    match rng.pick(&["", "", "1", "0"]) {
        "" => {}
        v => headers.push(("x-canary".into(), v.into())),
    }
    match rng.pick(&["", "", "beta=yes", "beta=no", "sid=42; beta=yes", "sid=7"]) {
        "" => {}
        v => headers.push(("cookie".into(), v.into())),
    }
    let target = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    Generated {
        method: method.into(),
        target,
        headers,
    }
}

/// `tioga -c CONFIG explain …`: exit code and stdout.
fn explain_cli(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("-c")
        .arg(config)
        .arg("explain")
        .args(args)
        .output()
        .expect("run tioga explain");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn explain_json(config: &std::path::Path, web: SocketAddr, g: &Generated) -> (i32, Value) {
    let url = format!("http://{web}{}", g.target);
    let mut args = vec![g.method.clone(), url, "--json".into()];
    for (n, v) in &g.headers {
        args.push("-H".into());
        args.push(format!("{n}: {v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = explain_cli(config, &args);
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"));
    (code, json)
}

fn explain_admin(admin: SocketAddr, web: SocketAddr, g: &Generated) -> Value {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("method", &g.method)
        .append_pair("url", &format!("http://{web}{}", g.target));
    for (n, v) in &g.headers {
        q.append_pair("header", &format!("{n}: {v}"));
    }
    let resp = get(admin, &format!("/explain?{}", q.finish())).expect("GET /explain");
    assert_eq!(resp.status, 200, "{}", resp.text());
    serde_json::from_str(&resp.text()).expect("explain JSON")
}

#[test]
fn explain_agrees_with_the_proxy_on_1000_generated_requests() {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let (web, admin) = (free_addr(), free_addr());
    let tioga = Tioga::start(&config(web, admin, a.addr(), b.addr()), &[web, admin]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let requests: Vec<Generated> = (0..1000).map(|_| generate(&mut rng)).collect();

    // Through the proxy, one at a time, so the access log is in request order.
    let mut conn: Option<Conn> = None;
    for g in &requests {
        let mut req = Request::new(&g.method, &g.target);
        for (n, v) in &g.headers {
            req = req.header(n, v);
        }
        let c = match &mut conn {
            Some(c) if c.is_reusable() => c,
            slot => slot.insert(Conn::open(web).expect("connect")),
        };
        c.send(&req).expect("an answer");
    }
    let log_path = tioga.dir().join("access.log");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until(Duration::from_secs(20), "1000 access-log lines", || {
        read_log().lines().count() >= 1000
    });
    let taken: Vec<Value> = read_log()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON log line")["route"].clone())
        .collect();
    assert_eq!(taken.len(), 1000);

    // The command, four at a time (each is a process reading the config).
    let config = tioga.config_path().to_path_buf();
    let explained: Vec<(i32, Value)> = std::thread::scope(|s| {
        let chunks: Vec<_> = requests
            .chunks(250)
            .map(|chunk| {
                let config = &config;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|g| explain_json(config, web, g))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut routes_seen = std::collections::BTreeSet::new();
    for (i, ((code, json), g)) in explained.iter().zip(&requests).enumerate() {
        let what = format!("request {i}: {} {} {:?}", g.method, g.target, g.headers);
        assert_eq!(
            json["route"], taken[i],
            "{what}: explain {json} vs the proxy"
        );
        assert_eq!(*code, if json["route"].is_null() { 3 } else { 0 }, "{what}");
        routes_seen.insert(json["route"].to_string());
        if i % 4 == 0 {
            assert_eq!(&explain_admin(admin, web, g), json, "{what}: GET /explain");
        }
    }
    // The generator reaches every route and the 404.
    assert_eq!(routes_seen.len(), 9, "{routes_seen:?}");
}

#[test]
fn explain_reports_each_failed_condition_and_the_hash_backend() {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let (web, admin) = (free_addr(), free_addr());
    let tioga = Tioga::start(&config(web, admin, a.addr(), b.addr()), &[web, admin]);
    let url = format!("http://{web}/users/7");
    let (code, out) = explain_cli(
        tioga.config_path(),
        &[
            "GET",
            &url,
            "-H",
            "Host: api.example",
            "-H",
            "cookie: sid=42",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["route"], "web[2]");
    assert_eq!(json["pool"], "hashed");
    let failed: Vec<&str> = json["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["failed"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(failed, ["host", "path", "-"]);
    // The backend the proxy sends this key to.
    let backend = json["backend"].as_str().unwrap().to_string();
    let resp = Request::get("/users/7")
        .header("host", "api.example")
        .header("cookie", "sid=42")
        .send(web)
        .unwrap();
    let name = resp.header("x-backend").unwrap().to_string();
    let expected = if name == "a" { a.addr() } else { b.addr() };
    assert_eq!(backend, expected.to_string());

    // For a person, and the 404 exit code.
    let (code, text) = explain_cli(tioga.config_path(), &["GET", &format!("http://{web}/nope")]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("web[0]           no match: method") || text.contains("no match: host"),
        "{text}"
    );
    assert!(text.ends_with("no route: 404\n"), "{text}");
}

fn tests_config(expect_second: &str) -> String {
    format!(
        "pools:
  api: {{backends: ['127.0.0.1:9']}}
  web: {{backends: ['127.0.0.1:9']}}
listeners:
  web:
    protocol: http
    bind: '127.0.0.1:{port}'
    routes:
      - match: {{host: api.example.com, path_prefix: /v1/}}
        pool: api
      - match: {{path: /old}}
        filters: [{{redirect: {{to: 'https://example.com/new', status: 301}}}}]
      - match: {{headers: {{x-canary: '1'}}}}
        pool: web
tests:
  - request: GET https://api.example.com/v1/users?id=3
    expect: {{route: 'web[0]', pool: api}}
  - request: GET http://www.example.com/old
    expect: {expect_second}
  - request: GET http://www.example.com/
    headers: {{x-canary: 1}}
    from: 10.0.0.7
    expect: {{route: 'web[2]', pool: web}}
  - request: GET http://www.example.com/
    expect: {{status: 404}}
",
        port = free_port()
    )
}

#[test]
fn config_tests_pass_and_fail_through_dash_t() {
    let (code, err) = check_config(&tests_config("{status: 301}"));
    assert_eq!(code, 0, "{err}");

    let (code, err) = check_config(&tests_config("{route: 'web[2]'}"));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{CONFIG_FILE}:18: tests[1]: GET http://www.example.com/old: expected route web[2], got route web[1], status 301"
        )),
        "{err}"
    );
    assert!(err.contains("1 problem(s)"), "{err}");

    // A test of the wrong form is reported like any other key.
    let (code, err) = check_config(&tests_config("{}"));
    assert_eq!(code, 1);
    assert!(
        err.contains("tests[1].expect: expect at least one of route, pool, status"),
        "{err}"
    );
}

#[test]
fn a_start_with_a_failing_test_serves_nothing() {
    let mut tioga = Tioga::spawn(&tests_config("{status: 302}"), &[]);
    assert_eq!(tioga.exit_code(Duration::from_secs(20)), Some(1));
    assert!(tioga
        .log()
        .contains("expected status 302, got route web[1], status 301"));
}

#[test]
fn diff_groups_changes_and_says_how_each_applies() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yaml");
    let new = dir.path().join("new.yaml");
    let base = "server: {threads: 2}
pools:
  api: {backends: ['127.0.0.1:9001', '127.0.0.1:9002']}
listeners:
  web:
    protocol: http
    bind: 127.0.0.1:PORT
    routes:
      - match: {path_prefix: /api/}
        pool: api
        filters: [{strip_prefix: /api}]
";
    let port = free_port().to_string();
    std::fs::write(&old, base.replace("PORT", &port)).unwrap();
    let changed = base
        .replace("PORT", &port)
        .replace("threads: 2", "threads: 4")
        .replace(
            "'127.0.0.1:9002'",
            "{address: '127.0.0.1:9002', weight: 3}, '127.0.0.1:9003'",
        )
        .replace(
            "[{strip_prefix: /api}]",
            "[{strip_prefix: /api}, {rate_limit: {rate: 10}}]",
        )
        .replace("    routes:\n", "    healthz: /healthz\n    routes:\n")
        + "      - pool: api\n";
    std::fs::write(&new, changed).unwrap();
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&new)
        .args(["-t", "--diff"])
        .arg(&old)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!(
        "{}: configuration is valid
server:
  ~ server.threads: 2 → 4  [needs upgrade]
listeners:
  ~ web: healthz: none → /healthz  [in place]
routes:
  + web[1] (match none, pool api)  [in place]
backends:
  ~ api 127.0.0.1:9002: weight 1 → 3  [in place]
  + api 127.0.0.1:9003 (weight 1)  [in place]
filters:
  + web[0].filters[1] {{\"rate_limit\":{{\"rate\":10}}}}  [in place]
6 change(s): 5 in place, 1 need an upgrade (-u + SIGQUIT)
",
        new.display()
    );
    assert_eq!(text, expected);
}

#[test]
fn an_upgrade_whose_tests_fail_is_refused_before_it_asks_for_the_sockets() {
    let backend = spawn_http_backend("a");
    let web = free_addr();
    let yaml = |expect: &str| {
        format!(
            "server: {{pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}
pools:
  app: {{backends: ['{}']}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    routes:
      - match: {{path_prefix: /api/}}
        pool: app
tests:
  - request: GET http://{web}/api/x
    expect: {expect}
",
            backend.addr()
        )
    };
    let mut old = Tioga::start(&yaml("{route: 'web[0]'}"), &[web]);
    old.rewrite_config(&yaml("{status: 404}"));
    let mut new = old.spawn_again(&["-u"]);
    assert_eq!(new.exit_code(Duration::from_secs(10)), Some(1));
    let log = new.log();
    assert!(
        log.contains("tests[0]: GET") && log.contains("expected status 404, got route web[0]"),
        "{log}"
    );
    assert!(
        !old.dir().join("up.sock").exists(),
        "the refused -u bound its socket"
    );
    assert!(old.is_running());
    assert_eq!(get(web, "/api/x").unwrap().status, 200);
}
