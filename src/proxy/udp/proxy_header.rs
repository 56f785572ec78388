//! The PROXY protocol v2 header of a UDP flow (`DGRAM`), encoded by the `ppp` crate: the
//! client's address and the listener's, so the backend sees the client as if it had
//! sent to it directly.
//!
//! It is sent once per flow, in front of the flow's first datagram (one datagram, so
//! the header cannot arrive without the payload it describes, or be lost alone). A
//! first datagram whose payload leaves no room for the header (over 65,507 bytes with
//! it) cannot be sent and is dropped (`send_failed`).

use ppp::v2;
use std::net::{IpAddr, SocketAddr};

/// The header for `client`'s flow to the listener at `listener`. The two addresses are
/// given in one family, as the protocol requires: IPv4 mapped into IPv6 when the other
/// is IPv6.
pub(super) fn header(client: SocketAddr, listener: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(client, listener);
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Datagram,
        (source, destination),
    )
    .build()
    // Building fails only past 64 KiB of TLVs; none are written.
    .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_flow_header_is_v2_dgram_with_both_addresses() {
        let bytes = header(addr("192.0.2.7:5353"), addr("10.0.0.1:53"));
        let parsed = v2::Header::try_from(&bytes[..]).unwrap();
        assert_eq!(parsed.command, v2::Command::Proxy);
        assert_eq!(parsed.protocol, v2::Protocol::Datagram);
        assert_eq!(
            parsed.addresses,
            v2::Addresses::IPv4(v2::IPv4::new([192, 0, 2, 7], [10, 0, 0, 1], 5353, 53))
        );
        assert_eq!(parsed.len(), bytes.len(), "nothing after the header");
    }

    #[test]
    fn mixed_families_are_sent_as_ipv6() {
        let bytes = header(addr("192.0.2.7:5353"), addr("[2001:db8::1]:53"));
        let parsed = v2::Header::try_from(&bytes[..]).unwrap();
        let v2::Addresses::IPv6(a) = parsed.addresses else {
            panic!("IPv6 addresses: {:?}", parsed.addresses)
        };
        assert_eq!(
            a.source_address,
            "::ffff:192.0.2.7".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(a.source_port, 5353);
    }
}
