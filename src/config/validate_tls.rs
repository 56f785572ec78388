//! Validation of the TLS and HTTP-version keys: a listener's `tls` (certificates,
//! `client_ca`, `min_version`) and a pool's `protocol` and `tls`.

use super::file::{PoolSection, TlsSection};
use super::problems::{join, Problems};
use super::validate_listener::pem_file;
use super::{CertFiles, TlsSpec, TlsVersion};
use crate::upstream::{BackendTls, Link, Protocol};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::Path;

/// A listener's `tls`: either `cert` and `key`, or `certs: [{cert, key}, ...]`.
pub(super) fn listener(
    base: &Path,
    path: &str,
    t: &TlsSection,
    p: &mut Problems,
) -> Option<TlsSpec> {
    let tls_path = join(path, "tls");
    let client_ca = t.client_ca.as_ref().and_then(|ca| {
        let at = join(&tls_path, "client_ca");
        let file = pem_file(base, ca, &at, "CERTIFICATE", p)?;
        ca_certificates(&file, &at, p)?;
        Some(file)
    });
    let min_version = match t.min_version.as_ref().map(|v| v.0.trim()) {
        None | Some("1.2") => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            p.add(
                join(&tls_path, "min_version"),
                format!("`{other}` is not a TLS version Tioga speaks: \"1.2\" or \"1.3\""),
            );
            TlsVersion::V1_2
        }
    };
    let mut pairs: Vec<(&str, &str, String)> = Vec::new();
    match (&t.cert, &t.key, &t.certs) {
        (Some(cert), Some(key), None) => pairs.push((cert, key, tls_path.clone())),
        (None, None, Some(list)) if !list.is_empty() => {
            for (i, c) in list.iter().enumerate() {
                pairs.push((&c.cert, &c.key, format!("{tls_path}.certs[{i}]")));
            }
        }
        (None, None, Some(_)) => {
            p.add(
                join(&tls_path, "certs"),
                "the list is empty: give at least one {cert, key}",
            );
            return None;
        }
        (_, _, Some(_)) => {
            p.add(
                &tls_path,
                "give either `cert` and `key` or a `certs` list, not both",
            );
            return None;
        }
        _ => {
            p.add(
                &tls_path,
                "missing: `cert` and `key` (one certificate) or `certs: [{cert, key}, ...]`",
            );
            return None;
        }
    }
    let mut certs = Vec::new();
    for (cert, key, at) in pairs {
        let cert = pem_file(base, cert, &join(&at, "cert"), "CERTIFICATE", p);
        let key = pem_file(base, key, &join(&at, "key"), "PRIVATE KEY", p);
        if let (Some(cert), Some(key)) = (cert, key) {
            certs.push(CertFiles { cert, key });
        }
    }
    if certs.is_empty() {
        return None;
    }
    Some(TlsSpec {
        certs,
        client_ca,
        min_version,
    })
}

/// A pool's `protocol` and `tls`.
pub(super) fn pool(base: &Path, path: &str, s: &PoolSection, p: &mut Problems) -> Link {
    let protocol = match s.protocol.as_deref().unwrap_or("http1") {
        "http1" => Protocol::Http1,
        "h2" => Protocol::H2,
        "h2c" => Protocol::H2c,
        other => {
            p.add(
                join(path, "protocol"),
                format!("unknown protocol `{other}` (expected http1, h2 or h2c)"),
            );
            Protocol::Http1
        }
    };
    let tls_path = join(path, "tls");
    if protocol == Protocol::H2c && s.tls.is_some() {
        p.add(
            &tls_path,
            "h2c is HTTP/2 without TLS: use `protocol: h2` for HTTP/2 over TLS",
        );
    }
    let tls = match (&s.tls, protocol) {
        (Some(t), _) => Some(BackendTls {
            sni: t.sni.clone(),
            verify: t.verify.unwrap_or(true),
            ca: t
                .ca
                .as_ref()
                .and_then(|ca| {
                    let at = join(&tls_path, "ca");
                    let file = pem_file(base, ca, &at, "CERTIFICATE", p)?;
                    ca_certificates(&file, &at, p)
                })
                .unwrap_or_default(),
        }),
        // h2 is TLS by definition: verified against the system's CAs.
        (None, Protocol::H2) => Some(BackendTls {
            verify: true,
            ..BackendTls::default()
        }),
        (None, _) => None,
    };
    if let Some(sni) = tls.as_ref().and_then(|t| t.sni.as_deref()) {
        if rustls::pki_types::ServerName::try_from(sni).is_err() {
            p.add(
                join(&tls_path, "sni"),
                format!("`{sni}` is not a DNS name or an IP address"),
            );
        }
    }
    Link { protocol, tls }
}

/// The certificates of a PEM CA file, each checked to parse as X.509.
fn ca_certificates(
    file: &Path,
    at: &str,
    p: &mut Problems,
) -> Option<Vec<CertificateDer<'static>>> {
    let certs = match CertificateDer::pem_file_iter(file) {
        Ok(iter) => iter.collect::<Result<Vec<_>, _>>(),
        Err(e) => Err(e),
    };
    let certs = match certs {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            p.add(at, format!("{} holds no certificate", file.display()));
            return None;
        }
        Err(e) => {
            p.add(at, format!("{}: {e}", file.display()));
            return None;
        }
    };
    for (i, c) in certs.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(c) {
            p.add(
                at,
                format!(
                    "{}: certificate {} does not parse: {e}",
                    file.display(),
                    i + 1
                ),
            );
            return None;
        }
    }
    Some(certs)
}

#[cfg(test)]
mod tests {
    use crate::config::validate::validate;
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
    }
}
