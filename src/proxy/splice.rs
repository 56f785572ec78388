//! Relay for L4 connections where both ends are plain TCP: the first bytes of each
//! direction are copied through a small buffer, and a direction that carries more
//! switches to zero-copy: bytes move socket → pipe → socket with `splice(2)` and never
//! enter user space.
//!
//! Pingora hands the TCP listener its client connection as a boxed stream; for a plain
//! TCP connection the socket underneath is duplicated into a tokio `TcpStream` (the
//! only `unsafe` in Tioga, below), so readiness comes from the same reactor. The
//! original stream is kept alive until the relay ends, then both close.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use prometheus::IntCounter;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The capacity asked of each direction's pipe, which bounds the bytes one `splice`
/// moves. Four times the default: measured with one iperf3 stream, the proxy's CPU per
/// gigabyte fell by a fifth and the throughput did not drop (a 1 MiB pipe, or reading
/// into the pipe while it drains, batched so much that throughput fell).
const PIPE_SIZE: usize = 256 * 1024;

/// A pipe's capacity when the kernel refuses the bigger one (a user past
/// `fs.pipe-user-pages-soft`).
const DEFAULT_PIPE: usize = 64 * 1024;

/// Bytes a direction relays by plain copy before it switches to splice.
const COPY_FIRST: usize = 128 * 1024;

/// The buffer of the plain copy.
const COPY_BUFFER: usize = 16 * 1024;

/// A duplicate of `client`'s socket as a tokio stream, when `client` is plain TCP
/// with nothing buffered (Pingora hands over fresh connections).
pub(super) fn plain_tcp(client: &Stream) -> Option<TcpStream> {
    let l4 = client.as_any().downcast_ref::<L4Stream>()?;
    let fd = l4.as_raw_fd();
    // SAFETY: `fd` is the open socket of `l4`, which the caller keeps alive for as long
    // as the returned stream (which owns a *duplicate* made right here) is in use; the
    // borrow ends before this function returns.
    #[allow(unsafe_code)]
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned: OwnedFd = borrowed.try_clone_to_owned().ok()?;
    // Already non-blocking: O_NONBLOCK belongs to the open file description, which the
    // duplicate shares with Pingora's socket.
    TcpStream::from_std(std::net::TcpStream::from(owned)).ok()
}

/// Moves bytes from `from` to `to` until EOF, then half-closes `to`. Counts bytes in
/// `total` (and `counter`) and stamps activity in `last`.
///
/// The first [`COPY_FIRST`] bytes go through a small buffer with plain reads and
/// writes; only a direction that carries more switches to splice. Most L4 connections
/// (queries, short requests) never get there and never pay for the pipe splice needs
/// (`pipe2` and two more descriptors to close): at thousands of connections a second
/// that was a tenth of the proxy's CPU.
pub(super) async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    last: &AtomicU64,
    start: Instant,
    counter: Option<&IntCounter>,
    total: &mut u64,
) -> io::Result<()> {
    let mut account = |n: usize| {
        if let Some(c) = counter {
            c.inc_by(n as u64);
        }
        *total += n as u64;
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    };
    let mut copied = 0;
    let mut buf = Vec::with_capacity(COPY_BUFFER);
    while copied < COPY_FIRST {
        buf.clear();
        let n = read_some(from, &mut buf).await?;
        if n == 0 {
            return half_close(to);
        }
        write_all(to, &buf).await?;
        copied += n;
        account(n);
    }
    drop(buf);
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let chunk = fcntl(&pipe_in, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32))
        .map_or(DEFAULT_PIPE, |granted| (granted as usize).min(PIPE_SIZE));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                splice(from, None, &pipe_in, None, chunk, flags).map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            return half_close(to);
        }
        let mut left = n;
        while left > 0 {
            let moved = to
                .async_io(Interest::WRITABLE, || {
                    splice(&pipe_out, None, to, None, left, flags).map_err(io::Error::from)
                })
                .await?;
            if moved == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= moved;
        }
        account(n);
    }
}

fn half_close(to: &TcpStream) -> io::Result<()> {
    nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write)
        .map_err(io::Error::from)
}

/// Reads what is there (at least one byte, or 0 at EOF) into `buf`'s spare capacity.
async fn read_some(from: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
