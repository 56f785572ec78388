//! Each one-thread worker's flusher: the task that sends what the connections of a
//! pass hold, after the pass (see the parent module).

use super::Outbox;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Due {
    outboxes: Vec<Arc<Outbox>>,
    /// The flusher's waker while it waits; `None` while it runs or is scheduled.
    waker: Option<Waker>,
    running: bool,
}

thread_local! {
    static DUE: RefCell<Due> = RefCell::default();
}

/// Puts a connection in this pass's list, waking (or starting) the flusher.
pub(super) fn enqueue(out: &Arc<Outbox>) {
    let (start, wake) = DUE.with(|due| {
        let mut due = due.borrow_mut();
        due.outboxes.push(out.clone());
        let start = !due.running;
        due.running = true;
        (start, due.waker.take())
    });
    if start {
        tokio::spawn(Flusher);
    } else if let Some(w) = wake {
        w.wake();
    }
}

/// The task: sends what each due connection holds, then waits for the next pass.
struct Flusher;

impl Future for Flusher {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let batch = DUE.with(|due| {
                let mut due = due.borrow_mut();
                if due.outboxes.is_empty() {
                    due.waker = Some(cx.waker().clone());
                    None
                } else {
                    Some(std::mem::take(&mut due.outboxes))
                }
            });
            let Some(mut batch) = batch else {
                return Poll::Pending;
            };
            for out in batch.drain(..) {
                out.send_held();
            }
            DUE.with(|due| {
                let mut due = due.borrow_mut();
                if due.outboxes.is_empty() {
                    due.outboxes = batch; // keeps its capacity
                }
            });
        }
    }
}

impl Drop for Flusher {
    /// The runtime is going away: the next one on this thread starts its own.
    fn drop(&mut self) {
        let _ = DUE.try_with(|due| {
            if let Ok(mut due) = due.try_borrow_mut() {
                due.running = false;
                due.waker = None;
                for out in due.outboxes.drain(..) {
                    out.lock().queued = false;
                }
            }
        });
    }
}
