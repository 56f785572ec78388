//! What `/status` and the status page say about the running config and its reloads,
//! and the hook through which `POST /reload` asks the server for one.

use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

/// Asks the server to reload its config in place (the server implements it).
#[async_trait]
pub(crate) trait Reload: Send + Sync {
    /// Reloads, and says how it went.
    async fn reload(&self, by: &str) -> ReloadAnswer;
}

/// A reload's answer for `POST /reload`.
#[derive(Debug, Clone)]
pub(crate) struct ReloadAnswer {
    /// 200 applied; 400 the file could not be read; 422 invalid or its tests failed.
    pub(crate) status: u16,
    /// What changed, or every problem.
    pub(crate) body: Value,
}

/// The running config and the last reload.
#[derive(Debug)]
pub(crate) struct ConfigState(Mutex<Record>);

#[derive(Debug, Clone)]
struct Record {
    file: String,
    hash: String,
    loaded_at: SystemTime,
    reloads: u64,
    last: Option<(SystemTime, String, Value)>,
    /// The latest operators' changes through the admin API, newest last.
    changes: VecDeque<Value>,
}

/// How many operators' changes the status page lists.
const CHANGES_KEPT: usize = 50;

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl ConfigState {
    /// The config `file` with `hash`, loaded now.
    pub(crate) fn new(file: String, hash: String) -> Self {
        ConfigState(Mutex::new(Record {
            file,
            hash,
            loaded_at: SystemTime::now(),
            reloads: 0,
            last: None,
            changes: VecDeque::new(),
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A reload put the config with `hash` in place; `detail` says what changed.
    pub(crate) fn applied(&self, hash: String, result: &str, detail: Value) {
        self.with(|r| {
            let now = SystemTime::now();
            r.hash = hash;
            r.loaded_at = now;
            r.reloads += 1;
            r.last = Some((now, result.to_string(), detail));
        });
    }

    /// A reload was refused for the reasons in `detail`; the running config stays.
    pub(crate) fn refused(&self, detail: Value) {
        self.with(|r| r.last = Some((SystemTime::now(), "refused".to_string(), detail)));
    }

    /// An operator changed a backend through the admin API (`change` says who, what).
    pub(crate) fn operator_change(&self, mut change: Value) {
        change["at"] = json!(unix(SystemTime::now()));
        self.with(|r| {
            if r.changes.len() == CHANGES_KEPT {
                r.changes.pop_front();
            }
            r.changes.push_back(change);
        });
    }

    /// The `config` object of `/status`.
    pub(crate) fn render(&self) -> Value {
        let r = self.with(|r| r.clone());
        let last = r.last.map(
            |(at, result, detail)| json!({"at": unix(at), "result": result, "detail": detail}),
        );
        json!({
            "file": r.file,
            "hash": r.hash,
            "loaded_at": unix(r.loaded_at),
            "reloads": r.reloads,
            "last_reload": last,
            "operator_changes": r.changes,
        })
    }
}
