//! Validation of the TLS and HTTP-version keys: a listener's `tls` (certificates,
//! `client_ca`, `min_version`) and a pool's `protocol` and `tls`.

use super::file::{PoolSection, TlsSection};
use super::problems::{join, Problems};
use super::{CertFiles, TlsSpec, TlsVersion};
use crate::upstream::{BackendTls, Link, Protocol};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};

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
    if tls.is_some() && s.health_check.as_ref().is_some_and(|h| h.kind == "http") {
        p.add(
            join(&join(path, "health_check"), "type"),
            "an http check speaks plain HTTP/1.1 and this pool's backends speak TLS: use `type: tcp`",
        );
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

/// Checks that a PEM file can be read and holds a block of `kind`. Relative paths are
/// taken from the working directory first, then from the config file's folder.
fn pem_file(base: &Path, name: &str, path: &str, kind: &str, p: &mut Problems) -> Option<PathBuf> {
    let direct = PathBuf::from(name);
    let file = if direct.is_relative() && !direct.exists() {
        base.join(&direct)
    } else {
        direct
    };
    match std::fs::read_to_string(&file) {
        Ok(text) if text.contains(&format!("{kind}-----")) => Some(file),
        Ok(_) => {
            p.add(
                path,
                format!("{} holds no PEM {kind} block", file.display()),
            );
            None
        }
        Err(e) => {
            p.add(path, format!("cannot read {}: {e}", file.display()));
            None
        }
    }
}
