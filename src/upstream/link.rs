//! How a pool speaks to its backends (`pools.NAME.protocol` and `pools.NAME.tls`): the
//! HTTP version and whether the connection is TLS, turned into the options of each
//! Pingora `HttpPeer`.
//!
//! Pingora keeps connections to a peer for reuse by the peer's options; HTTP/2
//! connections are shared by concurrent requests, up to [`MAX_H2_STREAMS`] streams each.

use pingora_core::listeners::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;

/// Concurrent streams one HTTP/2 connection to a backend carries before another opens.
const MAX_H2_STREAMS: usize = 100;

/// The HTTP version spoken to the backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 (default).
    #[default]
    Http1,
    /// HTTP/2 over TLS, chosen by ALPN (HTTP/1.1 when the backend does not offer h2).
    H2,
    /// HTTP/2 over plain TCP, prior knowledge.
    H2c,
}

/// TLS to the backends.
#[derive(Clone, Default)]
pub(crate) struct BackendTls {
    /// The name sent as SNI and checked in the certificate; the backend's IP when none.
    pub(crate) sni: Option<String>,
    /// Whether the certificate chain and name are checked.
    pub(crate) verify: bool,
    /// The CA certificates to trust (DER); the system's when empty.
    pub(crate) ca: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("ca", &self.ca.len())
            .finish()
    }
}

/// A pool's link to its backends.
#[derive(Debug, Clone, Default)]
pub(crate) struct Link {
    /// The HTTP version.
    pub(crate) protocol: Protocol,
    /// TLS, when the backends speak it (always with `h2`).
    pub(crate) tls: Option<BackendTls>,
}

/// A [`Link`] ready to make peers: the CA list parsed once.
pub(crate) struct PeerTemplate {
    protocol: Protocol,
    tls: Option<(BackendTls, Option<Arc<[WrappedX509]>>)>,
}

impl PeerTemplate {
    /// The template of `link`. Its CA certificates were checked when the config was
    /// validated (they parse as X.509).
    pub(crate) fn new(link: &Link) -> PeerTemplate {
        let tls = link.tls.clone().map(|t| {
            let ca = (!t.ca.is_empty()).then(|| {
                t.ca.iter()
                    .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
                    .collect::<Vec<_>>()
                    .into()
            });
            (t, ca)
        });
        PeerTemplate {
            protocol: link.protocol,
            tls,
        }
    }

    /// Whether the pool's backends are spoken to in HTTP/1.1 (`protocol: http1`).
    pub(crate) fn speaks_http1(&self) -> bool {
        matches!(self.protocol, Protocol::Http1)
    }

    /// A peer for the backend at `addr`.
    pub(crate) fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = match &self.tls {
            None => HttpPeer::new(addr, false, String::new()),
            Some((tls, ca)) => {
                let sni = tls.sni.clone().unwrap_or_else(|| addr.ip().to_string());
                let mut peer = HttpPeer::new(addr, true, sni);
                peer.options.verify_cert = tls.verify;
                peer.options.verify_hostname = tls.verify;
                peer.options.ca = ca.clone();
                peer
            }
        };
        match self.protocol {
            Protocol::Http1 => peer.options.alpn = ALPN::H1,
            Protocol::H2 => {
                peer.options.alpn = ALPN::H2H1;
                peer.options.max_h2_streams = MAX_H2_STREAMS;
            }
            Protocol::H2c => {
                peer.options.alpn = ALPN::H2;
                peer.options.max_h2_streams = MAX_H2_STREAMS;
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "10.0.0.5:443".parse().unwrap()
    }

    #[test]
    fn plain_http1_is_pingoras_default_peer() {
        let peer = PeerTemplate::new(&Link::default()).peer(addr());
        assert!(peer.sni.is_empty());
        assert_eq!(peer.options.alpn, ALPN::H1);
        assert!(!peer.is_tls());
    }

    #[test]
    fn tls_sends_the_given_name_or_the_ip_and_verifies() {
        let link = Link {
            protocol: Protocol::H2,
            tls: Some(BackendTls {
                sni: Some("api.internal".into()),
                verify: true,
                ca: Vec::new(),
            }),
        };
        let peer = PeerTemplate::new(&link).peer(addr());
        assert_eq!(peer.sni, "api.internal");
        assert!(peer.options.verify_cert && peer.options.verify_hostname);
        assert_eq!(peer.options.alpn, ALPN::H2H1);
        let mut link = link;
        link.tls.as_mut().unwrap().sni = None;
        assert_eq!(PeerTemplate::new(&link).peer(addr()).sni, "10.0.0.5");
    }

    #[test]
    fn h2c_is_plain_http2_only() {
        let link = Link {
            protocol: Protocol::H2c,
            tls: None,
        };
        let peer = PeerTemplate::new(&link).peer(addr());
        assert_eq!(peer.options.alpn, ALPN::H2);
        assert_eq!(peer.options.alpn.get_min_http_version(), 2);
    }
}
