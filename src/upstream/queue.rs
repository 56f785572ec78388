//! The wait queue of a pool with `max_conns`: when every backend that may be chosen
//! has `max_conns` requests or connections in flight, a new one waits here, in FIFO
//! order, for up to `queue.timeout`; a full queue (`queue.size` waiting) refuses at
//! once. Only the head of the queue may take a freed place, and a newcomer joins
//! the queue whenever anyone is waiting, so no one overtakes.
//!
//! A place is freed when a request or connection ends (its lease is dropped), which
//! wakes the head; when the head leaves (served, timed out or gone), the next one
//! becomes head and is woken to try.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One pool's queue.
#[derive(Debug)]
pub(crate) struct WaitQueue {
    /// The most waiting at once.
    pub(crate) size: usize,
    /// The longest wait.
    pub(crate) timeout: Duration,
    waiters: Mutex<VecDeque<(u64, Arc<Notify>)>>,
    next_id: AtomicU64,
    /// Requests refused because the queue was full.
    pub(crate) refused: AtomicU64,
    /// Waits that timed out.
    pub(crate) timed_out: AtomicU64,
}

/// A place in the queue; leaving it (drop) wakes the next in line.
pub(crate) struct Ticket<'a> {
    queue: &'a WaitQueue,
    id: u64,
    notify: Arc<Notify>,
}

impl WaitQueue {
    /// An empty queue.
    pub(crate) fn new(size: usize, timeout: Duration) -> Self {
        Self {
            size,
            timeout,
            waiters: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Arc<Notify>)>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many are waiting.
    pub(crate) fn depth(&self) -> usize {
        self.lock().len()
    }

    /// Joins the end of the queue; `None` when it is full.
    pub(crate) fn join(&self) -> Option<Ticket<'_>> {
        let mut waiters = self.lock();
        if waiters.len() >= self.size {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        waiters.push_back((id, notify.clone()));
        Some(Ticket {
            queue: self,
            id,
            notify,
        })
    }

    /// A place was freed: the head may try to take it.
    pub(crate) fn wake_head(&self) {
        if let Some((_, notify)) = self.lock().front() {
            // Stores a permit if the head is not waiting yet: no wake-up is lost.
            notify.notify_one();
        }
    }
}

impl Ticket<'_> {
    /// Whether it is first in line.
    pub(crate) fn is_head(&self) -> bool {
        self.queue
            .lock()
            .front()
            .is_some_and(|(id, _)| *id == self.id)
    }

    /// Waits until woken (a place was freed, or it became head).
    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut waiters = self.queue.lock();
        let was_head = waiters.front().is_some_and(|(id, _)| *id == self.id);
        waiters.retain(|(id, _)| *id != self.id);
        if was_head {
            if let Some((_, next)) = waiters.front() {
                next.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses() {
        let q = WaitQueue::new(2, Duration::from_secs(1));
        let (a, b) = (q.join().unwrap(), q.join().unwrap());
        assert!(q.join().is_none());
        assert_eq!(q.refused.load(Ordering::Relaxed), 1);
        assert_eq!(q.depth(), 2);
        drop((a, b));
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_head_is_woken_and_leaving_passes_the_turn_on() {
        let q = WaitQueue::new(10, Duration::from_secs(1));
        let a = q.join().unwrap();
        let b = q.join().unwrap();
        assert!(a.is_head() && !b.is_head());
        q.wake_head();
        // The permit is kept until the head waits.
        tokio::time::timeout(Duration::from_millis(1), a.woken())
            .await
            .expect("head woken");
        drop(a);
        assert!(b.is_head());
        tokio::time::timeout(Duration::from_millis(1), b.woken())
            .await
            .expect("next woken when the head leaves");
    }
}
