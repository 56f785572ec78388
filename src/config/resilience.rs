//! The pool keys of the contract's "Resilient upstreams": their serde types and their
//! validation into [`Resilience`]. `pools.NAME` holds them beside the first-round keys.

use super::problems::{join, Problems};
use super::values::duration;
use crate::upstream::policy::{
    BudgetSpec, Condition, OutlierSpec, QueueSpec, Resilience, RetryOn, StickySpec,
};
use crate::vocab::Text;
use serde::Deserialize;

/// The resilience keys of `pools.NAME`, as written.
#[derive(Debug, Default)]
pub(crate) struct ResilienceKeys<'a> {
    /// `outlier:`.
    pub(crate) outlier: Option<&'a OutlierSection>,
    /// `panic_threshold: 50%`.
    pub(crate) panic_threshold: Option<&'a Text>,
    /// `slow_start: 30s`.
    pub(crate) slow_start: Option<&'a str>,
    /// `retry_on: [connect_failure, 503]`.
    pub(crate) retry_on: Option<&'a [Text]>,
    /// `retry_budget:`.
    pub(crate) retry_budget: Option<&'a BudgetSection>,
    /// `max_conns: 100`.
    pub(crate) max_conns: Option<usize>,
    /// `queue: {size: 1000, timeout: 2s}`.
    pub(crate) queue: Option<&'a QueueSection>,
    /// `sticky: {cookie: srv, max_age: 1h}`.
    pub(crate) sticky: Option<&'a StickySection>,
}

/// `pools.NAME.sticky`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StickySection {
    /// The cookie's name.
    pub(crate) cookie: String,
    /// Its lifetime; absent: until the browser closes.
    pub(crate) max_age: Option<String>,
}

/// `pools.NAME.queue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueSection {
    /// The most waiting at once; default 1000.
    pub(crate) size: Option<usize>,
    /// The longest wait; default 2s.
    pub(crate) timeout: Option<String>,
}

/// `pools.NAME.outlier`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutlierSection {
    /// Consecutive failures that eject, default 5.
    pub(crate) consecutive_failures: Option<u32>,
    /// First ejection's length, default 30s.
    pub(crate) base_ejection: Option<String>,
    /// Most of the pool ejected at once, default 50%.
    pub(crate) max_ejected: Option<Text>,
}

/// `pools.NAME.retry_budget`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetSection {
    /// Retries per request, as a percentage; default 20%.
    pub(crate) ratio: Option<Text>,
    /// Retries per second always allowed; default 10.
    pub(crate) min_per_second: Option<u32>,
}

/// The most `consecutive_failures` a pool takes.
const MAX_FAILURES: u32 = 10_000;

/// Validates the resilience keys of pool `pool` (its key path).
pub(super) fn resilience(keys: ResilienceKeys<'_>, pool: &str, p: &mut Problems) -> Resilience {
    Resilience {
        outlier: keys.outlier.map(|o| outlier(o, &join(pool, "outlier"), p)),
        panic_threshold: keys
            .panic_threshold
            .and_then(|t| percent(&t.0, &join(pool, "panic_threshold"), p)),
        slow_start: keys
            .slow_start
            .map(|t| duration(Some(t), &join(pool, "slow_start"), "30s", p)),
        retry_on: keys
            .retry_on
            .map_or_else(RetryOn::default, |list| retry_on(list, pool, p)),
        retry_budget: keys
            .retry_budget
            .map(|b| budget(b, &join(pool, "retry_budget"), p)),
        max_conns: max_conns(keys.max_conns, keys.queue, pool, p),
        sticky: keys.sticky.map(|s| sticky(s, &join(pool, "sticky"), p)),
    }
}

fn sticky(s: &StickySection, path: &str, p: &mut Problems) -> StickySpec {
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
    if s.cookie.is_empty() || !s.cookie.chars().all(token) {
        p.add(
            join(path, "cookie"),
            format!(
                "`{}` is not a cookie name: use letters, digits and `-_.!#$%&'*+^`|~`",
                s.cookie
            ),
        );
    }
    StickySpec {
        cookie: s.cookie.clone(),
        max_age: s
            .max_age
            .as_deref()
            .map(|t| duration(Some(t), &join(path, "max_age"), "1h", p)),
    }
}

/// The most `max_conns` and `queue.size` a pool takes.
const MAX_CONNS: usize = 1_000_000;

fn max_conns(
    max: Option<usize>,
    queue: Option<&QueueSection>,
    pool: &str,
    p: &mut Problems,
) -> Option<(usize, QueueSpec)> {
    let Some(max) = max else {
        if queue.is_some() {
            p.add(join(pool, "queue"), "only used with `max_conns`");
        }
        return None;
    };
    if !(1..=MAX_CONNS).contains(&max) {
        p.add(
            join(pool, "max_conns"),
            format!("{max} is out of range: 1 to {MAX_CONNS}"),
        );
    }
    let path = join(pool, "queue");
    let size = queue.and_then(|q| q.size).unwrap_or(1000);
    if size > MAX_CONNS {
        p.add(
            join(&path, "size"),
            format!("{size} is out of range: 0 to {MAX_CONNS}"),
        );
    }
    let timeout = queue.and_then(|q| q.timeout.as_deref());
    Some((
        max.clamp(1, MAX_CONNS),
        QueueSpec {
            size: size.min(MAX_CONNS),
            timeout: duration(timeout, &join(&path, "timeout"), "2s", p),
        },
    ))
}

fn outlier(o: &OutlierSection, path: &str, p: &mut Problems) -> OutlierSpec {
    let n = o.consecutive_failures.unwrap_or(5);
    if !(1..=MAX_FAILURES).contains(&n) {
        p.add(
            join(path, "consecutive_failures"),
            format!("{n} is out of range: 1 to {MAX_FAILURES}"),
        );
    }
    let max = o.max_ejected.as_ref().map_or("50%", |t| t.0.as_str());
    OutlierSpec {
        consecutive_failures: n.clamp(1, MAX_FAILURES),
        base_ejection: duration(
            o.base_ejection.as_deref(),
            &join(path, "base_ejection"),
            "30s",
            p,
        ),
        max_ejected_percent: percent(max, &join(path, "max_ejected"), p).unwrap_or(50),
    }
}

fn retry_on(list: &[Text], pool: &str, p: &mut Problems) -> RetryOn {
    let mut set = RetryOn::NONE;
    for (i, c) in list.iter().enumerate() {
        match c.0.trim().parse::<Condition>() {
            Ok(c) => set = set.with(c),
            Err(e) => p.add(format!("{}[{i}]", join(pool, "retry_on")), e),
        }
    }
    set
}

fn budget(b: &BudgetSection, path: &str, p: &mut Problems) -> BudgetSpec {
    let ratio = b.ratio.as_ref().map_or("20%", |t| t.0.as_str());
    BudgetSpec {
        ratio: f64::from(percent(ratio, &join(path, "ratio"), p).unwrap_or(20)) / 100.0,
        min_per_second: b.min_per_second.unwrap_or(10),
    }
}

/// Reads `50%` (or a bare `50`) as a whole percentage from 0 to 100.
pub(super) fn percent(text: &str, path: &str, p: &mut Problems) -> Option<u32> {
    let t = text.trim();
    let digits = t.strip_suffix('%').unwrap_or(t).trim();
    match digits.parse::<u32>() {
        Ok(n) if n <= 100 => Some(n),
        _ => {
            p.add(
                path,
                format!("`{text}` is not a percentage: write a whole number from 0% to 100%"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_whole_numbers_up_to_100() {
        let mut p = Problems::default();
        assert_eq!(percent("50%", "x", &mut p), Some(50));
        assert_eq!(percent(" 7 ", "x", &mut p), Some(7));
        assert!(p.list.is_empty());
        assert_eq!(percent("150%", "x", &mut p), None);
        assert_eq!(percent("half", "x", &mut p), None);
        assert_eq!(p.list.len(), 2);
    }

    #[test]
    fn retry_on_names_the_bad_entry() {
        let mut p = Problems::default();
        let list = [Text("503".into()), Text("timeout".into())];
        let set = retry_on(&list, "pools.a", &mut p);
        assert!(set.contains(Condition::Status503));
        assert!(
            !set.contains(Condition::ConnectFailure),
            "a list replaces the default"
        );
        assert_eq!(p.list.len(), 1);
        assert_eq!(p.list[0].path, "pools.a.retry_on[1]");
    }
}
