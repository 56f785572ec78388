//! Chooses a listener's certificate by the client's SNI, in Pingora's rustls
//! certificate-resolver hook (`TlsSettings::set_cert_resolver`).
//!
//! Each certificate answers for its own names (exact or one-label wildcard); the first
//! certificate in file order that matches wins, and the first one of all answers a
//! client that sends no SNI or a name none has. `min_version: "1.3"` starts here: a
//! client offering no TLS 1.3 cipher suite cannot speak 1.3 and is refused before a
//! certificate is sent (some 1.2-only clients offer them all the same: the accept
//! stack closes those after the handshake).

use super::names;
use crate::vocab::TlsVersion;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// One certificate with the names it answers for.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) names: Vec<String>,
    pub(super) key: Arc<CertifiedKey>,
}

/// The certificates of one listener (at least one).
#[derive(Debug)]
pub(super) struct CertSet {
    pub(super) entries: Vec<Entry>,
    pub(super) min_version: TlsVersion,
}

/// Answers from the listener's current certificates (a reload replaces them).
#[derive(Debug)]
pub(super) struct SniResolver(pub(super) Arc<super::Certificates>);

impl CertSet {
    /// The entry for `sni`: the first whose names match, else the first of all.
    fn choose(&self, sni: Option<&str>) -> Option<&Entry> {
        let chosen = sni.map(str::to_ascii_lowercase).and_then(|sni| {
            self.entries
                .iter()
                .find(|e| e.names.iter().any(|n| names::matches(n, &sni)))
        });
        chosen.or(self.entries.first())
    }
}

/// Whether a cipher suite is one of TLS 1.3's (0x13xx).
fn is_tls13(suite: &rustls::CipherSuite) -> bool {
    u16::from(*suite) >> 8 == 0x13
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.0 .0.load();
        if set.min_version == TlsVersion::V1_3 && !hello.cipher_suites().iter().any(is_tls13) {
            log::debug!("refused a TLS handshake: the client cannot speak TLS 1.3 (min_version)");
            return None;
        }
        set.choose(hello.server_name()).map(|e| e.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[&str]) -> Entry {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let key = CertifiedKey::from_der(vec![cert.der().clone()], der, &provider).unwrap();
        Entry {
            names: names.iter().map(|n| n.to_string()).collect(),
            key: Arc::new(key),
        }
    }

    #[test]
    fn the_matching_certificate_else_the_first() {
        let r = CertSet {
            entries: vec![
                entry(&["a.example"]),
                entry(&["*.b.example"]),
                entry(&["c.example"]),
            ],
            min_version: TlsVersion::V1_2,
        };
        let names_of = |sni| r.choose(sni).unwrap().names[0].clone();
        assert_eq!(names_of(Some("a.example")), "a.example");
        assert_eq!(names_of(Some("X.B.example")), "*.b.example");
        assert_eq!(names_of(Some("c.example")), "c.example");
        assert_eq!(names_of(Some("unknown.example")), "a.example");
        assert_eq!(names_of(None), "a.example");
    }

    #[test]
    fn tls13_suites_are_recognised() {
        assert!(is_tls13(&rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
        assert!(!is_tls13(
            &rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        ));
    }
}
