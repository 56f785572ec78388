//! Bounded, adaptive busy-polling for a spliced L4 direction (`busy_poll` on a TCP
//! listener).
//!
//! A relay in bulk mode finds its socket empty many times a second, and each time the
//! worker, having nothing else to do, goes to sleep in `epoll_wait`. The next segment
//! from the peer must then wake it, and waking a sleeping CPU is an inter-processor
//! interrupt, paid on the sender's CPU (on a virtual machine also a hypervisor exit).
//!
//! So when a read finds nothing, [`BusyPoll::io`] keeps trying for up to its window
//! before it waits on the reactor. Between tries it yields to the worker: its other
//! connections run, and the reactor is polled without blocking, so spinning never holds
//! anything up. While the worker spins, a segment that arrives needs no wake-up at all.
//! It trades a little CPU for fewer wake-ups (measurements: `docs/performance.md`), as
//! HAProxy's `busy-polling` and Linux's `net.core.busy_poll` do.
//!
//! It is adaptive so that an idle or trickling connection costs next to nothing: a
//! window that ends empty-handed makes the direction skip spinning for its next 1, then
//! 3, 7 … up to 63 waits, until a spin catches data again. A connection that goes quiet
//! therefore spins ever more rarely: after six empty windows in a row, once in 64 waits.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Consecutive empty windows after which the back-off stops growing (skip 2⁶ − 1 waits).
const MAX_MISSES: u32 = 6;

/// One direction's busy-polling state (module docs).
#[derive(Debug)]
pub(super) struct BusyPoll {
    window: Duration,
    /// Consecutive windows that ended without data.
    misses: u32,
    /// Waits left to go straight to the reactor.
    skip: u32,
}

impl BusyPoll {
    /// Spins for up to `window` before each wait; a zero window never spins.
    pub(super) fn new(window: Duration) -> Self {
        BusyPoll {
            window,
            misses: 0,
            skip: 0,
        }
    }

    /// Whether the wait that is about to happen spins first.
    fn take_turn(&mut self) -> bool {
        if self.window.is_zero() {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    fn hit(&mut self) {
        self.misses = 0;
    }

    fn miss(&mut self) {
        self.misses = (self.misses + 1).min(MAX_MISSES);
        self.skip = (1 << self.misses) - 1;
    }

    /// Runs `op` (a non-blocking operation on `socket` that returns `WouldBlock` when
    /// the socket is not ready) until it succeeds or fails: at once if it can, else by
    /// spinning through the window, else once the reactor reports `socket` ready.
    pub(super) async fn io<R>(
        &mut self,
        socket: &TcpStream,
        interest: Interest,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        match socket.try_io(interest, &mut op) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
        if self.take_turn() {
            let until = Instant::now() + self.window;
            loop {
                // Lets the worker run its other tasks and poll the reactor (without
                // blocking), which refreshes `socket`'s readiness.
                tokio::task::yield_now().await;
                match socket.try_io(interest, &mut op) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    done => {
                        self.hit();
                        return done;
                    }
                }
                if Instant::now() >= until {
                    self.miss();
                    break;
                }
            }
        }
        socket.async_io(interest, op).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn empty_windows_back_off_exponentially_and_a_hit_resets() {
        let mut b = BusyPoll::new(Duration::from_micros(50));
        assert!(b.take_turn());
        // After n consecutive misses, 2^n - 1 waits skip the spin.
        for n in 1..=8u32 {
            b.miss();
            let skipped = (0..100).take_while(|_| !b.take_turn()).count();
            assert_eq!(skipped, (1 << n.min(MAX_MISSES)) - 1, "after {n} misses");
        }
        b.hit();
        b.miss();
        assert!(!b.take_turn(), "one miss after a hit skips one wait");
        assert!(b.take_turn());
    }

    #[test]
    fn a_zero_window_never_spins() {
        let mut b = BusyPoll::new(Duration::ZERO);
        assert!((0..10).all(|_| !b.take_turn()));
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Reads through a `BusyPoll` of `window` on one end of a fresh connection, while
    /// a task on the same single-threaded worker writes `data` to the other end after
    /// `delay`. Returns the poll's state and what was read.
    async fn read_written(
        window: Duration,
        delay: Duration,
        data: &'static [u8],
    ) -> (BusyPoll, Vec<u8>) {
        let (mut tx, rx) = pair().await;
        let mut b = BusyPoll::new(window);
        let writer = tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            tx.write_all(data).await.unwrap();
            tx
        });
        let mut buf = [0u8; 16];
        let n = b
            .io(&rx, Interest::READABLE, || rx.try_read(&mut buf))
            .await
            .unwrap();
        drop(writer.await.unwrap());
        (b, buf[..n].to_vec())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn data_written_while_spinning_is_caught_by_the_spin() {
        // The writer can only write while `io` yields: the read can only succeed
        // through the spin.
        let (b, got) = read_written(Duration::from_secs(5), Duration::ZERO, b"hello").await;
        assert_eq!(got, b"hello");
        assert_eq!(b.misses, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_empty_window_counts_a_miss_then_the_reactor_delivers() {
        // The delay outlasts the window: the read has to come through the reactor.
        let (b, got) =
            read_written(Duration::from_millis(2), Duration::from_millis(50), b"late").await;
        assert_eq!(got, b"late");
        assert_eq!((b.misses, b.skip), (1, 1));
    }
}
