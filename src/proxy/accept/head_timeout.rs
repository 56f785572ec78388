//! Deadlines for request heads, so that a client cannot hold a connection (a
//! descriptor and its memory) by sending a head slowly or not at all ("slowloris").
//!
//! Pingora's read timeout restarts with every read, and it waits for a new connection's
//! first byte without limit. Here each wait for a request is bounded as a whole:
//! - a new connection must deliver its first request's complete head within
//!   `request_header_timeout` of being accepted (HAProxy's `timeout http-request`);
//! - a kept-alive connection must deliver the next request's complete head within
//!   `keepalive_timeout` of the previous request's end (the idle wait and the head
//!   together).
//!
//! A connection past its deadline is closed (nothing was in flight: no head was
//! complete) and counted in `tioga_http_timeouts_total{listener, phase}`. Between
//! [`head_parsed`] and [`request_done`], which the proxy calls from its first and last
//! hooks, the request is the proxy's, and only Pingora's and the pool's timeouts apply.
//!
//! The hooks reach the connection's [`Clock`] through a task-local: Pingora runs an
//! HTTP/1 connection's requests, and their hooks, inside the connection's own task.
//! They only store the phase; nothing is woken. The guard's one timer fires at the
//! current deadline, or once per timeout while a request is in flight, and then reads
//! the clock again.

use prometheus::IntCounter;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static CLOCK: Arc<Clock>;
}

/// Tells the connection's guard that a request's head is parsed. Does nothing outside
/// a guarded connection.
pub(crate) fn head_parsed() {
    let _ = CLOCK.try_with(|clock| clock.set(Phase::Busy));
}

/// Tells the connection's guard that the connection speaks HTTP/2: its streams run in
/// tasks of their own, which cannot report, so no deadline applies to it any more.
pub(crate) fn let_go() {
    let _ = CLOCK.try_with(|clock| clock.set(Phase::Busy));
}

/// Tells the connection's guard that a request is done: the wait for the next one
/// starts now.
pub(crate) fn request_done() {
    let _ = CLOCK.try_with(|clock| clock.set(Phase::Idle));
}

/// Where a connection is between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a new connection's first head.
    First = 0,
    /// A request is in flight.
    Busy = 1,
    /// Waiting for a kept-alive connection's next head.
    Idle = 2,
}

/// A connection's phase and when it began, in one word: the phase in the low two
/// bits, milliseconds since the connection's start above them.
struct Clock {
    start: Instant,
    word: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            word: AtomicU64::new(Phase::First as u64),
        }
    }

    fn set(&self, phase: Phase) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.word.store(ms << 2 | phase as u64, Ordering::Relaxed);
    }

    fn read(&self) -> (Phase, Instant) {
        let word = self.word.load(Ordering::Relaxed);
        let phase = match word & 3 {
            0 => Phase::First,
            1 => Phase::Busy,
            _ => Phase::Idle,
        };
        (phase, self.start + Duration::from_millis(word >> 2))
    }
}

/// One HTTP listener's head deadlines and their counters.
#[derive(Clone, Debug)]
pub(crate) struct HeadTimeouts {
    /// The first request's whole head, from accept.
    pub(crate) request_header: Duration,
    /// The next request's whole head, from the previous request's end.
    pub(crate) keepalive: Duration,
    /// Connections closed by each deadline: `[request_header, keepalive]`.
    pub(crate) counters: [IntCounter; 2],
}

impl HeadTimeouts {
    /// Deadlines long enough never to fire in a unit test, with detached counters.
    #[cfg(test)]
    pub(crate) fn unlimited() -> HeadTimeouts {
        let counter = || IntCounter::new("unused", "unused").expect("valid counter");
        HeadTimeouts {
            request_header: Duration::from_secs(3600),
            keepalive: Duration::from_secs(3600),
            counters: [counter(), counter()],
        }
    }

    /// Runs `connection` (all of one connection's requests), closing it when a wait
    /// for a request head passes its deadline: `None` then, as when the client leaves.
    /// The connection is pinned by the caller: taken by value, it would be kept twice
    /// in this future, which an idle connection holds.
    pub(crate) async fn guard<T, F>(&self, connection: Pin<&mut F>) -> Option<T>
    where
        F: Future<Output = Option<T>>,
    {
        let clock = Arc::new(Clock::new());
        let mut connection = pin!(CLOCK.scope(clock.clone(), connection));
        // A connection that is done on its first poll needs no timer.
        if let Poll::Ready(out) = futures::poll!(connection.as_mut()) {
            return out;
        }
        tokio::select! {
            out = connection => out,
            phase = self.expiry(&clock) => {
                let (counter, which) = match phase {
                    Phase::Idle => (&self.counters[1], "keepalive_timeout"),
                    _ => (&self.counters[0], "request_header_timeout"),
                };
                counter.inc();
                log::debug!("closed a connection: no complete request head within its {which}");
                None
            }
        }
    }

    /// Resolves when the clock's phase is past its deadline, with that phase.
    async fn expiry(&self, clock: &Clock) -> Phase {
        loop {
            let (phase, since) = clock.read();
            let deadline = match phase {
                Phase::First => since + self.request_header,
                Phase::Idle => since + self.keepalive,
                // Look again later: the request may end and the connection go idle.
                Phase::Busy => Instant::now() + self.request_header.min(self.keepalive),
            };
            if phase != Phase::Busy && Instant::now() >= deadline {
                return phase;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> HeadTimeouts {
        let c = || IntCounter::new("c", "c").unwrap();
        HeadTimeouts {
            request_header: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
            counters: [c(), c()],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_head_not_parsed_in_time_closes_the_connection() {
        let t = timeouts();
        let start = Instant::now();
        let out = t.guard(pin!(std::future::pending::<Option<()>>())).await;
        assert_eq!(out, None);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(t.counters[0].get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_are_not_cut_and_idle_waits_are() {
        let t = timeouts();
        let start = Instant::now();
        let connection = async {
            tokio::time::sleep(Duration::from_secs(9)).await;
            head_parsed();
            // A request may take longer than either deadline.
            tokio::time::sleep(Duration::from_secs(200)).await;
            request_done();
            // Then the next head never comes.
            std::future::pending::<Option<()>>().await
        };
        assert_eq!(t.guard(pin!(connection)).await, None);
        assert_eq!(start.elapsed(), Duration::from_secs(9 + 200 + 60));
        assert_eq!(t.counters.each_ref().map(IntCounter::get), [0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_done_at_once_needs_no_timer() {
        let t = timeouts();
        let connection = async {
            head_parsed();
            request_done();
            Some(1)
        };
        assert_eq!(t.guard(pin!(connection)).await, Some(1));
    }

    #[test]
    fn reporting_outside_a_guard_does_nothing() {
        head_parsed();
        request_done();
    }
}
