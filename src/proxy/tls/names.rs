//! The names a certificate is for, and whether a client's SNI matches one of them.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The DNS names of a leaf certificate (DER): its subject alternative names, or its
/// common name when it has none; lowercase. Wildcards stay as written (`*.a.example`).
pub(super) fn of_certificate(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(names)
}

/// The subject of a certificate (DER) as RFC 4514 text (`CN=client,O=Example`).
pub(crate) fn subject(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.subject().to_string())
}

/// Whether `sni` (lowercase) is `name`, or matches `name` = `*.rest` by one label: the
/// leftmost label alone is replaced, as RFC 6125 §6.4.3 allows.
pub(super) fn matches(name: &str, sni: &str) -> bool {
    match name.strip_prefix("*.") {
        None => name == sni,
        Some(rest) => sni
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_one_label_wildcards() {
        assert!(matches("a.example", "a.example"));
        assert!(!matches("a.example", "b.example"));
        assert!(matches("*.a.example", "x.a.example"));
        assert!(!matches("*.a.example", "a.example"), "no label to replace");
        assert!(!matches("*.a.example", "y.x.a.example"), "one label only");
        assert!(!matches("*.a.example", ".a.example"));
    }

    #[test]
    fn names_come_from_the_alternative_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["A.example".into(), "*.b.example".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            of_certificate(cert.der()).unwrap(),
            ["a.example", "*.b.example"]
        );
        assert!(of_certificate(b"not a certificate").is_err());
    }
}
