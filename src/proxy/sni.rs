//! The server name of a TLS connection, read from its ClientHello without terminating
//! TLS: a TCP listener routes by it (`match: {sni: …}`) and passes every byte on.
//!
//! [`peek`] reads the client's first bytes until they hold a whole ClientHello (which
//! may come over several TCP segments and several TLS records) and puts them all
//! back (`rewind`), so the backend receives the handshake untouched. The ClientHello
//! itself is parsed by rustls' `Acceptor` ([`server_name`]), which never panics on
//! what a client sends (a fuzz target checks it, `fuzz/fuzz_targets/sni.rs`).
//! Anything that is not a TLS ClientHello (another protocol, garbage, a hello past
//! [`MAX_HELLO`] bytes) reads as "no server name", which only routes without `sni`
//! can match.

use std::io;
use std::time::Duration;

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use tokio::io::AsyncReadExt;

/// The most bytes read while waiting for a whole ClientHello. Real ones are a few
/// hundred bytes to about 2 KiB (with post-quantum key shares); TLS allows more, but a
/// client sending more than this before the handshake is not worth waiting for.
pub(crate) const MAX_HELLO: usize = 16 * 1024;

/// What the bytes read so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hello {
    /// A ClientHello may still come: read more.
    Partial,
    /// The ClientHello is whole: the name it carries, if any. Also `None` when the
    /// bytes are not a TLS ClientHello at all.
    Done(Option<String>),
}

/// Parses the first bytes of a connection.
pub(crate) fn server_name(bytes: &[u8]) -> Hello {
    // A TLS record of type handshake (22), version 3.x: rustls would wait for a whole
    // record before it looked at these, which for another protocol may never come.
    match bytes {
        [] | [0x16] | [0x16, 0x03, ..] => {}
        _ => return Hello::Done(None),
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match acceptor.accept() {
        Ok(None) if bytes.len() < MAX_HELLO => Hello::Partial,
        Ok(None) | Err(_) => Hello::Done(None),
        Ok(Some(accepted)) => Hello::Done(accepted.client_hello().server_name().map(str::to_owned)),
    }
}

/// Why no server name could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeekError {
    /// The client sent nothing (or not a whole ClientHello) within the deadline.
    #[error("no ClientHello within {0:?}")]
    TimedOut(Duration),
    /// The client closed before a whole ClientHello.
    #[error("the client closed before its ClientHello was whole")]
    Closed,
    /// The stream is not a plain TCP one (not reached: TCP listeners have no TLS).
    #[error("not a plain TCP stream")]
    NotPlain,
    /// Reading failed.
    #[error("reading the ClientHello failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads the client's first bytes until they hold a whole ClientHello (or show they
/// are not one), within `timeout`, and puts them back: the name it carries.
pub(crate) async fn peek(
    stream: &mut L4Stream,
    timeout: Duration,
) -> Result<Option<String>, PeekError> {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(PeekError::Closed);
            }
            // Ends by MAX_HELLO bytes: a longer prefix reads as no ClientHello.
            if let Hello::Done(name) = server_name(&buf) {
                return Ok(name);
            }
        }
    };
    let found = tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(PeekError::TimedOut(timeout)));
    stream.rewind(&buf);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real ClientHello, as rustls' client sends it for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn reads_the_name_of_a_whole_hello() {
        let hello = client_hello("api.example.com");
        assert_eq!(
            server_name(&hello),
            Hello::Done(Some("api.example.com".into()))
        );
    }

    #[test]
    fn reads_the_name_from_openssls_hello() {
        // `openssl s_client -servername api.a.example`, also a fuzz seed.
        let hello = include_bytes!("../../fuzz/corpus/sni/openssl_hello");
        assert_eq!(
            server_name(hello),
            Hello::Done(Some("api.a.example".into()))
        );
        assert_eq!(server_name(&hello[..hello.len() - 1]), Hello::Partial);
    }

    #[test]
    fn bytes_after_the_hello_change_nothing() {
        // Early data or a ChangeCipherSpec may follow the hello in the same read.
        let mut hello = client_hello("a.example");
        hello.extend_from_slice(&[0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0, 1, b'x']);
        assert_eq!(server_name(&hello), Hello::Done(Some("a.example".into())));
    }

    #[test]
    fn a_prefix_asks_for_more() {
        let hello = client_hello("a.example");
        for cut in [0, 1, 5, 6, hello.len() / 2, hello.len() - 1] {
            assert_eq!(server_name(&hello[..cut]), Hello::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn an_ip_literal_is_no_name() {
        assert_eq!(server_name(&client_hello("192.0.2.1")), Hello::Done(None));
    }

    #[test]
    fn other_protocols_and_garbage_are_no_name() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n\r\n"), Hello::Done(None));
        assert_eq!(
            server_name(&[0x16, 3, 1, 0, 4, 1, 0, 0, 0]),
            Hello::Done(None)
        );
        assert_eq!(server_name(&[0xff; 64]), Hello::Done(None));
    }

    #[test]
    fn a_hello_that_never_ends_is_cut_off() {
        // A record header announcing the largest record, then padding.
        let mut bytes = vec![0x16, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc];
        bytes.resize(MAX_HELLO, 0);
        assert_eq!(server_name(&bytes), Hello::Done(None));
    }

    #[test]
    fn truncations_and_flips_never_panic() {
        let hello = client_hello("x.example");
        for i in 0..hello.len() {
            let mut bent = hello.clone();
            bent[i] ^= 0xa5;
            let _ = server_name(&bent);
            let _ = server_name(&hello[i..]);
        }
    }
}
