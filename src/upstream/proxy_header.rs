//! The PROXY protocol, sending side: a pool with `proxy_protocol: v1 | v2` starts each
//! new backend connection with a PROXY header (encoded by the `ppp` crate) that
//! carries the client's address and the address it connected to, so the backend
//! sees the client as if it had connected directly.
//!
//! A header describes a whole connection, so a connection that carries one serves
//! that one client only. The TCP proxy opens one backend connection per client
//! anyway ([`send`]). The HTTP proxy reuses backend connections across requests:
//! [`for_http_peer`] gives the peer a connector that writes the header right after
//! connecting, and puts the client's addresses in the peer's reuse key, so a pooled
//! connection only ever serves requests of the client connection it was opened for.
//! Health checks of such a pool send a header too, one without addresses (v2 `LOCAL`,
//! v1 `UNKNOWN`, as HAProxy's `check-send-proxy`), so a backend that requires a header
//! does not fail them ([`for_health_check`]).

use std::hash::{Hash, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions};
use pingora_error::{Error, ErrorType, OrErr};
use ppp::{v1, v2};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::vocab::ProxyVersion;

/// The header for a client at `source` that connected to `destination`. The two are
/// given in one address family, as the protocol requires: IPv4 ones are mapped into
/// IPv6 when the other is IPv6.
pub(crate) fn encode(
    version: ProxyVersion,
    source: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    match version {
        ProxyVersion::V1 => v1::Addresses::from((source, destination))
            .to_string()
            .into_bytes(),
        ProxyVersion::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (source, destination),
        )
        .build()
        // Building into a Vec fails only past 64 KiB of TLVs; none are written.
        .unwrap_or_default(),
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canonical(a), canonical(b));
    let mapped = |s: SocketAddr| match s.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (mapped(a), mapped(b))
    }
}

/// Writes the header on a new backend connection (TCP listeners).
pub(crate) async fn send(
    upstream: &mut TcpStream,
    version: ProxyVersion,
    source: SocketAddr,
    destination: SocketAddr,
) -> io::Result<()> {
    upstream
        .write_all(&encode(version, source, destination))
        .await
}

/// Makes an HTTP peer send the header on each connection it opens, and reuse a
/// connection only for this client (module docs).
pub(crate) fn for_http_peer(
    peer: &mut HttpPeer,
    version: ProxyVersion,
    source: SocketAddr,
    destination: SocketAddr,
    connect_timeout: Duration,
) {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (source, destination).hash(&mut hasher);
    peer.group_key = hasher.finish();
    peer.options.custom_l4 = Some(Arc::new(Connect {
        header: encode(version, source, destination),
        timeout: connect_timeout,
    }));
}

/// Makes a health check's probes start with a header without addresses.
pub(crate) fn for_health_check(
    options: &mut PeerOptions,
    version: ProxyVersion,
    connect_timeout: Duration,
) {
    let header = match version {
        ProxyVersion::V1 => v1::Addresses::Unknown.to_string().into_bytes(),
        ProxyVersion::V2 => v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
        .build()
        .unwrap_or_default(),
    };
    options.custom_l4 = Some(Arc::new(Connect {
        header,
        timeout: connect_timeout,
    }));
}

/// Connects and writes the header first: Pingora's custom L4 connector.
#[derive(Debug)]
struct Connect {
    header: Vec<u8>,
    timeout: Duration,
}

#[async_trait]
impl L4Connect for Connect {
    async fn connect(&self, addr: &PeerAddr) -> pingora_error::Result<L4Stream> {
        let Some(addr) = addr.as_inet() else {
            return Error::e_explain(
                ErrorType::ConnectError,
                "a PROXY header needs a TCP backend",
            );
        };
        let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Error::e_explain(
                    ErrorType::ConnectTimedout,
                    format!("timeout {:?} connecting to {addr}", self.timeout),
                )
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(e).or_err(ErrorType::ConnectRefused, "connecting to the backend")
            }
            Ok(r) => r.or_err(ErrorType::ConnectError, "connecting to the backend")?,
        };
        let mut stream = stream;
        stream
            .write_all(&self.header)
            .await
            .or_err(ErrorType::ConnectError, "sending the PROXY header")?;
        Ok(stream.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_is_the_text_line() {
        let h = encode(
            ProxyVersion::V1,
            addr("192.0.2.7:40000"),
            addr("198.51.100.1:443"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n");
    }

    #[test]
    fn mixed_families_are_sent_as_ipv6() {
        let h = encode(
            ProxyVersion::V1,
            addr("192.0.2.7:1"),
            addr("[2001:db8::1]:2"),
        );
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1 2\r\n");
        let h = encode(
            ProxyVersion::V1,
            addr("[::ffff:192.0.2.7]:1"),
            addr("198.51.100.1:2"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n");
    }

    #[test]
    fn health_checks_send_a_header_without_addresses() {
        let sent = |version| {
            let mut options = PeerOptions::new();
            for_health_check(&mut options, version, Duration::from_secs(1));
            format!("{:?}", options.custom_l4.unwrap())
        };
        assert!(sent(ProxyVersion::V1).contains(&format!("{:?}", b"PROXY UNKNOWN\r\n".to_vec())));
        let local = v2::Builder::new(0x20, 0).build().unwrap();
        assert!(sent(ProxyVersion::V2).contains(&format!("{local:?}")));
    }

    #[test]
    fn v2_reads_back_as_sent() {
        let h = encode(
            ProxyVersion::V2,
            addr("[2001:db8::7]:40000"),
            addr("[2001:db8::1]:443"),
        );
        let parsed = v2::Header::try_from(&h[..]).unwrap();
        assert_eq!(parsed.command, v2::Command::Proxy);
        let v2::Addresses::IPv6(a) = parsed.addresses else {
            panic!("not IPv6: {:?}", parsed.addresses);
        };
        assert_eq!(
            (a.source_address, a.source_port),
            ("2001:db8::7".parse().unwrap(), 40000)
        );
        assert_eq!(parsed.len(), h.len());
    }
}
