//! The L4 relay: bytes both ways between a client and its upstream until both
//! directions reach EOF, nothing moves either way for the idle timeout, or the drain
//! deadline passes. One relay; how a direction moves bytes is its [`Direction`]:
//! [`Spliced`] when the client is plain TCP (copy, then zero-copy), [`Copied`] for any
//! other stream.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};

use futures::future::Either;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pingora_core::protocols::Stream;
use prometheus::IntCounter;
use tokio::net::TcpStream;

use super::direction::{Copied, Direction, Tally};
use super::fd::Socket;
use super::splice::{Sink, Source, Spliced};

/// Byte counts of a relay: from the client (`bytes_in`) and to it (`bytes_out`).
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
}

/// One connection's relay: its limits, its counters and when it last moved a byte.
pub(super) struct Relay<'a> {
    /// How long nothing may move either way.
    idle: Duration,
    /// A spliced direction's busy-poll window (`busy_poll`).
    busy_poll: Duration,
    /// The listener's byte counters, in and out, when metrics are recorded.
    counters: (Option<&'a IntCounter>, Option<&'a IntCounter>),
    start: Instant,
    /// Milliseconds from `start` to the last chunk moved either way.
    last: AtomicU64,
}

impl<'a> Relay<'a> {
    pub(super) fn new(
        idle: Duration,
        busy_poll: Duration,
        counters: (Option<&'a IntCounter>, Option<&'a IntCounter>),
    ) -> Self {
        Relay {
            idle,
            busy_poll,
            counters,
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Relays until both directions are done, the connection idles out or `drained`
    /// resolves; counts the bytes in `totals` whatever the end.
    ///
    /// The futures are pinned where they are made and passed on by reference: what
    /// an async fn takes by value it keeps for its whole life, and an idle relayed
    /// connection holds this state.
    pub(super) fn run<'s, D: Future<Output = ()>>(
        &'s self,
        client: Stream,
        upstream: TcpStream,
        drained: Pin<&'s mut D>,
        totals: &'s mut Totals,
    ) -> impl Future<Output = io::Result<()>> + 's {
        match Socket::plain(client) {
            Ok(client) => Either::Left(self.spliced(client, upstream, drained, totals)),
            // Boxed: the rarer arm, whose state would otherwise size the spliced one.
            Err(client) => Either::Right(Box::pin(self.copied(client, upstream, drained, totals))),
        }
    }

    /// Both ends plain TCP. The client's halves keep its stream, and so its socket,
    /// alive until the relay ends.
    async fn spliced<D: Future<Output = ()>>(
        &self,
        client: Socket<Stream>,
        upstream: TcpStream,
        drained: Pin<&mut D>,
        totals: &mut Totals,
    ) -> io::Result<()> {
        let (cr, cw) = client.split();
        let finished = AtomicBool::new(false);
        let inbound = Spliced::new(
            Source::Client(cr),
            Sink::Upstream(&upstream),
            &finished,
            self.busy_poll,
        );
        let outbound = Spliced::new(
            Source::Upstream(&upstream),
            Sink::Client(cw),
            &finished,
            self.busy_poll,
        );
        let inbound = pin!(inbound.run(self.tally(self.counters.0, &mut totals.bytes_in)));
        let outbound = pin!(outbound.run(self.tally(self.counters.1, &mut totals.bytes_out)));
        self.both_ways(inbound, outbound, drained).await
    }

    /// A client stream that is not plain TCP: through buffers.
    async fn copied<D: Future<Output = ()>>(
        &self,
        client: Stream,
        upstream: TcpStream,
        drained: Pin<&mut D>,
        totals: &mut Totals,
    ) -> io::Result<()> {
        let (cr, cw) = tokio::io::split(client);
        let (ur, uw) = upstream.into_split();
        let inbound = Copied::new(cr, uw);
        let outbound = Copied::new(ur, cw);
        let inbound = pin!(inbound.run(self.tally(self.counters.0, &mut totals.bytes_in)));
        let outbound = pin!(outbound.run(self.tally(self.counters.1, &mut totals.bytes_out)));
        self.both_ways(inbound, outbound, drained).await
    }

    async fn both_ways<I, O, D>(
        &self,
        mut inbound: Pin<&mut I>,
        mut outbound: Pin<&mut O>,
        drained: Pin<&mut D>,
    ) -> io::Result<()>
    where
        I: Future<Output = io::Result<()>>,
        O: Future<Output = io::Result<()>>,
        D: Future<Output = ()>,
    {
        // Both directions run until both reach EOF; an error in either (a reset, on
        // either side) ends the other at once, instead of leaving it to the idle
        // timeout.
        let both = async {
            let (mut inbound_done, mut outbound_done) = (false, false);
            while !(inbound_done && outbound_done) {
                tokio::select! {
                    r = &mut inbound, if !inbound_done => {
                        r?;
                        inbound_done = true;
                    }
                    r = &mut outbound, if !outbound_done => {
                        r?;
                        outbound_done = true;
                    }
                }
            }
            Ok(())
        };
        tokio::select! {
            r = both => r,
            () = self.idle_out() => Ok(()),
            () = drained => Ok(()),
        }
    }

    fn tally<'t>(&'t self, counter: Option<&'t IntCounter>, total: &'t mut u64) -> Tally<'t> {
        Tally::new(&self.last, self.start, counter, total)
    }

    /// Resolves once nothing has moved either way for `idle`.
    async fn idle_out(&self) {
        loop {
            let since = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = self.start + since + self.idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}
