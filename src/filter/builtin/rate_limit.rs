//! `rate_limit: {rate: N, per: 1s, key: client_ip}` — more than N requests (or TCP
//! connections) per `per` from one key → 429 (or the connection is closed).
//!
//! Counting uses pingora-limits' `Rate`, a fixed-size count-min sketch per window, so
//! memory does not grow with the number of clients. The rate is estimated over a
//! sliding window (the previous window's count weighted by how much of it still
//! overlaps, plus the current count), so a burst that straddles a window boundary is
//! limited as strictly as one inside a window. Refused requests are not counted.

use crate::filter::settings::{Duration, Key};
use crate::filter::{Context, Decision, Filter, Hooks, Response, Scope};
use crate::routing::key::{ip_key, request_key};
use async_trait::async_trait;
use pingora_error::Result;
use pingora_http::RequestHeader;
use pingora_limits::rate::Rate;
use serde::Deserialize;

/// Settings of `rate_limit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests allowed per `per`.
    rate: u64,
    /// The window, default 1s.
    #[serde(default = "one_second")]
    per: Duration,
    /// What is counted together, default `client_ip`.
    #[serde(default)]
    key: Key,
}

fn one_second() -> Duration {
    Duration(std::time::Duration::from_secs(1))
}

/// The `rate_limit` filter.
pub struct RateLimit {
    settings: RateLimitSettings,
    rate: Rate,
}

impl RateLimit {
    /// Builds from the settings.
    pub fn new(settings: RateLimitSettings) -> Result<Self, String> {
        if settings.rate == 0 {
            return Err("rate must be at least 1".into());
        }
        Ok(Self {
            rate: Rate::new(settings.per.0),
            settings,
        })
    }

    /// Counts one event for `key`; false (and not counted) when over the rate.
    fn admit(&self, key: &[u8]) -> bool {
        self.rate.observe(&key, 1);
        let estimate = self.rate.rate_with(&key, |c| {
            c.prev_samples as f64 * (1.0 - c.current_interval_fraction) + c.curr_samples as f64
        });
        if estimate > self.settings.rate as f64 + 1e-9 {
            self.rate.observe(&key, -1);
            return false;
        }
        true
    }

    fn refuse(&self) -> Decision {
        let retry = self.settings.per.0.as_secs().max(1).to_string();
        Decision::Respond(
            Response::new(429)
                .header("retry-after", &retry)
                .header("content-type", "text/plain")
                .body("too many requests\n"),
        )
    }
}

#[async_trait]
impl Filter for RateLimit {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::CONNECTION
    }

    /// A TCP connection has only its client address: other keys are HTTP-only.
    fn scope(&self) -> Scope {
        match self.settings.key.0 {
            crate::config::HashKey::ClientIp => Scope::HttpAndTcp,
            _ => Scope::Http,
        }
    }

    async fn request(&self, req: &mut RequestHeader, ctx: &mut Context<'_>) -> Result<Decision> {
        let key = request_key(&self.settings.key.0, req, ctx.client_ip());
        Ok(if self.admit(&key) {
            Decision::Continue
        } else {
            self.refuse()
        })
    }

    async fn connection(&self, ctx: &mut Context<'_>) -> Result<Decision> {
        Ok(if self.admit(&ip_key(ctx.client_ip())) {
            Decision::Continue
        } else {
            self.refuse()
        })
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
    }
}
