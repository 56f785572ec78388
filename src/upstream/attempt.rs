//! One request's or connection's use of a pool, the same for HTTP and TCP listeners:
//! pick a backend, learn how it went, and decide whether to try another or give up.
//!
//! The decisions live here so that every listener kind makes them alike: a pool with
//! nothing eligible gives up at once ([`GiveUp::NoneEligible`]: HTTP 503, TCP close);
//! a failed connect is retried on another backend while `retries` allows and one is
//! eligible, then given up ([`GiveUp::Exhausted`]: HTTP 502). The chosen backend counts
//! as active (for `least_conn`) until the attempt moves on or is dropped.

use super::state::Lease;
use super::Pool;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a pool gave no backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// No backend is eligible, and none was tried.
    NoneEligible,
    /// Backends were tried and failed; no further try is allowed or possible.
    Exhausted,
}

impl GiveUp {
    /// The HTTP status it answers with (and the TCP access log records).
    pub(crate) fn status(self) -> u16 {
        match self {
            GiveUp::NoneEligible => 503,
            GiveUp::Exhausted => 502,
        }
    }
}

/// The tries of one request or connection on one pool.
pub(crate) struct Attempt {
    pool: Arc<Pool>,
    tried: Vec<SocketAddr>,
    current: Option<Lease>,
    retries: u32,
}

impl Attempt {
    pub(super) fn new(pool: Arc<Pool>) -> Attempt {
        Attempt {
            pool,
            tried: Vec::new(),
            current: None,
            retries: 0,
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
                Ok(chosen.addr)
            }
            None if self.tried.is_empty() => Err(GiveUp::NoneEligible),
            None => Err(GiveUp::Exhausted),
        }
    }

    /// Connecting to the current backend failed. `Ok` when another backend may be
    /// tried (counted as a retry), otherwise why not.
    pub(crate) fn connect_failed(&mut self) -> Result<(), GiveUp> {
        if let Some(lease) = self.current.take() {
            lease.state().count_connect_failure();
        }
        let pool = &self.pool;
        if self.tried.len() <= pool.spec.retries && pool.has_candidate(&self.tried) {
            self.retries += 1;
            pool.table().count_retry();
            Ok(())
        } else {
            Err(GiveUp::Exhausted)
        }
    }

    /// The current backend failed after connecting: a 5xx answer, or a relay that
    /// broke.
    pub(crate) fn failed(&self) {
        if let Some(lease) = &self.current {
            lease.state().count_error();
        }
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
}

#[cfg(test)]
mod tests;
