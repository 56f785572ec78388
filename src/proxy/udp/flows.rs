//! The flow table of one listening socket: client address and port → its flow, at
//! most `max_flows` of them, each forgotten once nothing has passed either way for
//! `session_timeout`.
//!
//! Only the socket's receive task touches the table, so it needs no lock. A flow's
//! reply task records its activity in the flow's own clock cell ([`Activity`]), which
//! the receive task reads when it sweeps. Times are milliseconds on a [`Clock`] that
//! starts with the listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Milliseconds since the listener started; cheap to copy and to read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub(super) fn start() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the start.
    pub(super) fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// When a flow last carried a datagram, either way; shared by its two directions.
#[derive(Debug, Default)]
pub(super) struct LastActive(AtomicU64);

impl LastActive {
    /// Records activity at `now`.
    pub(super) fn touch(&self, now: u64) {
        self.0.store(now, Ordering::Relaxed);
    }

    /// The last activity.
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the table needs of a flow.
pub(super) trait Activity {
    /// When it last carried a datagram.
    fn last_active(&self) -> u64;
}

/// Flows by client address.
pub(super) struct FlowTable<F> {
    flows: HashMap<SocketAddr, F>,
    max: usize,
    timeout: u64,
}

impl<F: Activity> FlowTable<F> {
    /// An empty table of at most `max` flows, idle ones forgotten after `timeout`.
    pub(super) fn new(max: usize, timeout: Duration) -> Self {
        FlowTable {
            flows: HashMap::new(),
            max,
            timeout: timeout.as_millis() as u64,
        }
    }

    /// The flow of `client`.
    pub(super) fn get_mut(&mut self, client: &SocketAddr) -> Option<&mut F> {
        self.flows.get_mut(client)
    }

    /// Whether a new flow would exceed `max_flows`.
    pub(super) fn is_full(&self) -> bool {
        self.flows.len() >= self.max
    }

    /// Adds `client`'s flow (the caller checked [`FlowTable::is_full`]); returns it.
    pub(super) fn insert(&mut self, client: SocketAddr, flow: F) -> &mut F {
        self.flows.entry(client).insert_entry(flow).into_mut()
    }

    /// Removes and returns the flows idle for `timeout` or more at `now`.
    pub(super) fn expire(&mut self, now: u64) -> Vec<(SocketAddr, F)> {
        let timeout = self.timeout;
        let idle: Vec<SocketAddr> = self
            .flows
            .iter()
            .filter(|(_, f)| now.saturating_sub(f.last_active()) >= timeout)
            .map(|(client, _)| *client)
            .collect();
        idle.into_iter()
            .filter_map(|c| self.flows.remove_entry(&c))
            .collect()
    }

    /// Removes and returns every flow.
    pub(super) fn drain(&mut self) -> Vec<(SocketAddr, F)> {
        self.flows.drain().collect()
    }

    /// Flows in the table.
    pub(super) fn len(&self) -> usize {
        self.flows.len()
    }

    /// How often to sweep for idle flows: often enough that a flow is forgotten within
    /// an eighth of `timeout` after it expires, at most once a second, at least every
    /// 10 ms.
    pub(super) fn sweep_interval(&self) -> Duration {
        Duration::from_millis((self.timeout / 8).clamp(10, 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Default)]
    struct Fake(Arc<LastActive>);

    impl Activity for Fake {
        fn last_active(&self) -> u64 {
            self.0.get()
        }
    }

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_flow_is_forgotten_after_the_timeout() {
        let clock = Clock::start();
        let mut table = FlowTable::new(10, Duration::from_secs(30));
        let busy = Fake::default();
        let busy_clock = busy.0.clone();
        table.insert(client(1), busy);
        table.insert(client(2), Fake::default());
        tokio::time::advance(Duration::from_secs(20)).await;
        busy_clock.touch(clock.now()); // a reply: activity on the way back counts
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(table.expire(clock.now()).is_empty(), "not yet 30s idle");
        tokio::time::advance(Duration::from_millis(1)).await;
        let gone: Vec<_> = table
            .expire(clock.now())
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(gone, vec![client(2)]);
        assert!(table.get_mut(&client(1)).is_some());
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(table.expire(clock.now()).len(), 1);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = FlowTable::new(2, Duration::from_secs(1));
        table.insert(client(1), Fake::default());
        assert!(!table.is_full());
        table.insert(client(2), Fake::default());
        assert!(table.is_full());
        assert_eq!(table.drain().len(), 2);
        assert!(!table.is_full());
    }

    #[test]
    fn sweeps_are_frequent_enough_and_bounded() {
        let t = |ms| FlowTable::<Fake>::new(1, Duration::from_millis(ms)).sweep_interval();
        assert_eq!(t(30_000), Duration::from_secs(1));
        assert_eq!(t(800), Duration::from_millis(100));
        assert_eq!(t(20), Duration::from_millis(10));
    }
}
