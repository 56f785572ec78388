//! `reload_guard` (Tioga's extension): after a reload in place, watch the answers and
//! the backends' health for `window`, and go back to the previous config by itself
//! when the 5xx share or the healthy backends cross a threshold.

use super::problems::{join, Problems};
use super::resilience::percent;
use super::values::duration;
use crate::vocab::Text;
use serde::Deserialize;
use serde_yaml::Value;
use std::time::Duration;

/// The validated `reload_guard`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReloadGuard {
    /// How long after a reload the guard watches.
    pub(crate) window: Duration,
    /// The largest share of 5xx answers (0 to 1) before a rollback.
    pub(crate) max_5xx: f64,
    /// Answers needed before the 5xx share counts.
    pub(crate) min_requests: u64,
    /// The smallest share (0 to 1) of the backends healthy before the reload that must
    /// stay healthy.
    pub(crate) min_healthy: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    window: Option<String>,
    max_5xx: Option<Text>,
    min_requests: Option<u64>,
    min_healthy: Option<Text>,
}

/// Validates `reload_guard`.
pub(super) fn parse(value: &Value, p: &mut Problems) -> Option<ReloadGuard> {
    let path = "reload_guard";
    let s: Section = match value {
        Value::Null => Section {
            window: None,
            max_5xx: None,
            min_requests: None,
            min_healthy: None,
        },
        v => p.parse(path, v)?,
    };
    let share = |t: Option<&Text>, key: &str, default: u32, p: &mut Problems| {
        let n = t.map_or(Some(default), |t| percent(&t.0, &join(path, key), p));
        f64::from(n.unwrap_or(default)) / 100.0
    };
    let min_requests = s.min_requests.unwrap_or(20);
    if min_requests == 0 {
        p.add(join(path, "min_requests"), "must be 1 or more");
    }
    Some(ReloadGuard {
        window: duration(s.window.as_deref(), &join(path, "window"), "30s", p),
        max_5xx: share(s.max_5xx.as_ref(), "max_5xx", 10, p),
        min_requests: min_requests.max(1),
        min_healthy: share(s.min_healthy.as_ref(), "min_healthy", 50, p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(yaml: &str) -> (Option<ReloadGuard>, Vec<String>) {
        let mut p = Problems::default();
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        let g = parse(&v, &mut p);
        let messages = p
            .list
            .iter()
            .map(|m| format!("{}: {}", m.path, m.message))
            .collect();
        (g, messages)
    }

    #[test]
    fn defaults_and_values() {
        let (g, problems) = guard("~");
        assert!(problems.is_empty(), "{problems:?}");
        let g = g.unwrap();
        assert_eq!(g.window, Duration::from_secs(30));
        assert_eq!((g.max_5xx, g.min_requests, g.min_healthy), (0.1, 20, 0.5));
        let (g, _) = guard("{window: 5s, max_5xx: 25%, min_requests: 3, min_healthy: 100}");
        let g = g.unwrap();
        assert_eq!(
            (g.window, g.max_5xx, g.min_requests, g.min_healthy),
            (Duration::from_secs(5), 0.25, 3, 1.0)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let (_, problems) = guard("{max_5xx: 120%, min_requests: 0, colour: red}");
        assert!(!problems.is_empty());
        let (_, problems) = guard("{max_5xx: 120%, min_requests: 0}");
        assert!(
            problems.iter().any(|m| m.contains("reload_guard.max_5xx")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|m| m.contains("reload_guard.min_requests")),
            "{problems:?}"
        );
    }
}
