//! The relay direction between two plain-TCP sockets: the first bytes are copied through
//! a small buffer, and a direction that carries more switches to zero-copy: bytes move
//! socket → pipe → socket with `splice(2)` and never enter user space.
//!
//! The copy phase reads and writes the client through Pingora's own stream, so a short
//! connection costs no more descriptors than its two sockets; its buffer is allocated
//! when bytes arrive and given back when the direction goes idle, so an idle relayed
//! connection holds none. Only a direction that
//! switches to splice duplicates the client's socket into a tokio `TcpStream`
//! ([`fd`]), so readiness comes from the same reactor; Pingora's stream stays
//! alive until the relay ends, then both close. Splicing from the socket is right only
//! because the TCP listener's accept stack leaves Pingora's read buffer out
//! ([`Stack::tcp`](super::accept::Stack::tcp)): nothing the client sent waits in user
//! space. The direction that finishes second skips its half-close: closing both sockets
//! right after says the same. A spliced direction that finds its socket empty
//! busy-polls for the listener's `busy_poll` window before it sleeps ([`BusyPoll`]).

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use pingora_core::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, Interest, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::busy_poll::BusyPoll;
use super::direction::{Direction, Tally};
use super::fd::{self, Socket};

/// The capacity asked of each direction's pipe, which bounds the bytes one `splice`
/// moves: four times the default, which cost less CPU per byte without lowering
/// throughput (a bigger pipe batched so much that throughput fell).
const PIPE_SIZE: usize = 256 * 1024;

/// A pipe's capacity when the kernel refuses the bigger one (a user past
/// `fs.pipe-user-pages-soft`).
const DEFAULT_PIPE: usize = 64 * 1024;

/// Bytes a direction relays by plain copy before it switches to splice.
const COPY_FIRST: usize = 128 * 1024;

/// The buffer of the plain copy.
const COPY_BUFFER: usize = 16 * 1024;

/// Where one direction reads from.
pub(super) enum Source<'a> {
    /// The upstream connection.
    Upstream(&'a TcpStream),
    /// Pingora's client stream, with its socket.
    Client(Socket<ReadHalf<Stream>>),
}

/// Where one direction writes to.
pub(super) enum Sink<'a> {
    /// The upstream connection.
    Upstream(&'a TcpStream),
    /// Pingora's client stream, with its socket.
    Client(Socket<WriteHalf<Stream>>),
}

impl Source<'_> {
    /// Resolves once there are bytes to read (or EOF), holding no buffer: the wait of
    /// an idle direction.
    async fn readable(&mut self) -> io::Result<()> {
        match self {
            // Readiness polled in place rather than through `readable()`, whose
            // future would size the direction's idle wait.
            Source::Upstream(s) => poll_fn(|cx| s.poll_read_ready(cx)).await,
            // A read of nothing waits on the socket like any read and takes no bytes.
            Source::Client(half) => {
                let mut nothing = ReadBuf::new(&mut []);
                poll_fn(|cx| Pin::new(&mut *half).poll_read(cx, &mut nothing)).await
            }
        }
    }

    /// Reads what is there now into `buf`'s spare capacity, as [`Source::read`];
    /// `None`, taking nothing, when there is nothing yet.
    async fn read_now(&mut self, buf: &mut Vec<u8>) -> Option<io::Result<usize>> {
        let read = pin!(self.read(buf));
        match futures::poll!(read) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }

    /// Reads what is there (at least one byte, or 0 at EOF) into `buf`'s spare capacity.
    async fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Source::Upstream(s) => loop {
                poll_fn(|cx| s.poll_read_ready(cx)).await?;
                match s.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            },
            Source::Client(half) => half.read_buf(buf).await,
        }
    }
}

impl Source<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Source::Upstream(s) => s.as_fd(),
            Source::Client(half) => half.borrow(),
        }
    }
}

impl Sink<'_> {
    /// Writes all of `data` (and flushes Pingora's stream).
    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Upstream(s) => {
                while !data.is_empty() {
                    poll_fn(|cx| s.poll_write_ready(cx)).await?;
                    match s.try_write(data) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => data = &data[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Sink::Client(half) => {
                half.write_all(data).await?;
                half.flush().await
            }
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Sink::Upstream(s) => s.as_fd(),
            Sink::Client(half) => half.borrow(),
        }
    }
}

/// One direction between plain-TCP sockets (module docs).
pub(super) struct Spliced<'a> {
    from: Source<'a>,
    to: Sink<'a>,
    /// Shared by the two directions: set by the first to finish.
    finished: &'a AtomicBool,
    busy_poll: Duration,
}

impl<'a> Spliced<'a> {
    pub(super) fn new(
        from: Source<'a>,
        to: Sink<'a>,
        finished: &'a AtomicBool,
        busy_poll: Duration,
    ) -> Self {
        Spliced {
            from,
            to,
            finished,
            busy_poll,
        }
    }
}

impl Direction for Spliced<'_> {
    /// Moves bytes until EOF, then half-closes `to` unless the other direction is
    /// already over (the sockets are closed at once then, which tells the peer as much).
    async fn run(mut self, mut tally: Tally<'_>) -> io::Result<()> {
        let moved = match copy_first(&mut self.from, &mut self.to, &mut tally).await {
            Ok(true) => Ok(()),
            // Boxed: a direction waits far more often in the copy phase, and this
            // state would otherwise size every idle relayed connection.
            Ok(false) => {
                Box::pin(splice_rest(
                    &self.from,
                    &self.to,
                    &mut tally,
                    self.busy_poll,
                ))
                .await
            }
            Err(e) => Err(e),
        };
        let other_over = self.finished.swap(true, Ordering::Relaxed);
        if moved.is_err() {
            // One side reset (or failed): make both sockets send a reset when they
            // close, which happens as the relay ends, so the other peer learns at once.
            reset_on_close(self.from.fd());
            reset_on_close(self.to.fd());
        }
        match moved {
            Ok(()) if !other_over => {
                let fd = self.to.fd().as_raw_fd();
                nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write)
                    .map_err(io::Error::from)
            }
            other => other,
        }
    }
}

/// Makes closing `fd` send a reset instead of a FIN (`SO_LINGER` of zero).
fn reset_on_close(fd: BorrowedFd<'_>) {
    let abort = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    if let Err(e) = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::Linger, &abort) {
        log::debug!("SO_LINGER on a relayed socket: {e}");
    }
}

/// Relays the first [`COPY_FIRST`] bytes through a small buffer with plain reads and
/// writes; true when EOF came first. Most L4 connections (queries, short requests)
/// never get past it and never pay for what splice needs (`pipe2`, a duplicate of the
/// client's socket and their closing), a large share of the CPU at many connections a
/// second.
async fn copy_first(
    from: &mut Source<'_>,
    to: &mut Sink<'_>,
    tally: &mut Tally<'_>,
) -> io::Result<bool> {
    let mut copied = 0;
    // The buffer exists only while bytes move: an idle direction waits without one.
    let mut buf = Vec::new();
    while copied < COPY_FIRST {
        if buf.capacity() == 0 {
            from.readable().await?;
            buf.reserve_exact(COPY_BUFFER);
        }
        buf.clear();
        let Some(n) = from.read_now(&mut buf).await else {
            buf = Vec::new();
            continue;
        };
        let n = n?;
        if n == 0 {
            return Ok(true);
        }
        to.write_all(&buf).await?;
        copied += n;
        tally.add(n);
    }
    Ok(false)
}

/// Relays the rest with `splice(2)` through a pipe, until EOF.
async fn splice_rest(
    from: &Source<'_>,
    to: &Sink<'_>,
    tally: &mut Tally<'_>,
    busy_poll: Duration,
) -> io::Result<()> {
    let (from_dup, to_dup);
    let from: &TcpStream = match from {
        Source::Upstream(s) => s,
        Source::Client(half) => {
            from_dup = fd::tokio_stream(half.duplicate()?)?;
            &from_dup
        }
    };
    let to: &TcpStream = match to {
        Sink::Upstream(s) => s,
        Sink::Client(half) => {
            to_dup = fd::tokio_stream(half.duplicate()?)?;
            &to_dup
        }
    };
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let chunk = fcntl(&pipe_in, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32))
        .map_or(DEFAULT_PIPE, |granted| (granted as usize).min(PIPE_SIZE));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut poll = BusyPoll::new(busy_poll);
    loop {
        let read = || splice(from, None, &pipe_in, None, chunk, flags).map_err(io::Error::from);
        let n = poll.io(from, Interest::READABLE, read).await?;
        if n == 0 {
            return Ok(());
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
        tally.add(n);
    }
}
