//! `reload_guard`: for `window` after a reload in place, compare the answers and the
//! backends' health with what they were, and roll back to the previous config when
//! the reload hurts — more than `max_5xx` of the answers since the reload are 5xx (once
//! `min_requests` have been answered), or fewer than `min_healthy` of the backends
//! healthy before the reload still are. A later reload ends the watch; a rollback is
//! logged with its reason, counted (`tioga_config_reloads_total{result="rolled_back"}`)
//! and shown in `/status`. The file on disk is left as it is.

use crate::config::guard::ReloadGuard;
use crate::observability::status::{ListenerStatus, Status};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the guard looks.
const PERIOD: Duration = Duration::from_millis(100);

/// Answers, 5xx answers and healthy backends, summed over the whole process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sample {
    answers: u64,
    errors: u64,
    healthy: usize,
}

impl Sample {
    /// The figures of the config `status` describes.
    pub(super) fn of(status: &Status) -> Sample {
        let mut s = Sample::default();
        for l in &status.listeners {
            if let ListenerStatus::Http {
                routes, no_route, ..
            } = l
            {
                for (answers, errors) in routes
                    .iter()
                    .map(|r| r.metrics.totals())
                    .chain([no_route.totals()])
                {
                    s.answers += answers;
                    s.errors += errors;
                }
            }
        }
        s.healthy = status
            .pools
            .iter()
            .map(|p| p.table().iter().filter(|b| b.eligible()).count())
            .sum();
        s
    }
}

/// Why the reload watched from `start` (answers counted from `after`, health compared
/// with `before`) should be rolled back, if it should.
fn verdict(guard: &ReloadGuard, before: Sample, after: Sample, now: Sample) -> Option<String> {
    let answers = now.answers.saturating_sub(after.answers);
    let errors = now.errors.saturating_sub(after.errors);
    if answers >= guard.min_requests && errors as f64 > guard.max_5xx * answers as f64 {
        return Some(format!(
            "{errors} of {answers} answers since the reload were 5xx, above max_5xx {:.0}%",
            guard.max_5xx * 100.0
        ));
    }
    if before.healthy > 0 && (now.healthy as f64) < guard.min_healthy * before.healthy as f64 {
        return Some(format!(
            "{} backend(s) healthy, below min_healthy {:.0}% of the {} healthy before the reload",
            now.healthy,
            guard.min_healthy * 100.0,
            before.healthy
        ));
    }
    None
}

/// What the guard watches and acts on: the running config (`live.rs`).
pub(super) trait Guarded: Send + Sync + 'static {
    /// Which config is in place: it changes with each reload and rollback.
    fn generation(&self) -> u64;
    /// The running config's answers and healthy backends.
    fn sample(&self) -> Option<Sample>;
    /// Goes back to the config before reload `generation`, unless another config was
    /// put in place since.
    fn roll_back(&self, generation: u64, why: &str);
}

/// Watches reload `generation` on a thread of its own.
pub(super) fn watch(live: Arc<dyn Guarded>, generation: u64, guard: ReloadGuard, before: Sample) {
    let spawned = std::thread::Builder::new()
        .name("tioga-guard".into())
        .spawn(move || {
            let start = Instant::now();
            let Some(after) = live.sample() else { return };
            while start.elapsed() < guard.window {
                std::thread::sleep(PERIOD);
                if live.generation() != generation {
                    return; // a newer reload: its own guard watches
                }
                let Some(now) = live.sample() else { return };
                if let Some(why) = verdict(&guard, before, after, now) {
                    live.roll_back(generation, &why);
                    return;
                }
            }
            log::info!(
                "reload_guard: the reload passed {:?} of watching",
                guard.window
            );
        });
    if let Err(e) = spawned {
        log::error!("reload_guard: cannot watch the reload: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> ReloadGuard {
        ReloadGuard {
            window: Duration::from_secs(30),
            max_5xx: 0.1,
            min_requests: 20,
            min_healthy: 0.5,
        }
    }

    fn sample(answers: u64, errors: u64, healthy: usize) -> Sample {
        Sample {
            answers,
            errors,
            healthy,
        }
    }

    #[test]
    fn errors_count_from_the_reload_once_there_are_enough() {
        let (before, after) = (sample(1000, 900, 4), sample(1000, 900, 4));
        assert_eq!(verdict(&guard(), before, after, sample(1019, 919, 4)), None);
        assert!(verdict(&guard(), before, after, sample(1020, 903, 4)).is_some());
        assert_eq!(verdict(&guard(), before, after, sample(1020, 902, 4)), None);
    }

    #[test]
    fn health_is_compared_with_before_the_reload() {
        let (before, after) = (sample(0, 0, 4), sample(0, 0, 4));
        assert_eq!(verdict(&guard(), before, after, sample(0, 0, 2)), None);
        let why = verdict(&guard(), before, after, sample(0, 0, 1)).unwrap();
        assert!(why.contains("below min_healthy 50%"), "{why}");
        assert_eq!(
            verdict(&guard(), sample(0, 0, 0), after, sample(0, 0, 0)),
            None
        );
    }
}
