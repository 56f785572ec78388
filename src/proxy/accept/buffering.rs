//! The buffering layer: Pingora's per-connection L4 buffers, and TLS, for each endpoint
//! of a listener.
//!
//! Plain-TCP endpoints never have Pingora's read buffer (64 KiB, zeroed at accept and
//! held for the connection's life): HTTP/1 reads into its own header and body buffers,
//! so it only added a copy, a memset per connection and memory per idle keep-alive
//! connection; and the TCP relay splices straight from the socket, which is right only
//! when nothing the client sent waits in user space. The write buffer is off where
//! another layer writes to the socket itself. TLS endpoints keep Pingora's write
//! buffer but not its read buffer either: zeroed at accept, it was 64 KiB of every idle
//! TLS connection (h2 or HTTP/1), while rustls reads records into a buffer of its own
//! that it shrinks when nothing is pending. The cost is a read syscall per 4 KiB
//! (rustls' read size) where the buffer took up to 64 KiB at once, which matters only
//! for large uploads over TLS.

use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_error::ErrorType;

/// The buffers of a listener's plain-TCP endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Buffering {
    /// Neither buffer: for the TCP relay, which splices from and to the socket and
    /// flushes each chunk it copies, and under coalescing, which is the connection's
    /// write buffer and sends held bytes straight on the socket (a buffer beneath it
    /// would let later bytes overtake earlier ones).
    None,
    /// Pingora's write buffer only: HTTP without coalescing.
    WriteOnly,
}

impl Buffering {
    fn settings(self) -> L4BufferSettings {
        match self {
            Buffering::None => L4BufferSettings::unbuffered(),
            Buffering::WriteOnly => L4BufferSettings::default().read(0),
        }
    }

    /// The endpoint at `addr`: plain TCP with these buffers, or TLS with `tls`'s
    /// certificates (h2 offered by ALPN when `http2`) and Pingora's buffers. Fails when
    /// a certificate or key cannot be loaded.
    pub(super) fn endpoint(
        self,
        addr: &str,
        tls: Option<&crate::proxy::tls::ListenerTls>,
        http2: bool,
    ) -> pingora_error::Result<ListenerConfig> {
        let endpoint = ListenerConfig::tcp(addr);
        Ok(match tls {
            None => endpoint.l4_buffer(self.settings()),
            Some(t) => endpoint.l4_buffer(L4BufferSettings::default().read(0)).tls(
                crate::proxy::tls::settings(t, http2)
                    .map_err(|e| pingora_error::Error::explain(ErrorType::InvalidCert, e))?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_endpoints_never_read_buffer_and_write_buffer_only_without_coalescing() {
        let none = Buffering::None.settings();
        assert_eq!((none.read_capacity(), none.write_capacity()), (0, 0));
        let write_only = Buffering::WriteOnly.settings();
        assert_eq!(write_only.read_capacity(), 0);
        assert_eq!(write_only.write, None, "Pingora's default write buffer");
    }
}
