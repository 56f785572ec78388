//! One request's or connection's use of a pool, the same for HTTP and TCP listeners:
//! pick a backend, learn how it went, and decide whether to try another or give up.
//!
//! The decisions live here so that every listener kind makes them alike: a pool with
//! nothing eligible gives up at once ([`GiveUp::NoneEligible`]: HTTP 503, TCP close);
//! a failure is retried on another backend when `retry_on` lists its [`Condition`],
//! `retries` allows, the retry budget has room and another backend is eligible, then
//! given up ([`GiveUp::Exhausted`]: HTTP 502). Every outcome feeds the backend's
//! passive health. The chosen backend counts as active (for `least_conn`) until the
//! attempt moves on or is dropped.

use super::policy::Condition;
use super::state::{BackendTable, Lease};
use super::Pool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// Why a pool gave no backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// No backend is eligible, and none was tried.
    NoneEligible,
    /// Backends were tried and failed; no further try is allowed or possible.
    Exhausted,
    /// Every backend is at `max_conns` and the queue is full.
    QueueFull,
    /// Every backend stayed at `max_conns` for the whole `queue.timeout`.
    QueueTimeout,
}

impl GiveUp {
    /// The HTTP status it answers with (and the TCP access log records).
    pub(crate) fn status(self) -> u16 {
        match self {
            GiveUp::NoneEligible | GiveUp::QueueFull | GiveUp::QueueTimeout => 503,
            GiveUp::Exhausted => 502,
        }
    }

    /// Whether the pool was only too busy (the client may come back later).
    pub(crate) fn busy(self) -> bool {
        matches!(self, GiveUp::QueueFull | GiveUp::QueueTimeout)
    }
}

/// The tries of one request or connection on one pool.
pub(crate) struct Attempt {
    pool: Arc<Pool>,
    tried: Vec<SocketAddr>,
    current: Option<Lease>,
    retries: u32,
    /// When the current backend was chosen (for its latency, `p2c_ewma` only).
    started: Option<Instant>,
}

impl Attempt {
    pub(super) fn new(pool: Arc<Pool>) -> Attempt {
        if let Some(budget) = &pool.budget {
            budget.deposit(Instant::now());
        }
        Attempt {
            pool,
            tried: Vec::new(),
            current: None,
            retries: 0,
            started: None,
        }
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Picks an eligible backend not tried yet; `key` is what `consistent_hash`
    /// hashes (ignored by the other modes).
    pub(crate) fn next(&mut self, key: &[u8]) -> Result<SocketAddr, GiveUp> {
        self.current = None;
        match self.pool.select(key, &self.tried) {
            Some(chosen) => {
                self.tried.push(chosen.addr);
                self.current = Some(chosen.lease);
                if self.pool.measures_latency() {
                    self.started = Some(Instant::now());
                }
                Ok(chosen.addr)
            }
            None if self.tried.is_empty() => Err(GiveUp::NoneEligible),
            None => Err(GiveUp::Exhausted),
        }
    }

    /// [`Self::next_queued`], but first the backend a sticky cookie's `id` names,
    /// while it is eligible and has room (first try only).
    pub(crate) async fn next_sticky(
        &mut self,
        id: Option<&[u8]>,
        key: &[u8],
    ) -> Result<SocketAddr, GiveUp> {
        if let (Some(id), true) = (id, self.tried.is_empty()) {
            if let Some(chosen) = self.pool.sticky_choice(id, &self.tried) {
                self.tried.push(chosen.addr);
                self.current = Some(chosen.lease);
                if self.pool.measures_latency() {
                    self.started = Some(Instant::now());
                }
                return Ok(chosen.addr);
            }
        }
        self.next_queued(key).await
    }

    /// Like [`Self::next`], but when every backend that may be chosen is at
    /// `max_conns`, waits in the pool's queue (FIFO, up to `queue.timeout`).
    pub(crate) async fn next_queued(&mut self, key: &[u8]) -> Result<SocketAddr, GiveUp> {
        let pool = self.pool.clone();
        let Some(queue) = pool.queue() else {
            return self.next(key);
        };
        if queue.depth() == 0 {
            match self.next(key) {
                Err(_) if pool.all_busy(&self.tried) => {}
                done => return done,
            }
        }
        let ticket = queue.join().ok_or(GiveUp::QueueFull)?;
        let deadline = Instant::now() + queue.timeout;
        loop {
            if ticket.is_head() {
                match self.next(key) {
                    Err(_) if pool.all_busy(&self.tried) => {}
                    done => return done,
                }
            }
            if tokio::time::timeout_at(deadline, ticket.woken())
                .await
                .is_err()
            {
                queue
                    .timed_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(GiveUp::QueueTimeout);
            }
        }
    }

    /// Connecting to the current backend failed. `Ok` when another backend may be
    /// tried (counted as a retry), otherwise why not.
    pub(crate) fn connect_failed(&mut self) -> Result<(), GiveUp> {
        self.retry(Condition::ConnectFailure, true)
    }

    /// The current backend failed with `condition`: records it, then decides.
    /// `replayable` says whether the request could be sent again as it was (for
    /// HTTP: an idempotent method, a body buffered whole, no response byte sent to
    /// the client); a connect failure sent nothing, so it is always replayable.
    /// `Ok` when another backend may be tried (counted as a retry by reason).
    pub(crate) fn retry(&mut self, condition: Condition, replayable: bool) -> Result<(), GiveUp> {
        if let Some(lease) = self.current.take() {
            match condition {
                Condition::ConnectFailure => lease.state().count_connect_failure(),
                _ => lease.state().count_error(),
            }
            self.pool.outlier_failure(lease.table(), lease.index());
        }
        let pool = &self.pool;
        let allowed = pool.spec.resilience.retry_on.contains(condition)
            && (replayable || condition == Condition::ConnectFailure)
            && self.tried.len() <= pool.spec.retries
            && pool.has_candidate(&self.tried);
        if !allowed {
            return Err(GiveUp::Exhausted);
        }
        if let Some(budget) = &pool.budget {
            if !budget.try_withdraw(Instant::now()) {
                pool.table().count_budget_refusal();
                return Err(GiveUp::Exhausted);
            }
        }
        self.retries += 1;
        pool.table().count_retry(condition);
        Ok(())
    }

    /// Whether a backend is in use whose outcome is not recorded yet.
    pub(crate) fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// The current backend answered with `status`: a 5xx counts as its failure,
    /// anything else as a success.
    pub(crate) fn answered(&self, status: u16) {
        if status >= 500 {
            self.failed();
        } else {
            self.succeeded();
        }
    }

    /// The current backend served (a TCP connect, a non-5xx answer).
    pub(crate) fn succeeded(&self) {
        if let Some(lease) = &self.current {
            self.pool.outlier_success(lease.table(), lease.index());
            self.observe(lease);
        }
    }

    /// Records the time from choosing the backend to now as its latency.
    fn observe(&self, lease: &Lease) {
        if let Some(start) = self.started {
            let now = Instant::now();
            lease.state().ewma.observe(now - start, now);
        }
    }

    /// The current backend failed after connecting: a 5xx answer, or a relay that
    /// broke.
    pub(crate) fn failed(&self) {
        if let Some(lease) = &self.current {
            lease.state().count_error();
            self.pool.outlier_failure(lease.table(), lease.index());
            self.observe(lease);
        }
    }

    /// A handle that records the current backend's later outcomes from elsewhere (a UDP
    /// flow's answer task); `None` before a backend is chosen.
    pub(crate) fn outcomes(&self) -> Option<Outcomes> {
        let lease = self.current.as_ref()?;
        Some(Outcomes {
            pool: self.pool.clone(),
            table: lease.table_arc(),
            index: lease.index(),
        })
    }

    /// The backend in use, or else the last one tried.
    pub(crate) fn backend(&self) -> Option<SocketAddr> {
        self.current
            .as_ref()
            .map(|l| l.state().addr)
            .or_else(|| self.tried.last().copied())
    }

    /// Retries made so far.
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// No other backend will be chosen: gives back what choosing needed, for an
    /// attempt held as long as its connection (an L4 relay).
    pub(crate) fn settle(&mut self) {
        if self.current.is_some() {
            self.tried = Vec::new();
        }
    }
}

/// Records outcomes of one backend for passive health, as [`Attempt::succeeded`] and
/// [`Attempt::failed`] do, where the attempt itself is out of reach.
pub(crate) struct Outcomes {
    pool: Arc<Pool>,
    table: Arc<BackendTable>,
    index: usize,
}

impl Outcomes {
    /// The backend served (a UDP answer came back).
    pub(crate) fn succeeded(&self) {
        self.pool.outlier_success(&self.table, self.index);
    }

    /// The backend failed (its host refused the port, or could not be reached).
    pub(crate) fn failed(&self) {
        self.table.get(self.index).count_error();
        self.pool.outlier_failure(&self.table, self.index);
    }
}

#[cfg(test)]
mod tests;
