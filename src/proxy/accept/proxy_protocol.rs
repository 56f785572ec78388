//! The PROXY protocol, receiving side (layer 0b): a listener with
//! `proxy_protocol: {trusted: [...]}` takes the client address from a PROXY header
//! (version 1 or 2, parsed by the `ppp` crate) that a trusted proxy in front sends
//! before anything else.
//!
//! The carried source address replaces the peer address in the connection's socket
//! digest, the one place every later layer reads the client address from (Pingora's
//! `client_addr`, and so X-Forwarded-For, allow/deny, hash keys, rate limits, the
//! access log and the TCP proxy): nothing else has to know. A connection from an
//! address outside `trusted`, one without a whole valid header within the deadline,
//! or one that closes first is closed. A `LOCAL` (v2) or `UNKNOWN` (v1) header keeps
//! the connection's own address, as the protocol says. Bytes read past the header are
//! put back (`rewind`) for the next layer: TLS, HTTP or the TCP relay.
//!
//! On plain endpoints the accept stack runs [`ProxyProtocol::accept`] on each
//! connection; on TLS endpoints Pingora runs it before the handshake
//! ([`PreTlsProcess`]).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora_core::listeners::PreTlsProcess;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};
use pingora_error::{Error, ErrorType};
use ppp::{v1, v2, HeaderResult, PartialResult};
use prometheus::IntCounter;
use tokio::io::AsyncReadExt;

/// The longest header: a v2 header's 16 fixed bytes and the most its length field
/// can announce (a v1 header is at most 107 bytes).
const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// A listener's `proxy_protocol`: whom it trusts, and how long it waits for a header.
#[derive(Debug, Clone)]
pub(crate) struct ProxyProtocol {
    trusted: Arc<[IpNet]>,
    timeout: Duration,
    /// Refusals counted: untrusted sender, invalid (or missing, or late) header.
    refused: [IntCounter; 2],
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The sender is not in `trusted`.
    #[error("{0} is not a trusted PROXY protocol sender")]
    Untrusted(String),
    /// No whole header arrived in time.
    #[error("no PROXY header within {0:?}")]
    TimedOut(Duration),
    /// The client closed before its header was whole.
    #[error("closed before a whole PROXY header")]
    Closed,
    /// The bytes are not a valid header.
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    /// Reading failed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What a whole header says: the client's address, or `None` to keep the
/// connection's own (LOCAL, UNKNOWN); and the header's length.
type Parsed = (Option<SocketAddr>, usize);

impl ProxyProtocol {
    /// Trusts senders in `trusted`, waiting up to `timeout` for their header, and
    /// counts refusals in `refused` (untrusted, invalid).
    pub(crate) fn new(trusted: Vec<IpNet>, timeout: Duration, refused: [IntCounter; 2]) -> Self {
        ProxyProtocol {
            trusted: trusted.into(),
            timeout,
            refused,
        }
    }

    /// Reads the PROXY header of a new connection and makes the address it carries
    /// the connection's peer address (module docs); counts a refusal.
    pub(crate) async fn accept(&self, stream: &mut L4Stream) -> Result<(), ProxyError> {
        let accepted = self.read(stream).await;
        match &accepted {
            Ok(()) => {}
            Err(ProxyError::Untrusted(_)) => self.refused[0].inc(),
            Err(_) => self.refused[1].inc(),
        }
        accepted
    }

    async fn read(&self, stream: &mut L4Stream) -> Result<(), ProxyError> {
        let digest = stream.get_socket_digest();
        let peer = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet())
            .copied();
        if !peer.is_some_and(|p| self.trusts(p.ip())) {
            return Err(ProxyError::Untrusted(
                peer.map_or_else(|| "an unknown address".into(), |p| p.to_string()),
            ));
        }
        let (source, rest) = tokio::time::timeout(self.timeout, read_header(stream))
            .await
            .unwrap_or(Err(ProxyError::TimedOut(self.timeout)))?;
        stream.rewind(&rest);
        if let Some(source) = source {
            let carried = SocketDigest::from_raw_fd(stream.as_raw_fd());
            let _ = carried.peer_addr.set(Some(PeerAddr::Inet(source)));
            if let Some(local) = digest.as_ref().and_then(|d| d.local_addr()) {
                let _ = carried.local_addr.set(Some(local.clone()));
            }
            stream.set_socket_digest(carried);
        }
        Ok(())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

#[async_trait]
impl PreTlsProcess for ProxyProtocol {
    async fn process(&self, stream: &mut L4Stream) -> pingora_error::Result<()> {
        self.accept(stream).await.map_err(|e| {
            log::debug!("PROXY protocol: connection closed: {e}");
            Error::because(ErrorType::AcceptError, "PROXY protocol", e)
        })
    }
}

/// Reads until `buf` holds a whole header: the source address it carries, and the
/// bytes read past it.
async fn read_header(stream: &mut L4Stream) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ProxyError::Closed);
        }
        if let Some((source, len)) = parse(&buf)? {
            return Ok((source, buf.split_off(len)));
        }
    }
}

/// Parses the start of a connection: `Ok(None)` while the header may still be
/// incomplete.
pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Parsed>, ProxyError> {
    let header = HeaderResult::parse(bytes);
    if header.is_incomplete() {
        return if bytes.len() < MAX_HEADER {
            Ok(None)
        } else {
            Err(ProxyError::Invalid("longer than any header".into()))
        };
    }
    match header {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok(Some((source, h.header.len())))
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
            };
            Ok(Some((source, h.len())))
        }
        HeaderResult::V1(Err(e)) => Err(ProxyError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyError::Invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn reads_a_v1_header_and_leaves_the_rest() {
        let bytes = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nGET / HTTP/1.1\r\n";
        let (source, len) = parse(bytes).unwrap().unwrap();
        assert_eq!(source, addr("192.0.2.7:40000"));
        assert_eq!(&bytes[len..], b"GET / HTTP/1.1\r\n");
        let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n";
        assert_eq!(parse(six).unwrap().unwrap().0, addr("[2001:db8::7]:40000"));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Some((None, 15)));
        // A whole first read: the header, then far more than a header's worth.
        let mut long = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n".to_vec();
        let header = long.len();
        long.extend_from_slice(&[b'x'; 4000]);
        assert_eq!(
            parse(&long).unwrap(),
            Some((addr("192.0.2.7:40000"), header))
        );
    }

    #[test]
    fn reads_a_v2_header_and_leaves_the_rest() {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                addr("192.0.2.7:40000").unwrap(),
                addr("198.51.100.1:443").unwrap(),
            ),
        )
        .write_tlv(v2::Type::NoOp, b"pad")
        .unwrap()
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&bytes).unwrap(),
            Some((addr("192.0.2.7:40000"), header.len()))
        );
        let local = v2::Builder::new(v2::Version::Two | v2::Command::Local, 0)
            .build()
            .unwrap();
        assert_eq!(parse(&local).unwrap(), Some((None, 16)));
    }

    #[test]
    fn a_prefix_waits_for_more() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n";
        for cut in [1, 6, 20, v1.len() - 1] {
            assert!(matches!(parse(&v1[..cut]), Ok(None)), "v1 cut at {cut}");
        }
        let v2 = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                addr("[2001:db8::7]:1").unwrap(),
                addr("[2001:db8::1]:2").unwrap(),
            ),
        )
        .build()
        .unwrap();
        for cut in [1, 12, 15, 16, v2.len() - 1] {
            assert!(matches!(parse(&v2[..cut]), Ok(None)), "v2 cut at {cut}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bytes in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 300.0.0.1 1.2.3.4 1 2\r\n",
            b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
            b"\x16\x03\x01\x02\x00",
            &[0xff; 200],
        ] {
            assert!(parse(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn truncations_and_flips_never_panic() {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                addr("192.0.2.7:40000").unwrap(),
                addr("198.51.100.1:443").unwrap(),
            ),
        )
        .build()
        .unwrap();
        for i in 0..header.len() {
            let mut bent = header.clone();
            bent[i] ^= 0x5a;
            let _ = parse(&bent);
            let _ = parse(&header[i..]);
        }
    }

    #[test]
    fn trusts_listed_blocks_and_mapped_addresses() {
        let counter = || IntCounter::new("c", "c").unwrap();
        let pp = ProxyProtocol::new(
            vec!["10.0.0.0/8".parse().unwrap()],
            Duration::from_secs(1),
            [counter(), counter()],
        );
        assert!(pp.trusts("10.1.2.3".parse().unwrap()));
        assert!(pp.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!pp.trusts("192.0.2.1".parse().unwrap()));
    }
}
