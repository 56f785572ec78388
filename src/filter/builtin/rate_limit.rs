//! `rate_limit: {rate: N, per: 1s, key: client_ip}` — more than N requests (or TCP
//! connections) per `per` from one key → 429 (or the connection is closed).
//!
//! The limit is GCRA, the continuous form of a token bucket holding `rate` tokens that
//! refill at `rate` per `per`: a burst of up to `rate` passes at once, a client that
//! keeps going gets one more every `per / rate`, and one that paused for `per` has its
//! whole budget back. Refused requests are not counted, and `Retry-After` says when
//! the next one will pass.
//!
//! Per key GCRA needs one number, the *theoretical arrival time* (TAT): when the
//! key's bucket will be full again. TATs live in a fixed-size sketch (four rows of
//! counters, a key's estimate is the minimum of its four slots, updates raise all
//! four), so memory does not grow with the number of clients; a collision can only
//! make an estimate later, i.e. stricter, never let a client through early, and only
//! keys active within the last `per` occupy anything.
//!
//! With `store: redis://HOST:PORT/DB` the same GCRA runs in Redis, shared by every
//! instance using that Redis, and this sketch decides only while Redis is down or slow
//! (see `redis_store`).
//!
//! (pingora-limits' `Rate` was used before: it starts its next window at the first
//! event after the last one ended rather than where it ended, so a client that
//! paused for more than `per` after a full burst was still refused.)

use super::redis_store::{self, Store};
use crate::filter::settings::{Duration, Key};
use crate::filter::{Context, Decision, Filter, Hooks, Response, Scope};
use crate::routing::key::{ip_key, request_key};
use async_trait::async_trait;
use pingora_error::Result;
use pingora_http::RequestHeader;
use serde::Deserialize;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Settings of `rate_limit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitSettings {
    /// Requests allowed per `per`.
    rate: u64,
    /// The window, default 1s.
    #[serde(default = "one_second")]
    per: Duration,
    /// What is counted together, default `client_ip`.
    #[serde(default)]
    key: Key,
    /// A Redis shared by every instance: `redis://HOST:PORT/DB`.
    #[serde(default)]
    store: Option<StoreUrl>,
    /// The longest a request waits for the store's decision (default 50ms).
    #[serde(default)]
    store_timeout: Option<Duration>,
}

/// A `store` URL, checked for its form while deserializing (no connection is made).
struct StoreUrl(String, redis::Client);

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StoreUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        let client = redis_store::parse_url(&url).map_err(serde::de::Error::custom)?;
        Ok(StoreUrl(url, client))
    }
}

fn one_second() -> Duration {
    Duration(std::time::Duration::from_secs(1))
}

/// The `rate_limit` filter.
pub(crate) struct RateLimit {
    settings: RateLimitSettings,
    limiter: Gcra,
    shared: Option<Shared>,
}

/// The Redis side of a `rate_limit` with `store`.
struct Shared {
    store: Arc<Store>,
    /// `tioga:rl:RATE:PER_MS:KEY:` — what every Redis key of this limit starts with.
    prefix: Vec<u8>,
    /// `per / rate` and `per`, in microseconds (Redis's clock).
    cost_us: u64,
    window_us: u64,
    /// How long a decision may wait for Redis.
    timeout: std::time::Duration,
}

/// Rows of the TAT sketch, and slots per row (a power of two: each row's slot is
/// `SLOT_BITS` bits of one 64-bit hash of the key).
const ROWS: usize = 4;
const SLOT_BITS: u32 = 11;
const SLOTS: usize = 1 << SLOT_BITS;

/// GCRA over a sketch of theoretical arrival times, in nanoseconds since `start`.
struct Gcra {
    /// The time one event costs: `per / rate`.
    cost: u64,
    /// `per`: how far ahead of now a key's TAT may run.
    window: u64,
    start: Instant,
    /// Seeded per filter, so clients cannot aim at each other's slots.
    hasher: RandomState,
    /// `ROWS × SLOTS` TATs. One lock: it is held for a few dozen instructions, far
    /// shorter than anything else a request does.
    tats: Mutex<Vec<u64>>,
}

impl Gcra {
    fn new(rate: u64, per: std::time::Duration, start: Instant) -> Self {
        let window = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX).max(1);
        Self {
            cost: (window / rate).max(1),
            window,
            start,
            hasher: RandomState::new(),
            tats: Mutex::new(vec![0; ROWS * SLOTS]),
        }
    }

    /// Admits one event for `key` at `now`, or says how long until one would pass.
    fn admit(&self, key: &[u8], now: Instant) -> Result<(), std::time::Duration> {
        let now =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let hash = self.hasher.hash_one(key);
        let slots: [usize; ROWS] = std::array::from_fn(|row| {
            row * SLOTS + (hash >> (row as u32 * SLOT_BITS)) as usize % SLOTS
        });
        let mut tats = self
            .tats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = slots.iter().map(|&i| tats[i]).min().unwrap_or(0).max(now);
        let next = tat.saturating_add(self.cost);
        if next - now > self.window {
            return Err(std::time::Duration::from_nanos(next - now - self.window));
        }
        for i in slots {
            tats[i] = tats[i].max(next);
        }
        Ok(())
    }
}

impl RateLimit {
    /// Builds from the settings.
    pub(crate) fn new(settings: RateLimitSettings) -> Result<Self, String> {
        if settings.rate == 0 {
            return Err("rate must be at least 1".into());
        }
        if settings.store_timeout.is_some() && settings.store.is_none() {
            return Err("store_timeout needs a `store`".into());
        }
        let shared = settings.store.as_ref().map(|url| {
            let window_us = u64::try_from(settings.per.0.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            Shared {
                store: Store::shared(&url.0, url.1.clone()),
                prefix: format!(
                    "tioga:rl:{}:{}:{}:",
                    settings.rate,
                    settings.per.0.as_millis(),
                    describe_key(&settings.key.0)
                )
                .into_bytes(),
                cost_us: (window_us / settings.rate).max(1),
                window_us,
                timeout: settings
                    .store_timeout
                    .map_or(redis_store::DECISION_TIMEOUT, |t| t.0),
            }
        });
        Ok(Self {
            limiter: Gcra::new(settings.rate, settings.per.0, Instant::now()),
            settings,
            shared,
        })
    }

    /// Admits one event for `key`, or refuses it (and does not count it): in the
    /// shared store when there is one and it answers in time, locally otherwise.
    async fn decide(&self, key: &[u8]) -> Decision {
        if let Some(shared) = &self.shared {
            let mut redis_key = Vec::with_capacity(shared.prefix.len() + key.len());
            redis_key.extend_from_slice(&shared.prefix);
            redis_key.extend_from_slice(key);
            let verdict = shared
                .store
                .admit(&redis_key, shared.cost_us, shared.window_us, shared.timeout)
                .await;
            if let Some(verdict) = verdict {
                return verdict.map_or_else(refuse, |()| Decision::Continue);
            }
        }
        match self.limiter.admit(key, Instant::now()) {
            Ok(()) => Decision::Continue,
            Err(wait) => refuse(wait),
        }
    }
}

/// The key setting as written (`client_ip`, `header:x-api-key`), for Redis key names.
fn describe_key(key: &crate::vocab::HashKey) -> String {
    use crate::vocab::HashKey;
    match key {
        HashKey::ClientIp => "client_ip".into(),
        HashKey::Uri => "uri".into(),
        HashKey::Header(name) => format!("header:{name}"),
        HashKey::Cookie(name) => format!("cookie:{name}"),
        HashKey::Query(name) => format!("query:{name}"),
    }
}

/// 429, with `Retry-After` in whole seconds (at least 1) until a request would pass.
fn refuse(wait: std::time::Duration) -> Decision {
    let retry = wait.as_secs_f64().ceil().max(1.0) as u64;
    Decision::Respond(
        Response::new(429)
            .header("retry-after", &retry.to_string())
            .header("content-type", "text/plain")
            .body("too many requests\n"),
    )
}

#[async_trait]
impl Filter for RateLimit {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::CONNECTION
    }

    /// A TCP connection has only its client address: other keys are HTTP-only.
    fn scope(&self) -> Scope {
        match self.settings.key.0 {
            crate::vocab::HashKey::ClientIp => Scope::HttpAndTcp,
            _ => Scope::Http,
        }
    }

    async fn request(&self, req: &mut RequestHeader, ctx: &mut Context<'_>) -> Result<Decision> {
        let key = request_key(&self.settings.key.0, req, ctx.client_ip());
        Ok(self.decide(&key).await)
    }

    async fn connection(&self, ctx: &mut Context<'_>) -> Result<Decision> {
        Ok(self.decide(&ip_key(ctx.client_ip())).await)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    #[test]
    fn a_burst_over_the_rate_gets_exactly_the_excess_refused() {
        let f = build("rate_limit", "{rate: 5, per: 10s}").unwrap();
        let statuses: Vec<u16> = (0..8)
            .map(|_| {
                status(&run_request(
                    f.as_ref(),
                    &mut request("GET", "/", &[]),
                    "10.0.0.1:1",
                ))
            })
            .collect();
        assert_eq!(statuses, [0, 0, 0, 0, 0, 429, 429, 429]);
        // Another client has its own budget.
        assert_eq!(
            status(&run_request(
                f.as_ref(),
                &mut request("GET", "/", &[]),
                "10.0.0.2:1"
            )),
            0
        );
    }

    /// GCRA on a clock the test moves: 4 per second.
    #[test]
    fn the_budget_refills_at_the_rate_and_fully_after_a_pause_of_per() {
        use super::Gcra;
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let gcra = Gcra::new(4, Duration::from_secs(1), t0);
        let burst = |ms: u64, n: usize| (0..n).filter(|_| gcra.admit(b"k", at(ms)).is_ok()).count();
        assert_eq!(burst(100, 6), 4, "a burst gets the rate, no more");
        // One more every 250 ms...
        assert_eq!(burst(250, 3), 0);
        assert_eq!(burst(360, 3), 1);
        // ...and the next one at 600 ms: Retry-After rounds 240 ms up to a second.
        assert_eq!(gcra.admit(b"k", at(360)), Err(Duration::from_millis(240)));
        // A pause of `per` after the last admitted request gives the whole budget back,
        // wherever the burst fell.
        assert_eq!(burst(1360, 6), 4);
        // Other keys are not touched.
        assert!(gcra.admit(b"other", at(1360)).is_ok());
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let retry = |ms| match super::refuse(std::time::Duration::from_millis(ms)) {
            crate::filter::Decision::Respond(r) => r
                .headers
                .iter()
                .find(|(name, _)| name == "retry-after")
                .map(|(_, v)| v.to_str().unwrap().to_string()),
            _ => None,
        };
        assert_eq!(retry(240).as_deref(), Some("1"));
        assert_eq!(retry(2100).as_deref(), Some("3"));
    }

    #[test]
    fn keys_by_header() {
        let f = build("rate_limit", "{rate: 1, per: 10s, key: 'header:x-user'}").unwrap();
        let go = |user: &str| {
            status(&run_request(
                f.as_ref(),
                &mut request("GET", "/", &[("x-user", user)]),
                "10.0.0.1:1",
            ))
        };
        assert_eq!(go("ann"), 0);
        assert_eq!(go("bob"), 0);
        assert_eq!(go("ann"), 429);
    }

    #[test]
    fn bad_settings() {
        assert!(build("rate_limit", "{rate: 0}").is_err());
        let err = build("rate_limit", "{rate: 1, per: soon}").err().unwrap();
        assert_eq!(err.path, "per");
        let err = build("rate_limit", "{rate: 1, key: body}").err().unwrap();
        assert_eq!(err.path, "key");
        let err = build("rate_limit", "{rate: 1, store: 'localhost:6379'}")
            .err()
            .unwrap();
        assert_eq!(err.path, "store");
        assert!(build("rate_limit", "{rate: 1, store: 'redis://10.0.0.9:6379/1'}").is_ok());
        let store = "{rate: 1, store: 'redis://10.0.0.9:6379/1', store_timeout: 5ms}";
        assert!(build("rate_limit", store).is_ok());
        assert!(build("rate_limit", "{rate: 1, store_timeout: 5ms}").is_err());
    }
}
