//! A pool's resilience settings (the contract's "Resilient upstreams"), as the config
//! validator builds them: passive health, fail-open, slow start and retry rules.
//! Every part is optional; a pool without any behaves as before.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything a pool does to heal itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resilience {
    /// Passive health: eject a backend after consecutive failures.
    pub(crate) outlier: Option<OutlierSpec>,
    /// Percent of backends that must be healthy; below it, balance over every backend.
    pub(crate) panic_threshold: Option<u32>,
    /// How long a new or recovered backend takes to reach its full weight.
    pub(crate) slow_start: Option<Duration>,
    /// What failures are retried on another backend.
    pub(crate) retry_on: RetryOn,
    /// Retries allowed relative to requests.
    pub(crate) retry_budget: Option<BudgetSpec>,
    /// The most requests or connections in flight per backend, and the queue
    /// beyond it.
    pub(crate) max_conns: Option<(usize, QueueSpec)>,
    /// Sticky sessions (HTTP).
    pub(crate) sticky: Option<StickySpec>,
}

/// `sticky:` — keep each client's session on one backend with a cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StickySpec {
    /// The cookie's name.
    pub(crate) cookie: String,
    /// The cookie's lifetime (`Max-Age`); `None`: until the browser closes.
    pub(crate) max_age: Option<Duration>,
}

/// `queue:` — where requests wait when every backend is at `max_conns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueSpec {
    /// The most waiting at once.
    pub(crate) size: usize,
    /// The longest wait.
    pub(crate) timeout: Duration,
}

/// `outlier:` — when and for how long a failing backend is ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutlierSpec {
    /// Consecutive failures (connect failures, resets, 5xx) that eject.
    pub(crate) consecutive_failures: u32,
    /// The first ejection's length; doubled for each repeated ejection.
    pub(crate) base_ejection: Duration,
    /// The most of the pool ejected at once, in percent.
    pub(crate) max_ejected_percent: u32,
}

impl OutlierSpec {
    /// How many of `n` backends may be ejected at once: `max_ejected` of the pool,
    /// rounded down, but at least one (as Envoy does) when the percentage is not 0.
    pub(crate) fn max_ejected(&self, n: usize) -> usize {
        if self.max_ejected_percent == 0 {
            return 0;
        }
        (n * self.max_ejected_percent as usize / 100).max(1)
    }
}

/// One condition of `retry_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    /// Connecting failed (nothing was sent).
    ConnectFailure,
    /// The connection broke after the request was sent, before any answer.
    Reset,
    /// The backend answered 502.
    Status502,
    /// The backend answered 503.
    Status503,
    /// The backend did not answer in time (Tioga answers 504), or answered 504.
    Status504,
}

impl Condition {
    /// Every condition, in the order `retry_on` lists them.
    pub(crate) const ALL: [Condition; 5] = [
        Condition::ConnectFailure,
        Condition::Reset,
        Condition::Status502,
        Condition::Status503,
        Condition::Status504,
    ];

    /// As written in the file, and as the retry metric's `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Condition::ConnectFailure => "connect_failure",
            Condition::Reset => "reset",
            Condition::Status502 => "502",
            Condition::Status503 => "503",
            Condition::Status504 => "504",
        }
    }

    /// The condition an upstream answer's status is, if any.
    pub(crate) fn of_status(status: u16) -> Option<Condition> {
        match status {
            502 => Some(Condition::Status502),
            503 => Some(Condition::Status503),
            504 => Some(Condition::Status504),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl std::str::FromStr for Condition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Condition::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown condition `{text}` (expected connect_failure, reset, 502, 503 or 504)"
                )
            })
    }
}

/// The set of conditions `retry_on` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryOn(u8);

impl RetryOn {
    /// No condition.
    pub(crate) const NONE: RetryOn = RetryOn(0);

    /// With `c` added.
    pub(crate) fn with(self, c: Condition) -> RetryOn {
        RetryOn(self.0 | c.bit())
    }

    /// Whether `c` is listed.
    pub(crate) fn contains(self, c: Condition) -> bool {
        self.0 & c.bit() != 0
    }
}

impl Default for RetryOn {
    /// `[connect_failure]`, the contract's default.
    fn default() -> Self {
        RetryOn::NONE.with(Condition::ConnectFailure)
    }
}

/// `retry_budget:` — retries at most `ratio` of requests over a sliding window, and
/// always at least `min_per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BudgetSpec {
    /// Retries per request, 0.0 to 1.0.
    pub(crate) ratio: f64,
    /// Retries per second allowed whatever the ratio.
    pub(crate) min_per_second: u32,
}

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A/AAAA records of `host`, all on `port`.
    Dns {
        /// The name.
        host: String,
        /// The backends' port.
        port: u16,
    },
    /// SRV records of `name`.
    Srv {
        /// The name, e.g. `_http._tcp.api.internal`.
        name: String,
    },
}

/// `discovery:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiscoverySpec {
    /// What to look up.
    pub(crate) target: Target,
    /// Time between lookups.
    pub(crate) refresh: Duration,
    /// The DNS server to ask; `None`: the system's.
    pub(crate) resolver: Option<SocketAddr>,
}
