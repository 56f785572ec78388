//! TLS termination on HTTP listeners: Pingora's rustls acceptor with Tioga's
//! certificate resolver (several certificates chosen by SNI, [`resolver`]), client
//! certificates (`client_ca`, [`client_cert`]), `min_version` (refused in the resolver
//! when the ClientHello shows it, else closed once the handshake is done:
//! [`version_allowed`]), and HTTP/2 offered by ALPN. The certificate files are read when
//! the listener is built and again by every reload ([`Certificates::replace`]); the
//! client CA only when the listener is built (a new process).

mod client_cert;
mod names;
mod resolver;

pub(crate) use client_cert::ClientSubject;

use crate::vocab::{CertFiles, TlsSpec, TlsVersion};
use arc_swap::ArcSwap;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ALPN;
use pingora_core::protocols::tls::SslDigest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// A TLS listener's settings and its certificates, which a reload replaces.
#[derive(Debug, Clone)]
pub(crate) struct ListenerTls {
    /// The validated settings.
    pub(crate) spec: TlsSpec,
    /// The certificates the resolver answers with.
    pub(crate) certs: Arc<Certificates>,
}

/// A listener's certificates and `min_version`, swapped whole by a reload.
#[derive(Debug)]
pub(crate) struct Certificates(ArcSwap<resolver::CertSet>);

/// Certificates read from their files, ready to be put in place.
#[derive(Debug)]
pub(crate) struct CertSet(resolver::CertSet);

impl Certificates {
    /// Reads every certificate and key `spec` names.
    pub(crate) fn read(spec: &TlsSpec) -> Result<CertSet, String> {
        let entries = spec.certs.iter().map(load).collect::<Result<Vec<_>, _>>()?;
        Ok(CertSet(resolver::CertSet {
            entries,
            min_version: spec.min_version,
        }))
    }

    /// Certificates answering with `set`.
    pub(crate) fn new(set: CertSet) -> Arc<Certificates> {
        Arc::new(Certificates(ArcSwap::from_pointee(set.0)))
    }

    /// From now on, handshakes get a certificate of `set`.
    pub(crate) fn replace(&self, set: CertSet) {
        self.0.store(Arc::new(set.0));
    }
}

/// The Pingora TLS settings of a listener; `http2` offers h2 before http/1.1 by ALPN.
pub(crate) fn settings(tls: &ListenerTls, http2: bool) -> Result<TlsSettings, String> {
    let spec = &tls.spec;
    // The resolver replaces Pingora's certificate files; only mTLS needs the callback.
    let mut settings = match &spec.client_ca {
        None => TlsSettings::intermediate("", ""),
        Some(_) => TlsSettings::with_callbacks(Box::new(client_cert::KeepSubject)),
    }
    .map_err(|e| e.to_string())?;
    settings.set_cert_resolver(Arc::new(resolver::SniResolver(tls.certs.clone())));
    if let Some(ca) = &spec.client_ca {
        settings.set_client_cert_verifier(client_cert::verifier(ca)?);
    }
    settings.set_alpn(if http2 { ALPN::H2H1 } else { ALPN::H1 });
    Ok(settings)
}

/// Whether a finished handshake's version (from its digest) is at least `min`. Pingora
/// builds its rustls config with TLS 1.2 and 1.3 both, and a client's ClientHello
/// does not always show which it can speak, so the accept stack checks the outcome.
pub(crate) fn version_allowed(digest: Option<&SslDigest>, min: TlsVersion) -> bool {
    match min {
        TlsVersion::V1_2 => true,
        TlsVersion::V1_3 => digest.is_some_and(|d| d.version == "TLSv1_3"),
    }
}

/// One certificate chain and key, with the names it answers for.
fn load(files: &CertFiles) -> Result<resolver::Entry, String> {
    let (cert, key) = (files.cert.display(), files.key.display());
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{cert}: no certificate"))?;
    let names = names::of_certificate(leaf).map_err(|e| format!("{cert}: {e}"))?;
    let private = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| format!("{key}: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, private, &provider)
        .map_err(|e| format!("{cert} with {key}: {e}"))?;
    Ok(resolver::Entry {
        names,
        key: Arc::new(certified),
    })
}
