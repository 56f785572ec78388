//! Validation: every contract key accepted, every listed error caught at once with
//! its key path and line.

use super::*;

fn check(yaml: &str) -> Result<Config, Vec<Problem>> {
    validate(Path::new("lb.yaml"), yaml, &Registry::with_builtins())
        .map_err(|e| e.problems().to_vec())
}

fn problems(yaml: &str) -> Vec<Problem> {
    check(yaml).expect_err("config should be invalid")
}

const FULL: &str = r#"
server:
  threads: 2
  pid_file: /tmp/t.pid
  upgrade_sock: /tmp/t.sock
  grace_period: 5s
  graceful_shutdown_timeout: 500ms
pools:
  web:
    backends:
      - 127.0.0.1:9001
      - address: 127.0.0.1:9002
        weight: 3
    balance: round_robin
    health_check: {type: http, interval: 1s, timeout: 1s, rise: 2, fall: 3, path: /health, expect_status: 200}
    connect_timeout: 1s
    read_timeout: 30s
    retries: 2
  api:
    backends: ["[::1]:9003"]
    balance: consistent_hash
    hash_key: header:x-user
  db:
    backends: [127.0.0.1:5432]
    balance: least_conn
    health_check: {type: tcp}
listeners:
  web:
    protocol: http
    bind: [127.0.0.1:8080, "[::1]:8080"]
    routes:
      - match:
          host: "*.example.com"
          path_prefix: /api/
          method: [GET, POST]
          headers: {x-canary: "1"}
          query: {version: 2}
          cookie: {beta: "yes"}
        pool: api
      - pool: web
  db:
    protocol: tcp
    bind: 127.0.0.1:15432
    pool: db
"#;

#[test]
fn accepts_every_contract_key() {
    let c = check(FULL).unwrap();
    assert_eq!(c.server.threads, 2);
    assert_eq!(
        c.server.graceful_shutdown_timeout,
        Duration::from_millis(500)
    );
    let web = c.pool("web").unwrap();
    assert_eq!(web.backends[1].weight, 3);
    assert_eq!(web.retries, 2);
    assert_eq!(web.read_timeout, Duration::from_secs(30));
    let hc = web.health_check.as_ref().unwrap();
    assert_eq!((hc.rise, hc.fall), (2, 3));
    assert_eq!(
        hc.probe,
        Probe::Http {
            path: "/health".into(),
            expect_status: Some(200)
        }
    );
    assert!(matches!(
        c.pool("api").unwrap().balance,
        Balance::ConsistentHash(HashKey::Header(_))
    ));
    assert_eq!(c.pool("db").unwrap().balance, Balance::LeastConn);
    assert_eq!(c.listeners.len(), 2);
    let l = c.listeners.iter().find(|l| l.name == "web").unwrap();
    assert_eq!(l.binds.len(), 2);
}

#[test]
fn defaults_apply() {
    let c = check("pools: {p: {backends: [127.0.0.1:1]}}\nlisteners: {l: {protocol: tcp, bind: 127.0.0.1:2, pool: p}}").unwrap();
    let p = c.pool("p").unwrap();
    assert_eq!(p.balance, Balance::RoundRobin);
    assert_eq!(p.connect_timeout, Duration::from_secs(1));
    assert_eq!(p.read_timeout, Duration::from_secs(60));
    assert_eq!(p.retries, 1);
    assert!(p.health_check.is_none());
}

#[test]
fn reports_every_problem_at_once_with_path_and_line() {
    let yaml = "\
pools:
  web:
    backends: []
    balance: consistent_hash
  api:
    backends: [nonsense]
    connect_timeout: soon
    colour: blue
listeners:
  a:
    protocol: http
    bind: 127.0.0.1:8080
    routes:
      - match: {path_regex: \"(\"}
        pool: web
      - pool: apii
  b:
    protocol: tcp
    bind: 127.0.0.1:8080
    pool: nope
";
    let ps = problems(yaml);
    let find = |path: &str| {
        ps.iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("no problem at {path}: {ps:#?}"))
    };
    assert!(find("pools.web.backends").message.contains("empty"));
    assert_eq!(find("pools.web.backends").line, Some(3));
    assert!(find("pools.web.balance").message.contains("hash_key"));
    assert_eq!(find("pools.api.colour").line, Some(8));
    assert!(find("pools.api.colour").message.contains("unknown key"));
    assert!(find("listeners.a.routes[0].match.path_regex").line == Some(14));
    let unknown = find("listeners.a.routes[1].pool");
    assert_eq!(unknown.message, "unknown pool \"apii\" (known: api, web)");
    assert_eq!(unknown.line, Some(16));
    assert!(find("listeners.b.pool")
        .message
        .contains("unknown pool \"nope\""));
    assert!(find("listeners.b.bind")
        .message
        .contains("already used by listeners.a"));
}

#[test]
fn unknown_pool_error_survives_bad_pool_siblings() {
    // api's own error must not hide the reference check or the bad address.
    let ps = problems("pools:\n  api:\n    backends: [nonsense]\n    connect_timeout: soon\nlisteners: {l: {protocol: tcp, bind: 127.0.0.1:1, pool: api}}\n");
    assert!(
        ps.iter()
            .any(|p| p.path == "pools.api.backends[0]" && p.message.contains("not an address")),
        "{ps:#?}"
    );
    assert!(
        ps.iter()
            .any(|p| p.path == "pools.api.connect_timeout" && p.message.contains("not a duration")),
        "{ps:#?}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let ps = problems("pools:\n  web:\n    backends: [127.0.0.1:1\nlisteners: {}\n");
    assert_eq!(ps.len(), 1);
    assert!(ps[0].line.is_some(), "{ps:?}");
}

#[test]
fn wrong_types_and_unknown_top_level_keys() {
    let ps = problems("pool: {}\npools: {p: {backends: [127.0.0.1:1], retries: many}}\nlisteners: {l: {protocol: sctp, bind: 127.0.0.1:1}}\n");
    assert!(
        ps.iter()
            .any(|p| p.path == "pool" && p.message.contains("unknown key")),
        "{ps:#?}"
    );
    assert!(ps.iter().any(|p| p.path == "pools.p.retries"), "{ps:#?}");
    assert!(
        ps.iter()
            .any(|p| p.path == "listeners.l.protocol" && p.message.contains("`sctp`")),
        "{ps:#?}"
    );
}

#[test]
fn tls_files_must_be_readable() {
    let ps = problems("pools: {p: {backends: [127.0.0.1:1]}}\nlisteners: {l: {protocol: http, bind: 127.0.0.1:1, tls: {cert: /nonexistent/c.pem, key: /nonexistent/k.pem}, routes: [{pool: p}]}}\n");
    assert!(
        ps.iter()
            .any(|p| p.path == "listeners.l.tls.cert" && p.message.contains("cannot read")),
        "{ps:#?}"
    );
    assert!(
        ps.iter().any(|p| p.path == "listeners.l.tls.key"),
        "{ps:#?}"
    );
}

#[test]
fn weights_hash_keys_and_health_settings_are_checked() {
    let ps = problems("pools:\n  p:\n    backends: [{address: 127.0.0.1:1, weight: 0}]\n    balance: consistent_hash\n    hash_key: body\n    health_check: {type: tcp, path: /x, rise: 0}\nlisteners: {l: {protocol: tcp, bind: 127.0.0.1:2, pool: p}}\n");
    for path in [
        "pools.p.backends[0].weight",
        "pools.p.hash_key",
        "pools.p.health_check.path",
        "pools.p.health_check.rise",
    ] {
        assert!(ps.iter().any(|p| p.path == path), "missing {path}: {ps:#?}");
    }
}

#[test]
fn rendered_message_names_file_line_and_path() {
    let err = validate(
        Path::new("conf/lb.yaml"),
        "pools: {p: {backends: [127.0.0.1:1]}}\nlisteners:\n  l: {protocol: tcp, bind: 127.0.0.1:2, pool: q}\n",
        &Registry::with_builtins(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "conf/lb.yaml:3: listeners.l.pool: unknown pool \"q\" (known: p)"
    );
}

#[test]
fn zero_is_a_grace_period_but_not_a_timeout() {
    let base = "pools: {p: {backends: [127.0.0.1:1]}}\n\
                listeners: {l: {protocol: tcp, bind: 127.0.0.1:2, pool: p}}\n";
    let c = check(&format!(
        "server: {{grace_period: 0s, graceful_shutdown_timeout: 0s}}\n{base}"
    ))
    .unwrap();
    assert_eq!(c.server.grace_period, Duration::ZERO);
    assert_eq!(c.server.graceful_shutdown_timeout, Duration::ZERO);
    let found = problems(
        "pools: {p: {backends: [127.0.0.1:1], connect_timeout: 0s}}\n\
         listeners: {l: {protocol: tcp, bind: 127.0.0.1:2, pool: p}}\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "pools.p.connect_timeout");
}

#[test]
fn checking_an_access_log_file_does_not_create_it() {
    let dir = std::env::temp_dir().join(format!("tioga-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let yaml = |target: &std::path::Path| {
        format!(
            "access_log: {{target: '{}'}}\n\
             pools: {{p: {{backends: [127.0.0.1:1]}}}}\n\
             listeners: {{l: {{protocol: tcp, bind: 127.0.0.1:2, pool: p}}}}\n",
            target.display()
        )
    };
    check(&yaml(&log)).unwrap();
    assert!(!log.exists(), "the check created {}", log.display());
    let found = problems(&yaml(&dir.join("missing").join("access.log")));
    assert_eq!(found[0].path, "access_log.target");
    assert!(found[0].message.contains("does not exist"), "{found:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn busy_poll_is_a_tcp_listeners_window_of_at_most_1ms() {
    let busy = |c: &Config| match &c.listeners[0].kind {
        ListenerKind::Tcp { busy_poll, .. } => *busy_poll,
        _ => panic!("a tcp listener"),
    };
    let tcp = |extra: &str| {
        format!(
            "pools: {{p: {{backends: [127.0.0.1:1]}}}}\n\
             listeners: {{l: {{protocol: tcp, bind: 127.0.0.1:2, pool: p{extra}}}}}\n"
        )
    };
    assert_eq!(busy(&check(&tcp("")).unwrap()), Duration::from_micros(50));
    assert_eq!(
        busy(&check(&tcp(", busy_poll: 0s")).unwrap()),
        Duration::ZERO
    );
    assert_eq!(
        busy(&check(&tcp(", busy_poll: 200us")).unwrap()),
        Duration::from_micros(200)
    );
    for (extra, says) in [
        (", busy_poll: 5ms", "at most 1ms"),
        (", busy_poll: soon", "soon"),
    ] {
        let found = problems(&tcp(extra));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "listeners.l.busy_poll");
        assert!(found[0].message.contains(says), "{:?}", found[0].message);
    }
    let found = problems(
        "pools: {p: {backends: [127.0.0.1:1]}}\n\
         listeners: {h: {protocol: http, bind: 127.0.0.1:2, busy_poll: 50us, routes: [{pool: p}]}}\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "listeners.h.busy_poll");
}

#[test]
fn a_route_without_a_match_block_matches_everything() {
    let route: crate::config::file::RouteSection =
        serde_yaml::from_str("pool: web").expect("valid route");
    let m = crate::routing::Matcher::compile(&route.matches).expect("valid match");
    let (req, ()) = http::Request::get("/anything")
        .body(())
        .unwrap()
        .into_parts();
    assert!(m.matches(&req));
}

#[test]
fn head_rules_are_read_and_range_checked() {
    let with = |extra: &str| {
        format!(
            "pools: {{p: {{backends: [127.0.0.1:1]}}}}\nlisteners:\n  w:\n    protocol: http\n    bind: 127.0.0.1:8080\n{extra}    routes: [{{pool: p}}]\n"
        )
    };
    let c = check(&with("    normalize_path: false\n    max_request_header_size: 16KiB\n    max_uri_length: 2048\n    max_header_count: 50\n")).unwrap();
    let ListenerKind::Http { head, .. } = &c.listeners[0].kind else {
        panic!("an http listener");
    };
    assert!(!head.normalize_path);
    assert_eq!(
        (
            head.max_header_size,
            head.max_uri_length,
            head.max_header_count
        ),
        (16 * 1024, 2048, 50)
    );
    let bad = problems(&with(
        "    max_request_header_size: 2GiB\n    max_uri_length: 10\n    max_header_count: 0\n",
    ));
    let paths: Vec<&str> = bad.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listeners.w.max_request_header_size",
            "listeners.w.max_uri_length",
            "listeners.w.max_header_count"
        ]
    );
    assert!(bad[0].message.contains("not a size"), "{}", bad[0].message);
    assert!(
        bad[1].message.contains("out of range: 64 to"),
        "{}",
        bad[1].message
    );
    let tcp = "pools: {p: {backends: [127.0.0.1:1]}}\nlisteners:\n  t:\n    protocol: tcp\n    bind: 127.0.0.1:8080\n    pool: p\n    normalize_path: true\n";
    assert_eq!(problems(tcp)[0].path, "listeners.t.normalize_path");
}

#[test]
fn numbers_outside_their_range_are_refused_with_the_range() {
    let yaml = "server: {threads: 4294967296}
pools:
  p:
    backends: [127.0.0.1:0]
    retries: 1000
    read_timeout: 10000h
    health_check: {type: tcp, rise: 0, fall: 5000}
listeners:
  w: {protocol: tcp, bind: 127.0.0.1:0, pool: p}
";
    let found: Vec<(String, String)> = problems(yaml)
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect();
    let at = |path: &str| {
        found
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, m)| m.as_str())
            .unwrap_or_else(|| panic!("no problem at {path}: {found:?}"))
    };
    assert!(at("server.threads").contains("1 to 1024"));
    assert!(at("pools.p.backends[0]").contains("port 0"));
    assert!(at("pools.p.retries").contains("0 to 100"));
    assert!(at("pools.p.read_timeout").contains("at most 24h"));
    assert!(at("pools.p.health_check.rise").contains("1 to 1000"));
    assert!(at("pools.p.health_check.fall").contains("1 to 1000"));
    assert!(at("listeners.w.bind").contains("port 0"));
}

#[test]
fn a_deeply_nested_file_is_refused_before_parsing() {
    let yaml = format!("pools: {}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let found = problems(&yaml);
    assert_eq!(found[0].line, Some(1));
    assert!(found[0].message.contains("nested more than 64"));
}

#[test]
fn coalesce_is_an_http_listeners_boolean_on_by_default() {
    let coalesce = |c: &Config| match &c.listeners[0].kind {
        ListenerKind::Http { coalesce, .. } => *coalesce,
        _ => panic!("an http listener"),
    };
    let http = |extra: &str| {
        format!(
            "pools: {{p: {{backends: [127.0.0.1:1]}}}}\n\
             listeners: {{h: {{protocol: http, bind: 127.0.0.1:2, routes: [{{pool: p}}]{extra}}}}}\n"
        )
    };
    assert!(coalesce(&check(&http("")).unwrap()));
    assert!(coalesce(&check(&http(", coalesce: true")).unwrap()));
    assert!(!coalesce(&check(&http(", coalesce: false")).unwrap()));
    for value in ["yes", "1", "'false'", "[true]"] {
        let found = problems(&http(&format!(", coalesce: {value}")));
        assert_eq!(found.len(), 1, "{value}: {found:?}");
        assert_eq!(found[0].path, "listeners.h.coalesce");
        assert!(
            found[0].message.contains("expected a boolean"),
            "{value}: {:?}",
            found[0].message
        );
    }
    let found = problems(
        "pools: {p: {backends: [127.0.0.1:1]}}\n\
         listeners: {t: {protocol: tcp, bind: 127.0.0.1:2, pool: p, coalesce: false}}\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "listeners.t.coalesce");
}
