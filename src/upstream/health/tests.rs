//! The checks' effect on the pool's backend state, driven by a scripted probe through
//! Pingora's own `rise`/`fall` counting, on a paused clock (no probe waits for real).

use super::*;
use crate::upstream::state::CheckResult;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::Backends;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

#[test]
fn status_rules() {
    assert!(check_status(200, None).is_ok());
    assert!(check_status(204, None).is_ok());
    assert!(check_status(301, None).is_err());
    assert!(check_status(503, None).is_err());
    assert!(check_status(204, Some(204)).is_ok());
    assert!(check_status(200, Some(204)).is_err());
}

/// What a scripted probe does next.
#[derive(Clone, Copy)]
enum Step {
    Pass,
    Fail,
    /// Never answers: only the pool's `timeout` ends it.
    Hang,
}

/// A probe that plays `steps` in order, with Pingora's `rise`/`fall` thresholds.
struct Scripted {
    steps: Mutex<VecDeque<Step>>,
    rise: usize,
    fall: usize,
}

#[async_trait]
impl HealthCheck for Scripted {
    async fn check(&self, _target: &Backend) -> Result<()> {
        let step = self
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .expect("a scripted step");
        match step {
            Step::Pass => Ok(()),
            Step::Fail => Error::e_explain(ErrorType::ConnectRefused, "scripted failure"),
            Step::Hang => std::future::pending().await,
        }
    }

    fn health_threshold(&self, success: bool) -> usize {
        if success {
            self.rise
        } else {
            self.fall
        }
    }
}

/// One backend, its state table, and Pingora's backend set running `steps`.
fn checked(steps: &[Step], rise: usize, fall: usize) -> (Backends, Arc<BackendTable>) {
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let table = Arc::new(BackendTable::new([(addr, 1)]));
    let set: BTreeSet<Backend> = [Backend::new(&addr.to_string()).unwrap()].into();
    let mut backends = Backends::new(Static::new(set));
    backends.set_health_check(Box::new(Recorded {
        pool: "p".into(),
        inner: Box::new(Scripted {
            steps: Mutex::new(steps.iter().copied().collect()),
            rise,
            fall,
        }),
        timeout: Duration::from_secs(2),
        table: {
            let table = table.clone();
            Arc::new(move || table.clone())
        },
    }));
    (backends, table)
}

/// Runs one round of checks, as the pool's background service does each interval.
async fn round(backends: &Backends) {
    backends.update(|_| {}).await.unwrap();
    backends.run_health_check(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_backend_goes_down_after_fall_failures_and_back_after_rise_passes() {
    use Step::*;
    let (backends, table) = checked(&[Fail, Fail, Fail, Pass, Pass], 2, 3);
    let b = table.get(0);
    assert!(b.eligible(), "unchecked backends are eligible");
    assert_eq!(b.last_check(), CheckResult::None);
    round(&backends).await;
    round(&backends).await;
    assert!(b.eligible(), "two failures of fall 3 leave it in");
    assert_eq!(b.last_check(), CheckResult::Failed);
    round(&backends).await;
    assert!(!b.eligible(), "the third failure takes it out");
    round(&backends).await;
    assert!(!b.eligible(), "one pass of rise 2 keeps it out");
    assert_eq!(b.last_check(), CheckResult::Passed);
    round(&backends).await;
    assert!(b.eligible(), "the second pass brings it back");
    assert_eq!(b.transitions.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_answers_fails_at_the_pools_timeout() {
    let (backends, table) = checked(&[Step::Hang], 1, 1);
    let started = Instant::now();
    round(&backends).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "exactly the timeout"
    );
    let b = table.get(0);
    assert!(!b.eligible());
    assert_eq!(b.last_check(), CheckResult::Failed);
    assert_eq!(
        b.last_check_micros
            .load(std::sync::atomic::Ordering::Relaxed),
        2_000_000
    );
    assert!(b.last_error.lock().unwrap().contains("no answer within 2s"));
}
