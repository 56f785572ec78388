//! TCP routes, `peek_timeout` and the PROXY protocol keys: accepted as the contract
//! writes them, and each mistake reported with its key path.

use crate::config::validate::validate;
use crate::config::{Config, ListenerKind, Problem, ProxyVersion};
use crate::filter::Registry;
use std::path::Path;
use std::time::Duration;

fn check(yaml: &str) -> Result<Config, Vec<Problem>> {
    validate(Path::new("lb.yaml"), yaml, &Registry::with_builtins())
        .map_err(|e| e.problems().to_vec())
}

fn paths(yaml: &str) -> Vec<String> {
    let mut found: Vec<String> = check(yaml)
        .expect_err("config should be invalid")
        .into_iter()
        .map(|p| p.path)
        .collect();
    found.sort();
    found
}

const CONTRACT: &str = r#"
pools:
  a: {backends: [127.0.0.1:9001]}
  internal: {backends: [127.0.0.1:9002], proxy_protocol: v1}
  default: {backends: [127.0.0.1:9003]}
  app:
    backends: [10.0.0.9:8080]
    proxy_protocol: v2
listeners:
  edge_tls:
    protocol: tcp
    bind: 0.0.0.0:443
    routes:
      - match: {sni: "*.a.example"}
        pool: a
      - match: {source: [10.0.0.0/8]}
        pool: internal
      - pool: default
    proxy_protocol:
      trusted: [10.0.0.0/8]
  web:
    protocol: http
    bind: 127.0.0.1:8080
    proxy_protocol: {trusted: [127.0.0.1, "::1"]}
    routes: [{pool: app}]
"#;

#[test]
fn accepts_the_contract_example() {
    let config = check(CONTRACT).unwrap();
    let app = config.pool("app").unwrap();
    assert_eq!(app.proxy_protocol, Some(ProxyVersion::V2));
    assert_eq!(config.pool("a").unwrap().proxy_protocol, None);
    let edge = config
        .listeners
        .iter()
        .find(|l| l.name == "edge_tls")
        .unwrap();
    assert_eq!(edge.proxy_protocol.as_ref().unwrap().len(), 1);
    let ListenerKind::Tcp {
        routes,
        peek_timeout,
        ..
    } = &edge.kind
    else {
        panic!("a tcp listener");
    };
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[0].matcher.describe(), "sni=*.a.example");
    assert_eq!(routes[2].matcher.describe(), "");
    assert_eq!(*peek_timeout, Duration::from_secs(5));
}

#[test]
fn a_pool_listener_is_one_route_that_matches_all() {
    let config = check(
        "pools: {p: {backends: [127.0.0.1:1]}}\n\
         listeners: {l: {protocol: tcp, bind: 127.0.0.1:2, pool: p, peek_timeout: 250ms}}\n",
    )
    .unwrap();
    let ListenerKind::Tcp {
        routes,
        peek_timeout,
        ..
    } = &config.listeners[0].kind
    else {
        panic!("a tcp listener");
    };
    assert_eq!((routes.len(), routes[0].pool.as_str()), (1, "p"));
    assert_eq!(*peek_timeout, Duration::from_millis(250));
    assert!(config.listeners[0].proxy_protocol.is_none());
}

#[test]
fn each_mistake_is_reported_with_its_path() {
    let yaml = r#"
pools:
  p: {backends: [127.0.0.1:1], proxy_protocol: v3}
listeners:
  both: {protocol: tcp, bind: 127.0.0.1:2, pool: p, routes: [{pool: p}]}
  neither: {protocol: tcp, bind: 127.0.0.1:3}
  bad:
    protocol: tcp
    bind: 127.0.0.1:4
    peek_timeout: soon
    proxy_protocol: {trusted: []}
    routes:
      - match: {sni: "a.*.example", source: [10.0.0.0/40]}
        pool: p
      - match: {host: a.example}
        pool: p
      - pool: nope
  web:
    protocol: http
    bind: 127.0.0.1:5
    peek_timeout: 1s
    routes: [{pool: p}]
  web2:
    protocol: http
    bind: 127.0.0.1:6
    proxy_protocol: {trusted: [not-an-ip]}
    routes: [{pool: p}]
"#;
    assert_eq!(
        paths(yaml),
        [
            "listeners.bad.peek_timeout",
            "listeners.bad.proxy_protocol.trusted",
            "listeners.bad.routes[0].match.sni[0]",
            "listeners.bad.routes[0].match.source[0]",
            "listeners.bad.routes[1].match.host",
            "listeners.bad.routes[2].pool",
            "listeners.both.routes",
            "listeners.neither.pool",
            "listeners.web.peek_timeout",
            "listeners.web2.proxy_protocol.trusted[0]",
            "pools.p.proxy_protocol",
        ]
    );
}
