//! Client certificates (`client_ca`, mTLS): the verifier that requires one signed by
//! the listener's CAs, and the handshake callback that keeps the verified subject for
//! the connection's requests (filters read it from their context, the access log
//! writes it).

use super::names;
use async_trait::async_trait;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::Digest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::any::Any;
use std::path::Path;
use std::sync::Arc;

/// The verified subject of a connection's client certificate.
#[derive(Debug, Clone)]
pub(crate) struct ClientSubject(pub(crate) String);

impl ClientSubject {
    /// The subject of the client certificate presented on the connection of `digest`.
    pub(crate) fn of(digest: Option<&Digest>) -> Option<&str> {
        let ssl = digest?.ssl_digest.as_ref()?;
        ssl.extension.get::<ClientSubject>().map(|s| s.0.as_str())
    }
}

/// A verifier that requires a client certificate signed by one of the CAs in `ca`.
pub(super) fn verifier(ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("client_ca {}: {e}", ca.display()))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("client_ca {}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("client_ca {}: {e}", ca.display()))
}

/// Keeps the client certificate's subject in the connection's TLS digest.
pub(super) struct KeepSubject;

#[async_trait]
impl TlsAccept for KeepSubject {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let subject = names::subject(tls.peer_certificate_der()?)?;
        Some(Arc::new(ClientSubject(subject)))
    }
}
