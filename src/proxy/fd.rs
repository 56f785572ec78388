//! Client sockets below Pingora's stream: the TCP relay splices from and to them, and
//! coalescing sends on them from outside the connection's task. The only `unsafe` in
//! Tioga is here, in [`Socket::borrow`].
//!
//! A [`Socket`] pairs a descriptor with what keeps it open (its owner): Pingora's
//! plain-TCP stream, a reference to it, or a half of it. Every `Socket` is made in this
//! file, from the owner's own descriptor, and its owner can be read and written through
//! but not replaced, so a borrow of the descriptor never outlives the socket.

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// A client socket's descriptor and its owner, which keeps the socket open (module
/// docs). Reads and writes go to the owner.
#[derive(Debug)]
pub(super) struct Socket<T> {
    owner: T,
    fd: RawFd,
}

/// Whether `fd` can be a socket's descriptor: a virtual Pingora stream reports -1.
fn is_open(fd: RawFd) -> bool {
    fd >= 0
}

impl<T> Socket<T> {
    /// The socket, borrowed for as long as `self` is.
    pub(super) fn borrow(&self) -> BorrowedFd<'_> {
        // SAFETY: `fd` is not -1 (`is_open`) and is the descriptor of the socket that
        // `owner` holds: the constructors below take it from the owner itself, and
        // `split` gives each half the descriptor of the stream it shares. Pingora's
        // stream closes its socket only when dropped; `owner` cannot be replaced from
        // outside this file and lives as long as `self`, which the returned borrow
        // cannot outlive. So the descriptor stays open for the whole borrow.
        #[allow(unsafe_code)]
        unsafe {
            BorrowedFd::borrow_raw(self.fd)
        }
    }

    /// A descriptor of the socket's own, which keeps the socket open until it is
    /// dropped (`fcntl(F_DUPFD_CLOEXEC)`).
    pub(super) fn duplicate(&self) -> io::Result<OwnedFd> {
        self.borrow().try_clone_to_owned()
    }
}

impl<'a> Socket<&'a L4Stream> {
    /// The socket of `stream`, for as long as `stream` is borrowed; `None` for a
    /// stream without a descriptor.
    pub(super) fn of(stream: &'a L4Stream) -> Option<Self> {
        let fd = stream.as_raw_fd();
        is_open(fd).then_some(Socket { owner: stream, fd })
    }
}

impl Socket<Stream> {
    /// `client`'s socket when `client` is Pingora's plain L4 stream; else `client`
    /// back (TLS: the socket carries records, and the TLS stream may hold bytes).
    pub(super) fn plain(client: Stream) -> Result<Self, Stream> {
        let fd = client
            .as_any()
            .downcast_ref::<L4Stream>()
            .map(AsRawFd::as_raw_fd);
        match fd {
            Some(fd) if is_open(fd) => Ok(Socket { owner: client, fd }),
            _ => Err(client),
        }
    }

    /// Halves to read and write at once; each keeps the stream, and so the socket,
    /// open.
    pub(super) fn split(self) -> (Socket<ReadHalf<Stream>>, Socket<WriteHalf<Stream>>) {
        let (read, write) = tokio::io::split(self.owner);
        let fd = self.fd;
        (Socket { owner: read, fd }, Socket { owner: write, fd })
    }
}

/// A tokio stream on `fd`, registered with this worker's reactor (to wait on while
/// splicing, or to finish a write after Pingora's stream is gone).
pub(super) fn tokio_stream(fd: OwnedFd) -> io::Result<TcpStream> {
    // Already non-blocking: O_NONBLOCK belongs to the open file description, which a
    // duplicate shares with Pingora's socket.
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

impl<T: AsyncRead + Unpin> AsyncRead for Socket<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.owner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Socket<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.owner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.owner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.owner).poll_shutdown(cx)
    }
}

/// A descriptor of our own for `fd`, a socket in Pingora's table of listening sockets
/// (`Fds`), which UDP listeners share with Pingora's own listeners.
pub(crate) fn duplicate_listening(fd: RawFd) -> io::Result<OwnedFd> {
    if !is_open(fd) {
        return Err(io::Error::from(rustix::io::Errno::BADF));
    }
    // SAFETY: the table holds descriptors that Pingora received from the previous
    // process or that a listener put there, and keeps them open for the life of the
    // process (it closes only those no service declares, before any service starts);
    // the borrow ends with this statement, leaving a duplicate of our own.
    #[allow(unsafe_code)]
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let server: Stream = Box::new(L4Stream::from(accepted.unwrap().0));
        (server, client.unwrap())
    }

    #[tokio::test]
    async fn a_duplicate_reaches_the_same_peer_and_outlives_the_stream() {
        let (server, mut peer) = pair().await;
        let socket = Socket::plain(server).expect("a plain TCP stream");
        let dup = socket.duplicate().unwrap();
        drop(socket);
        let mut tcp = tokio_stream(dup).unwrap();
        tcp.write_all(b"still open").await.unwrap();
        drop(tcp);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"still open");
    }

    #[tokio::test]
    async fn the_halves_read_and_write_the_stream() {
        let (server, mut peer) = pair().await;
        let (mut read, mut write) = Socket::plain(server).unwrap().split();
        assert_eq!(read.borrow().as_raw_fd(), write.borrow().as_raw_fd());
        peer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        read.read_exact(&mut buf).await.unwrap();
        write.write_all(&buf).await.unwrap();
        peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}
