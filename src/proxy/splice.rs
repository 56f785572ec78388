//! Relay for L4 connections where both ends are plain TCP: the first bytes of each
//! direction are copied through a small buffer, and a direction that carries more
//! switches to zero-copy: bytes move socket → pipe → socket with `splice(2)` and never
//! enter user space.
//!
//! The copy phase reads and writes the client through Pingora's own stream (TCP
//! listeners accept it unbuffered), so a short connection costs no more descriptors
//! than its two sockets. Only a direction that switches to splice duplicates the
//! client's socket into a tokio `TcpStream` ([`fd`]), so readiness comes from the same
//! reactor; Pingora's stream stays alive until the relay ends, then both close. The
//! direction that finishes second skips its half-close: closing both sockets right
//! after says the same. A spliced direction that finds its socket empty busy-polls for
//! the listener's `busy_poll` window before it sleeps ([`BusyPoll`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use pingora_core::protocols::Stream;
use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::busy_poll::BusyPoll;
use super::fd::{self, Socket};

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

/// Where one direction reads from.
pub(super) enum Source<'a> {
    /// The upstream connection.
    Upstream(&'a TcpStream),
    /// Pingora's client stream, with its socket. TCP listeners accept it without a
    /// read buffer, so nothing the client sent sits in user space: the socket can be
    /// spliced from directly.
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
    /// Reads what is there (at least one byte, or 0 at EOF) into `buf`'s spare capacity.
    async fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Source::Upstream(s) => loop {
                s.readable().await?;
                match s.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            },
            Source::Client(half) => half.read_buf(buf).await,
        }
    }
}

impl Sink<'_> {
    /// Writes all of `data` (and flushes Pingora's stream).
    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Upstream(s) => {
                while !data.is_empty() {
                    s.writable().await?;
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

/// Byte accounting of one direction: `total` (and `counter`) count bytes, `last`
/// stamps activity in milliseconds since `start`.
pub(super) struct Tally<'a> {
    last: &'a AtomicU64,
    start: Instant,
    counter: Option<&'a IntCounter>,
    total: &'a mut u64,
}

impl<'a> Tally<'a> {
    pub(super) fn new(
        last: &'a AtomicU64,
        start: Instant,
        counter: Option<&'a IntCounter>,
        total: &'a mut u64,
    ) -> Self {
        Tally {
            last,
            start,
            counter,
            total,
        }
    }

    fn add(&mut self, n: usize) {
        if let Some(c) = self.counter {
            c.inc_by(n as u64);
        }
        *self.total += n as u64;
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Moves bytes from `from` to `to` until EOF, then half-closes `to` unless the other
/// direction is already over (`finished`, shared by the two directions: the sockets are
/// closed at once then, which tells the peer as much).
pub(super) async fn pump(
    mut from: Source<'_>,
    mut to: Sink<'_>,
    finished: &AtomicBool,
    mut tally: Tally<'_>,
    busy_poll: Duration,
) -> io::Result<()> {
    let moved = relay_direction(&mut from, &mut to, &mut tally, busy_poll).await;
    let other_over = finished.swap(true, Ordering::Relaxed);
    match moved {
        Ok(()) if !other_over => {
            nix::sys::socket::shutdown(to.fd().as_raw_fd(), nix::sys::socket::Shutdown::Write)
                .map_err(io::Error::from)
        }
        other => other,
    }
}

/// The first [`COPY_FIRST`] bytes go through a small buffer with plain reads and
/// writes; only a direction that carries more switches to splice. Most L4 connections
/// (queries, short requests) never get there and never pay for the pipe splice needs
/// (`pipe2`, a duplicate of the client's socket and their closing): at thousands of
/// connections a second that was a tenth of the proxy's CPU. Returns at EOF.
async fn relay_direction(
    from: &mut Source<'_>,
    to: &mut Sink<'_>,
    tally: &mut Tally<'_>,
    busy_poll: Duration,
) -> io::Result<()> {
    let mut copied = 0;
    let mut buf = Vec::with_capacity(COPY_BUFFER);
    while copied < COPY_FIRST {
        buf.clear();
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf).await?;
        copied += n;
        tally.add(n);
    }
    drop(buf);
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
