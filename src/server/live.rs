//! Reload in place (SIGHUP, `POST /reload`): read and check the whole file, run its
//! `tests`, then put the new config in place without closing a connection.
//!
//! Each running listener keeps its sockets and accept stack and gets a new app
//! (`proxy::live`): requests and connections already started finish on the app they
//! started with. A pool whose settings are the same in both files (compared as YAML)
//! is the same pool afterwards — its backends' health, counters, latency averages,
//! in-flight counts and queue carry on, its checks keep their rhythm, and Pingora's
//! idle upstream connections (kept by address) stay; a changed, added or removed pool
//! is built afresh, or stops its checks. Certificates are read again for every TLS
//! listener. Operators' runtime changes (drain, maint, weight) end with a reload.
//!
//! What a running process cannot change — a listener added or removed, its
//! addresses, its accept path (TLS on or off, `client_ca`, timeouts, limits), the
//! process settings — is named in the log and in the answer as "needs an upgrade",
//! and everything else is applied. A config that does not load or whose tests fail
//! changes nothing. Reloads run one at a time, on a thread of their own (loading runs
//! the config's tests on a runtime of its own).
//!
//! The pools' background work (health checks, DNS discovery) runs on a runtime owned
//! here rather than as Pingora services, so that a reload can start and stop it.

use super::guard::{self, Guarded, Sample};
use super::services::{self, Handle, Shared};
use crate::config::{diff, AccessLogSpec, Config, ConfigError, PoolSpec};
use crate::filter::Registry;
use crate::observability::access_log::AccessLog;
use crate::observability::admin::AdminView;
use crate::observability::explain::Explain;
use crate::observability::metrics::Metrics;
use crate::observability::reload::{ConfigState, Reload, ReloadAnswer};
use crate::observability::status::ListenerStatus;
use crate::proxy::tls::Certificates;
use crate::upstream::Pool;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ExecutionPhase;
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};
use tokio::sync::{broadcast, watch};

/// The running config and what a reload changes.
pub(crate) struct Live {
    file: PathBuf,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    config: Arc<ConfigState>,
    started_at: SystemTime,
    /// Runs the pools' health checks and DNS discovery.
    background: tokio::runtime::Runtime,
    view: OnceLock<Arc<ArcSwap<AdminView>>>,
    /// Counts the configs put in place (reloads and rollbacks).
    generation: AtomicU64,
    state: Mutex<State>,
}

struct State {
    /// The running config's text.
    text: String,
    /// The text before the last reload, while `reload_guard` may go back to it.
    previous: Option<String>,
    pools: BTreeMap<String, Running>,
    listeners: BTreeMap<String, Handle>,
    access_log: Option<(AccessLogSpec, Arc<AccessLog>)>,
    access_log_spec: Option<AccessLogSpec>,
    phases: broadcast::Receiver<ExecutionPhase>,
}

/// A pool and its background work, which stops when this is dropped.
struct Running {
    pool: Arc<Pool>,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The SHA-256 of a config's text, in hex.
fn hash(text: &str) -> String {
    use std::fmt::Write as _;
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Live {
    /// The live state of `config`, read from `text`; its pools are added with
    /// [`Live::add_pool`] and its listeners with [`Live::start`].
    pub(super) fn new(
        config: &Config,
        text: String,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Result<Arc<Live>, String> {
        let background = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tioga-pools")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the pools' runtime: {e}"))?;
        let digest = hash(&text);
        metrics.set_config_hash(&digest);
        Ok(Arc::new(Live {
            file: config.file.clone(),
            registry,
            metrics,
            config: Arc::new(ConfigState::new(config.file.display().to_string(), digest)),
            started_at: SystemTime::now(),
            background,
            view: OnceLock::new(),
            generation: AtomicU64::new(0),
            state: Mutex::new(State {
                text,
                previous: None,
                pools: BTreeMap::new(),
                listeners: BTreeMap::new(),
                access_log: None,
                access_log_spec: config.access_log.clone(),
                phases,
            }),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds the pool `spec` describes and starts its background work.
    pub(super) fn add_pool(&self, spec: PoolSpec) -> Arc<Pool> {
        let name = spec.name.clone();
        let running = self.run_pool(spec);
        let pool = running.pool.clone();
        self.state().pools.insert(name, running);
        pool
    }

    fn run_pool(&self, spec: PoolSpec) -> Running {
        let (pool, tasks) = Pool::build(spec);
        Running {
            pool,
            stop: self.spawn(tasks),
        }
    }

    /// Runs `tasks` on the pools' runtime until the returned sender says stop.
    fn spawn(&self, tasks: Vec<Box<dyn ServiceWithDependents>>) -> watch::Sender<bool> {
        let (stop, stopped) = watch::channel(false);
        for mut task in tasks {
            let stopped = stopped.clone();
            self.background.spawn(async move {
                let (ready, _) = watch::channel(false);
                task.start_service(None, stopped, 1, ServiceReadyNotifier::new(ready))
                    .await;
            });
        }
        stop
    }

    /// Records the running listeners, and returns what the admin endpoint shows.
    pub(super) fn start(
        &self,
        handles: BTreeMap<String, Handle>,
        shared: &Shared,
        statuses: Vec<ListenerStatus>,
        explain: Arc<dyn Explain>,
        token: Option<String>,
    ) -> Arc<ArcSwap<AdminView>> {
        let mut st = self.state();
        st.listeners = handles;
        st.access_log = st.access_log_spec.clone().zip(shared.access_log.clone());
        let status = services::status(
            &self.file,
            self.started_at,
            self.config.clone(),
            statuses,
            shared,
        );
        let view = Arc::new(ArcSwap::from_pointee(AdminView {
            status,
            explain,
            token,
        }));
        let _ = self.view.set(view.clone());
        view
    }

    /// Writes out the access log's last lines (at exit).
    pub(super) fn flush_access_log(&self) {
        if let Some((_, log)) = &self.state().access_log {
            log.flush();
        }
    }

    /// What `POST /reload` calls.
    pub(super) fn reloader(self: &Arc<Self>) -> Reloader {
        Reloader(self.clone())
    }

    /// Reloads on a thread of its own and waits for the outcome.
    pub(super) async fn reload_async(self: &Arc<Self>, by: &str) -> ReloadAnswer {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (me, asker) = (self.clone(), by.to_string());
        let spawned = std::thread::Builder::new()
            .name("tioga-reload".into())
            .spawn(move || {
                let _ = tx.send(me.reload(&asker));
            });
        if let Err(e) = spawned {
            return self.refused(by, vec![format!("cannot start a thread: {e}")], 500);
        }
        rx.await.unwrap_or_else(|_| ReloadAnswer {
            status: 500,
            body: json!({"result": "error", "problems": ["the reload thread ended early"]}),
        })
    }

    /// Reads the file again and, when it loads and its tests pass, puts it in place.
    fn reload(self: &Arc<Self>, by: &str) -> ReloadAnswer {
        let started = Instant::now();
        let mut st = self.state();
        log::info!("reload ({by}): reading {}", self.file.display());
        let loaded = Config::read(&self.file, &self.registry).and_then(|(text, config)| {
            super::config_tests::run(&config)?;
            Ok((text, config))
        });
        let (text, config) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                let status = match e {
                    ConfigError::Read { .. } => 400,
                    _ => 422,
                };
                let problems = e.to_string().lines().map(str::to_string).collect();
                return self.refused(by, problems, status);
            }
        };
        let changes = diff::diff_texts(&st.text, &text).unwrap_or_default();
        let mut upgrade: Vec<String> = changes
            .iter()
            .filter(|c| !c.in_place)
            .map(|c| format!("{}: {}", c.group, c.what))
            .collect();
        let digest = hash(&text);
        let guarded = config.reload_guard.clone();
        let before = self.sample().unwrap_or_default();
        let previous = st.text.clone();
        if let Err(problem) = self.apply(&mut st, text, config, &mut upgrade) {
            return self.refused(by, vec![problem], 422);
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        st.previous = guarded.is_some().then_some(previous);
        drop(st);
        if let Some(g) = guarded {
            guard::watch(self.clone(), generation, g, before);
        }
        let took = started.elapsed();
        for u in &upgrade {
            log::warn!("reload ({by}): needs an upgrade (-u + SIGQUIT), not applied: {u}");
        }
        log::info!(
            "reload ({by}): config {} in place in {:.1} ms, {} change(s)",
            &digest[..12],
            took.as_secs_f64() * 1000.0,
            changes.len()
        );
        self.metrics.config_reloaded("ok");
        self.metrics.set_config_hash(&digest);
        self.metrics.set_config_loaded(services::unix_now());
        let changes: Vec<Value> = changes
            .iter()
            .map(|c| {
                let how = if c.in_place {
                    "in place"
                } else {
                    "needs upgrade"
                };
                json!({"group": c.group, "change": c.what, "applied": how})
            })
            .collect();
        let body = json!({
            "result": "ok",
            "by": by,
            "hash": digest,
            "took_ms": took.as_secs_f64() * 1000.0,
            "changes": changes,
            "needs_upgrade": upgrade,
        });
        self.config.applied(digest, "ok", body.clone());
        ReloadAnswer { status: 200, body }
    }

    /// A refused reload: logged, counted, shown; the running config stays.
    fn refused(&self, by: &str, problems: Vec<String>, status: u16) -> ReloadAnswer {
        for p in &problems {
            log::error!("reload ({by}) refused: {p}");
        }
        log::error!("reload ({by}) refused: the running config keeps serving");
        self.metrics.config_reloaded("refused");
        let body = json!({"result": "refused", "by": by, "problems": problems});
        self.config.refused(body.clone());
        ReloadAnswer { status, body }
    }

    /// Builds everything the new config needs, then puts it all in place; `Err` (with
    /// nothing changed) when a part cannot be built. Adds to `upgrade` what stays as it
    /// was until an upgrade.
    fn apply(
        &self,
        st: &mut State,
        text: String,
        config: Config,
        upgrade: &mut Vec<String>,
    ) -> Result<(), String> {
        let old_root: serde_yaml::Value = serde_yaml::from_str(&st.text).unwrap_or_default();
        let new_root: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_default();
        let pool_yaml = |root: &serde_yaml::Value, name: &str| {
            root.get("pools").and_then(|p| p.get(name)).cloned()
        };
        // Pools: the same one where its settings did not change.
        let mut kept = Vec::new();
        let mut fresh = Vec::new();
        let mut pools = BTreeMap::new();
        for spec in config.pools {
            let name = spec.name.clone();
            match st.pools.get(&name) {
                Some(r) if pool_yaml(&old_root, &name) == pool_yaml(&new_root, &name) => {
                    pools.insert(name.clone(), r.pool.clone());
                    kept.push(name);
                }
                _ => {
                    let (pool, tasks) = Pool::build(spec);
                    pools.insert(name.clone(), pool.clone());
                    fresh.push((name, pool, tasks));
                }
            }
        }
        let access_log = match (&config.access_log, &st.access_log) {
            (None, _) => None,
            (Some(spec), Some((old, log))) if spec == old => Some((spec.clone(), log.clone())),
            (Some(spec), _) => Some((
                spec.clone(),
                services::open_access_log(spec, &self.metrics).map_err(|e| e.to_string())?,
            )),
        };
        let shared = Shared {
            pools,
            grace_period: config.server.grace_period,
            metrics: self.metrics.clone(),
            access_log: access_log.as_ref().map(|(_, log)| log.clone()),
            phases: st.phases.resubscribe(),
        };
        let explainer = Arc::new(super::explain::Explainer::new(
            &config.listeners,
            &shared.pools,
        ));
        // Listeners: a new app for each one running; certificates read again.
        let mut apps = Vec::new();
        let mut certs = Vec::new();
        let mut statuses = Vec::new();
        let mut named = Vec::new();
        for l in config.listeners {
            let name = l.name.clone();
            named.push(name.clone());
            let Some(handle) = st.listeners.get(&name) else {
                upgrade.push(format!("listener {name} is new: an upgrade binds it"));
                continue;
            };
            let (app, status, accept) = services::app(l, &shared);
            if !handle.accepts(&app) {
                upgrade.push(format!(
                    "listener {name} changes protocol: it keeps the old one"
                ));
                continue;
            }
            if let (Handle::Http { certs: Some(c), .. }, Some(tls)) = (handle, accept.tls()) {
                let set = Certificates::read(tls).map_err(|e| format!("listener {name}: {e}"))?;
                certs.push((c.clone(), set));
            }
            apps.push((name, app));
            statuses.push(status);
        }
        for name in st.listeners.keys().filter(|n| !named.contains(n)) {
            upgrade.push(format!(
                "listener {name} is removed: it serves its last config until an upgrade"
            ));
        }
        // Everything is built: put it in place.
        for (name, app) in apps {
            st.listeners[&name].swap(app);
        }
        for (c, set) in certs {
            c.replace(set);
        }
        let mut running = BTreeMap::new();
        for name in kept {
            if let Some(r) = st.pools.remove(&name) {
                r.pool.reset_operator();
                running.insert(name, r);
            }
        }
        for (name, pool, tasks) in fresh {
            let stop = self.spawn(tasks);
            running.insert(name, Running { pool, stop });
        }
        // Pools left are removed or replaced: dropping them stops their checks.
        st.pools = running;
        st.text = text;
        st.access_log = access_log;
        let status = services::status(
            &self.file,
            self.started_at,
            self.config.clone(),
            statuses,
            &shared,
        );
        if let Some(view) = self.view.get() {
            view.store(Arc::new(AdminView {
                status,
                explain: explainer,
                token: config.admin_token,
            }));
        }
        Ok(())
    }
}

/// `POST /reload`'s way in.
pub(crate) struct Reloader(Arc<Live>);

#[async_trait]
impl Reload for Reloader {
    async fn reload(&self, by: &str) -> ReloadAnswer {
        self.0.reload_async(by).await
    }
}

impl Guarded for Live {
    /// Which config is in place: it changes with each reload and rollback.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The running config's answers and healthy backends (for `reload_guard`).
    fn sample(&self) -> Option<Sample> {
        Some(Sample::of(&self.view.get()?.load().status))
    }

    /// Goes back to the config before reload `generation`, unless another config was
    /// put in place since.
    fn roll_back(&self, generation: u64, why: &str) {
        let mut st = self.state();
        if self.generation() != generation {
            return;
        }
        let Some(previous) = st.previous.take() else {
            return;
        };
        let config = match Config::parse(&self.file, &previous, &self.registry) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload_guard: cannot go back to the previous config: {e}");
                return;
            }
        };
        let digest = hash(&previous);
        let mut upgrade = Vec::new();
        if let Err(e) = self.apply(&mut st, previous, config, &mut upgrade) {
            log::error!("reload_guard: cannot go back to the previous config: {e}");
            return;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        log::error!(
            "reload_guard: rolled back to config {} because {why}; {} still holds the \
             config that was rolled back",
            &digest[..12],
            self.file.display()
        );
        self.metrics.config_reloaded("rolled_back");
        self.metrics.set_config_hash(&digest);
        self.metrics.set_config_loaded(services::unix_now());
        let detail = json!({"result": "rolled_back", "why": why, "hash": digest});
        self.config.applied(digest, "rolled_back", detail);
    }
}
