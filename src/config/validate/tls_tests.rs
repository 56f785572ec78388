//! Validation of the TLS and HTTP-version keys (`validate_tls`): listener `tls`, pool
//! `protocol` and `tls`.

use super::validate;
use crate::config::{ListenerKind, TlsVersion};
use crate::filter::Registry;
use crate::upstream::Protocol;
use std::path::Path;

/// The problems of `yaml` as (path, message) pairs; empty when it is valid.
fn problems(yaml: &str) -> Vec<(String, String)> {
    match validate(Path::new("lb.yaml"), yaml, &Registry::with_builtins()) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems()
            .iter()
            .map(|p| (p.path.clone(), p.message.clone()))
            .collect(),
    }
}

fn has(ps: &[(String, String)], path: &str, text: &str) -> bool {
    ps.iter().any(|(p, m)| p == path && m.contains(text))
}

/// A certificate and key, and a CA file, written to a temp dir.
fn files() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.path().join("k.pem"), c.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    (dir, cert.display().to_string(), key.display().to_string())
}

#[test]
fn listener_tls_takes_one_pair_or_a_list_and_the_other_keys() {
    let (_dir, cert, key) = files();
    let yaml = format!(
            "pools: {{p: {{backends: [127.0.0.1:1]}}}}
listeners:
  l:
    protocol: http
    bind: 127.0.0.1:1
    tls: {{certs: [{{cert: '{cert}', key: '{key}'}}, {{cert: '{cert}', key: '{key}'}}], client_ca: '{cert}', min_version: 1.3}}
    routes: [{{pool: p}}]
"
        );
    let config = validate(Path::new("lb.yaml"), &yaml, &Registry::with_builtins()).unwrap();
    let ListenerKind::Http {
        tls: Some(tls),
        http2,
        ..
    } = &config.listeners[0].kind
    else {
        panic!("an http listener with TLS");
    };
    assert_eq!(tls.certs.len(), 2);
    assert!(tls.client_ca.is_some());
    assert_eq!(tls.min_version, TlsVersion::V1_3);
    assert!(http2, "h2 by ALPN is on by default with TLS");

    let both = format!(
            "pools: {{p: {{backends: [127.0.0.1:1]}}}}\nlisteners: {{l: {{protocol: http, bind: 127.0.0.1:1, tls: {{cert: '{cert}', key: '{key}', certs: [], min_version: '1.1'}}, routes: [{{pool: p}}]}}}}\n"
        );
    let ps = problems(&both);
    assert!(has(&ps, "listeners.l.tls", "not both"), "{ps:?}");
    let ps = problems(&both.replace(&format!("cert: '{cert}', key: '{key}', certs: [], "), ""));
    assert!(
        has(&ps, "listeners.l.tls.min_version", "\"1.2\" or \"1.3\""),
        "{ps:?}"
    );
    assert!(has(&ps, "listeners.l.tls", "missing"), "{ps:?}");
}

#[test]
fn pool_protocol_and_tls_are_checked() {
    let (_dir, cert, _) = files();
    let ok = format!(
            "pools:\n  a: {{backends: [127.0.0.1:1], protocol: h2, tls: {{sni: api.internal, ca: '{cert}'}}}}\n  b: {{backends: [127.0.0.1:2], protocol: h2c}}\nlisteners: {{l: {{protocol: http, bind: 127.0.0.1:3, http2: true, routes: [{{pool: a}}, {{pool: b}}]}}}}\n"
        );
    let config = validate(Path::new("lb.yaml"), &ok, &Registry::with_builtins()).unwrap();
    let a = &config.pools.iter().find(|p| p.name == "a").unwrap().link;
    assert_eq!(a.protocol, Protocol::H2);
    let tls = a.tls.as_ref().unwrap();
    assert_eq!(
        (tls.sni.as_deref(), tls.verify, tls.ca.len()),
        (Some("api.internal"), true, 1)
    );
    let b = &config.pools.iter().find(|p| p.name == "b").unwrap().link;
    assert_eq!((b.protocol, b.tls.is_none()), (Protocol::H2c, true));

    let ps = problems("pools:\n  a: {backends: [127.0.0.1:1], protocol: h3}\n  b: {backends: [127.0.0.1:2], protocol: h2c, tls: {ca: /nonexistent/ca.pem, sni: 'bad name!'}}\nlisteners: {l: {protocol: tcp, bind: 127.0.0.1:3, pool: a, http2: true}}\n");
    assert!(
        has(&ps, "pools.a.protocol", "expected http1, h2 or h2c"),
        "{ps:?}"
    );
    assert!(
        has(&ps, "pools.b.tls", "h2c is HTTP/2 without TLS"),
        "{ps:?}"
    );
    assert!(has(&ps, "pools.b.tls.ca", "cannot read"), "{ps:?}");
    assert!(has(&ps, "pools.b.tls.sni", "not a DNS name"), "{ps:?}");
    assert!(has(&ps, "listeners.l.http2", "http listeners"), "{ps:?}");
    let ps = problems("pools: {a: {backends: [127.0.0.1:1], tls: {verify: false}, health_check: {type: http}}}\nlisteners: {l: {protocol: tcp, bind: 127.0.0.1:3, pool: a}}\n");
    assert!(
        has(&ps, "pools.a.health_check.type", "use `type: tcp`"),
        "{ps:?}"
    );
}
