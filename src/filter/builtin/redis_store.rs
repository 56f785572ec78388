//! The shared store of `rate_limit: {…, store: redis://HOST:PORT/DB}`: GCRA decisions
//! made in Redis, so every Tioga instance using the same Redis shares each key's budget.
//!
//! One decision is one round trip: `EVALSHA` of [`GCRA_SCRIPT`], which reads the key's
//! theoretical arrival time (TAT), decides and writes the new TAT atomically, on Redis's
//! own clock (`TIME`), so the instances' clocks do not matter. (After Redis restarts
//! without the script, the first decision costs `SCRIPT LOAD` and a second `EVALSHA`.)
//!
//! Redis must never block or fail a request. Each decision waits at most
//! [`DECISION_TIMEOUT`] (or the filter's `store_timeout`); a decision that fails or times out is made by the local limiter
//! instead. After [`FAILURES_FOR_OUTAGE`] failures in a row, or one lost connection, the
//! store is *down*: decisions go straight to the local limiter, with no wait at all,
//! and a background task probes Redis with `PING` every [`PROBE_INTERVAL`] until it
//! answers. Going down and coming back are each logged once; every local decision is
//! counted in `tioga_rate_limit_store_fallback_total`, and `tioga_rate_limit_store_up`
//! says which state a store is in.
//!
//! Every `rate_limit` naming the same URL shares one store: one multiplexed connection
//! (the `redis` crate's `ConnectionManager`, which pipelines concurrent decisions over
//! it and reconnects), driven by a thread of its own started at the first decision, so
//! `tioga -t` never connects.

use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// The longest a request waits for Redis's decision before the local limiter decides,
/// unless `store_timeout` says otherwise.
pub(crate) const DECISION_TIMEOUT: Duration = Duration::from_millis(50);

/// Failed decisions in a row (timeouts, errors) that make the store *down*.
const FAILURES_FOR_OUTAGE: u32 = 3;

/// How often a down store is probed.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// How long a probe (connecting included) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// GCRA on one key, in microseconds of Redis's clock. KEYS[1] holds the key's TAT;
/// ARGV[1] is the cost of one event (`per / rate`), ARGV[2] the window (`per`).
/// Returns 0 when admitted, else the microseconds until an event would pass. The key
/// expires when its TAT is reached, i.e. at most `per` after its last admitted event.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local nxt = tat + tonumber(ARGV[1])
local window = tonumber(ARGV[2])
if nxt - now > window then
  return nxt - now - window
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000))
return 0
";

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_SCRIPT));

/// The store metrics, registered in the admin endpoint's registry by the server.
pub(crate) struct StoreMetrics {
    fallback: IntCounterVec,
    up: IntGaugeVec,
}

static METRICS: LazyLock<StoreMetrics> = LazyLock::new(|| StoreMetrics {
    fallback: IntCounterVec::new(
        Opts::new(
            "tioga_rate_limit_store_fallback_total",
            "rate_limit decisions made locally because the shared store was down or slow",
        ),
        &["store"],
    )
    .expect("a valid metric"),
    up: IntGaugeVec::new(
        Opts::new(
            "tioga_rate_limit_store_up",
            "1 while the shared rate-limit store answers, 0 while limits are local",
        ),
        &["store"],
    )
    .expect("a valid metric"),
});

/// The collectors of the store metrics, for a Prometheus registry.
pub(crate) fn store_collectors() -> Vec<Box<dyn prometheus::core::Collector>> {
    vec![
        Box::new(METRICS.fallback.clone()),
        Box::new(METRICS.up.clone()),
    ]
}

/// Checks the form of a `store` URL (no connection is made): `redis://HOST:PORT/DB`.
pub(crate) fn parse_url(url: &str) -> Result<redis::Client, String> {
    if !url.starts_with("redis://") {
        return Err(format!(
            "`{url}` is not a Redis URL: write it like redis://127.0.0.1:6379/0"
        ));
    }
    redis::Client::open(url).map_err(|e| format!("`{url}` is not a valid Redis URL: {e}"))
}

/// One Redis store, shared by every filter naming its URL.
pub(crate) struct Store {
    /// The URL without any password, for logs and the metric label.
    label: String,
    client: redis::Client,
    /// Set by the store's thread once the connection manager exists.
    conn: OnceLock<ConnectionManager>,
    /// Whether decisions go to Redis.
    up: AtomicBool,
    /// Whether Redis ever answered (the first success is "connected", not "again").
    ever_up: AtomicBool,
    /// Failed decisions in a row.
    failures: AtomicU32,
    /// Started at the first decision.
    started: std::sync::Once,
    /// Wakes the prober when the store goes down.
    down: Notify,
}

/// Stores by URL, so routes naming the same Redis share its connection.
static STORES: LazyLock<Mutex<HashMap<String, Weak<Store>>>> = LazyLock::new(Default::default);

impl Store {
    /// The store for `url` (already checked by [`parse_url`]); no connection yet.
    pub(crate) fn shared(url: &str, client: redis::Client) -> Arc<Store> {
        let mut stores = STORES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = stores.get(url).and_then(Weak::upgrade) {
            return store;
        }
        let label = redact(client.get_connection_info());
        METRICS.up.with_label_values(&[&label]).set(0);
        let store = Arc::new(Store {
            label,
            client,
            conn: OnceLock::new(),
            up: AtomicBool::new(false),
            ever_up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            started: std::sync::Once::new(),
            down: Notify::new(),
        });
        stores.insert(url.to_string(), Arc::downgrade(&store));
        store
    }

    /// One GCRA decision for `key` in Redis: `Some(Ok)` admitted, `Some(Err(wait))`
    /// refused; `None` when Redis is down or did not answer in time (counted: the
    /// caller decides locally).
    pub(crate) async fn admit(
        self: &Arc<Self>,
        key: &[u8],
        cost_us: u64,
        window_us: u64,
        timeout: Duration,
    ) -> Option<Result<(), Duration>> {
        self.start();
        let verdict = match self.conn.get() {
            Some(conn) if self.up.load(Ordering::Relaxed) => {
                let mut conn = conn.clone();
                let mut invocation = SCRIPT.key(key);
                invocation.arg(cost_us).arg(window_us);
                let call = invocation.invoke_async::<u64>(&mut conn);
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(wait)) => {
                        self.failures.store(0, Ordering::Relaxed);
                        Some(match wait {
                            0 => Ok(()),
                            us => Err(Duration::from_micros(us)),
                        })
                    }
                    Ok(Err(e)) => {
                        self.failed(e.is_io_error() || e.is_connection_dropped(), &e.to_string());
                        None
                    }
                    Err(_) => {
                        self.failed(false, "no answer within the decision timeout");
                        None
                    }
                }
            }
            _ => None,
        };
        if verdict.is_none() {
            METRICS.fallback.with_label_values(&[&self.label]).inc();
        }
        verdict
    }

    /// Counts a failed decision; the store goes down on a lost connection or after
    /// enough failures in a row.
    fn failed(&self, connection_lost: bool, reason: &str) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if connection_lost || failures >= FAILURES_FOR_OUTAGE {
            self.set_up(false, reason);
        }
    }

    /// Records a state change, logging only transitions.
    fn set_up(&self, up: bool, reason: &str) {
        if self.up.swap(up, Ordering::Relaxed) == up {
            return;
        }
        METRICS
            .up
            .with_label_values(&[&self.label])
            .set(i64::from(up));
        if up {
            self.failures.store(0, Ordering::Relaxed);
            let again = if self.ever_up.swap(true, Ordering::Relaxed) {
                " again"
            } else {
                ""
            };
            log::info!(
                "rate_limit store {}: reachable{again}, limits are shared",
                self.label
            );
        } else {
            log::warn!(
                "rate_limit store {}: {reason}; limiting locally per instance until it answers",
                self.label
            );
            self.down.notify_one();
        }
    }

    /// Starts the store's thread (once): it owns the connection and probes Redis
    /// while the store is down.
    fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            let store = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("tioga-redis".into())
                .spawn(move || run(store));
            if let Err(e) = spawned {
                log::error!("rate_limit store {}: cannot start: {e}", self.label);
            }
        });
    }
}

/// The store thread: builds the connection manager, then probes whenever the store
/// is down. Ends when the store is dropped.
fn run(store: Weak<Store>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return log::error!("rate_limit store: no runtime: {e}"),
    };
    runtime.block_on(async move {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(PROBE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_INTERVAL);
        {
            let Some(s) = store.upgrade() else { return };
            match ConnectionManager::new_lazy_with_config(s.client.clone(), config) {
                Ok(conn) => {
                    let _ = s.conn.set(conn);
                }
                Err(e) => return log::error!("rate_limit store {}: {e}", s.label),
            }
        }
        let mut first = true;
        loop {
            let Some(s) = store.upgrade() else { return };
            if s.up.load(Ordering::Relaxed) {
                // A store lives as long as the config that named it: waiting while
                // holding it keeps nothing alive that would otherwise go.
                s.down.notified().await;
                continue;
            }
            if !first {
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            let ping = probe(&s).await;
            match ping {
                Ok(()) => s.set_up(true, ""),
                Err(e) if first => {
                    log::warn!(
                        "rate_limit store {}: {e}; limiting locally per instance until it answers",
                        s.label
                    );
                }
                Err(_) => {}
            }
            first = false;
        }
    });
}

/// One `PING`, within [`PROBE_TIMEOUT`].
async fn probe(s: &Store) -> Result<(), String> {
    let Some(conn) = s.conn.get() else {
        return Err("no connection".into());
    };
    let mut conn = conn.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("unreachable ({e})")),
        Err(_) => Err("unreachable (no answer to PING)".into()),
    }
}

/// `redis://HOST:PORT/DB`, without user or password.
fn redact(info: &redis::ConnectionInfo) -> String {
    format!("redis://{}/{}", info.addr(), info.redis_settings().db())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_for_form_only() {
        assert!(parse_url("redis://127.0.0.1:1/0").is_ok());
        assert!(parse_url("redis://user:secret@cache.internal:6380/2").is_ok());
        assert!(parse_url("http://127.0.0.1:6379").is_err());
        assert!(parse_url("127.0.0.1:6379").is_err());
        assert!(parse_url("redis://127.0.0.1:6379/zero").is_err());
    }

    #[test]
    fn the_label_has_no_password() {
        let client = parse_url("redis://user:secret@cache.internal:6380/2").unwrap();
        assert_eq!(
            redact(client.get_connection_info()),
            "redis://cache.internal:6380/2"
        );
    }

    #[test]
    fn one_store_per_url() {
        let url = "redis://127.0.0.1:1/3";
        let a = Store::shared(url, parse_url(url).unwrap());
        let b = Store::shared(url, parse_url(url).unwrap());
        assert!(Arc::ptr_eq(&a, &b));
    }

    /// Nothing listens on port 1: every decision is local, at once, and counted.
    #[tokio::test]
    async fn an_unreachable_store_falls_back_at_once_and_counts() {
        let url = "redis://127.0.0.1:1/5";
        let store = Store::shared(url, parse_url(url).unwrap());
        let fallbacks = || METRICS.fallback.with_label_values(&[&store.label]).get();
        let before = fallbacks();
        for _ in 0..3 {
            let verdict = store.admit(b"k", 1000, 1_000_000, DECISION_TIMEOUT).await;
            assert_eq!(verdict, None);
        }
        assert_eq!(fallbacks() - before, 3);
    }
}
