//! A listener's `max_connections`: past it, a new connection is closed as soon as it is
//! accepted (and counted in `tioga_listener_connections_refused_total`), so the
//! connections already open keep their descriptors and memory. Closing rather than
//! leaving connections in the kernel's backlog tells a client at once to try elsewhere
//! (another instance, or later), as HAProxy's `maxconn` on a frontend does once its
//! queue is full.

use prometheus::IntCounter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One listener's connection limit and its count of open connections.
#[derive(Clone, Debug)]
pub(crate) struct Limit {
    max: usize,
    open: Arc<AtomicUsize>,
    refused: IntCounter,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Limit {
    /// At most `max` connections open at once.
    pub(crate) fn new(max: usize, refused: IntCounter) -> Limit {
        Limit {
            max,
            open: Arc::new(AtomicUsize::new(0)),
            refused,
        }
    }

    /// A slot for a new connection; `None` (counted) when `max` are open.
    pub(crate) fn admit(&self) -> Option<Slot> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.refused.inc();
            return None;
        }
        Some(Slot(self.open.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_and_again_once_one_closes() {
        let limit = Limit::new(2, IntCounter::new("r", "r").unwrap());
        let a = limit.admit().expect("first");
        let _b = limit.admit().expect("second");
        assert!(limit.admit().is_none(), "third refused");
        assert_eq!(limit.refused.get(), 1);
        drop(a);
        assert!(limit.admit().is_some(), "room again");
    }
}
