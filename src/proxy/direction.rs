//! One direction of an L4 relay: the [`Direction`] trait the relay drives, the
//! [`Tally`] each direction counts its bytes in, and [`Copied`], the direction through
//! a buffer (the spliced one is in `splice.rs`).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read per step of a [`Copied`] direction.
const COPY_BUFFER: usize = 32 * 1024;

/// One direction of a relay.
pub(super) trait Direction {
    /// Moves bytes until EOF, half-closing the far side as the direction sees fit, and
    /// counts each chunk moved in `tally`.
    async fn run(self, tally: Tally<'_>) -> io::Result<()>;
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

    /// Counts `n` bytes moved now.
    pub(super) fn add(&mut self, n: usize) {
        if let Some(c) = self.counter {
            c.inc_by(n as u64);
        }
        *self.total += n as u64;
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// A direction through a buffer, for a client stream that is not plain TCP.
pub(super) struct Copied<R, W> {
    from: R,
    to: W,
}

impl<R, W> Copied<R, W> {
    pub(super) fn new(from: R, to: W) -> Self {
        Copied { from, to }
    }
}

impl<R, W> Direction for Copied<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Copies until EOF, then half-closes `to`.
    async fn run(mut self, mut tally: Tally<'_>) -> io::Result<()> {
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = self.from.read(&mut buf).await?;
            if n == 0 {
                return self.to.shutdown().await;
            }
            self.to.write_all(&buf[..n]).await?;
            // Such a client stream (TLS) buffers writes: send each chunk now, or small
            // replies (greetings, interactive protocols) would wait for more data.
            self.to.flush().await?;
            tally.add(n);
        }
    }
}
