//! The live status page (`GET /` on `admin.bind`) in a real browser. Headless Chromium,
//! driven over WebDriver, loads the page and sees both backends of a health-checked pool
//! `UP`; when one backend's `/health` starts answering 503, its row turns `DOWN` within
//! two check intervals plus one poll period (plus slack), updated in place without a
//! reload, while the other stays `UP`. On a narrow window the page does not scroll
//! sideways (tables scroll inside their cards).
//!
//! Screenshots go to `target/test-artifacts/status_page.png` (and `status_page_narrow.png`);
//! with `TIOGA_UPDATE_SCREENSHOT=1` the first is also copied to `docs/status_page.png`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`make deps`). Without them
//! the test fails and says so; `TIOGA_SKIP_BROWSER=1` skips it instead.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use webdriver::{Binaries, Browser};

/// The pool's health-check interval, as written in the config.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often the page polls `/status`.
const POLL_PERIOD: Duration = Duration::from_secs(1);
/// Allowance for the check itself, the fetch and the test's own polling.
const SLACK: Duration = Duration::from_millis(500);
/// Longest wait for the page to show a state that does not depend on timing.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two reads of the page.
const READ_PAUSE: Duration = Duration::from_millis(20);
/// Window size of the main screenshot.
const WINDOW: (u32, u32) = (1200, 900);
/// The window marker set once both rows are up; a reload would lose it.
const MARKER: &str = "__tiogaNoReload";

/// Reads everything the test looks at in one script run.
const READ_PAGE: &str = r#"
const rows = Array.from(document.querySelectorAll("tr[data-backend]"), (tr) => {
  const badge = tr.querySelector(".badge");
  return { pool: tr.dataset.pool || "", backend: tr.dataset.backend || "",
           health: tr.dataset.health || "", badge: badge ? badge.textContent : "" };
});
return { updated: Number(document.body.dataset.updated || 0),
         conn: document.body.dataset.conn || "",
         marker: window[arguments[0]] || null,
         timeOrigin: performance.timeOrigin, rows: rows };
"#;

/// One backend row as the page shows it.
#[derive(Clone, Debug)]
struct Row {
    pool: String,
    backend: String,
    /// The row's `data-health`: `up` or `down`.
    health: String,
    /// The badge text: `UP` or `DOWN`.
    badge: String,
}

/// A snapshot of the page.
#[derive(Debug)]
struct PageState {
    /// `<body data-updated>`: successful polls so far.
    updated: u64,
    /// `<body data-conn>`: `connecting`, `live` or `lost`.
    conn: String,
    /// The value of [`MARKER`] on `window`, if set.
    marker: Option<String>,
    /// `performance.timeOrigin`: changes on a reload.
    time_origin: f64,
    rows: Vec<Row>,
}

impl PageState {
    fn read(browser: &Browser) -> PageState {
        let v = browser.execute(READ_PAGE, json!([MARKER]));
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let rows: Vec<Row> = (v["rows"].as_array().cloned().unwrap_or_default().iter())
            .map(|r| Row {
                pool: text(&r["pool"]),
                backend: text(&r["backend"]),
                health: text(&r["health"]),
                badge: text(&r["badge"]),
            })
            .collect();
        for row in &rows {
            assert_eq!(
                row.health.to_uppercase(),
                row.badge,
                "data-health and badge text disagree: {row:?}"
            );
        }
        PageState {
            updated: v["updated"].as_u64().unwrap_or(0),
            conn: text(&v["conn"]),
            marker: v["marker"].as_str().map(str::to_string),
            time_origin: v["timeOrigin"].as_f64().unwrap_or(0.0),
            rows,
        }
    }

    /// The badge text (`UP` / `DOWN`) of `backend`'s row in `pool`, if the row exists.
    fn health(&self, pool: &str, backend: SocketAddr) -> Option<&str> {
        let addr = backend.to_string();
        let row = self
            .rows
            .iter()
            .find(|r| r.pool == pool && r.backend == addr);
        row.map(|r| r.badge.as_str())
    }
}

/// The browser binaries, or `None` when `TIOGA_SKIP_BROWSER=1`; panics if they are missing.
fn browser_binaries() -> Option<Binaries> {
    if std::env::var("TIOGA_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("status_page: skipped (TIOGA_SKIP_BROWSER=1)");
        return None;
    }
    match Binaries::find() {
        Ok(bins) => Some(bins),
        Err(e) => panic!(
            "{e}: this test needs headless Chromium and chromedriver. Run `make deps` \
             (Debian: apt-get install -y chromium chromium-driver), or set \
             TIOGA_SKIP_BROWSER=1 to skip it"
        ),
    }
}

/// `target/test-artifacts/NAME`.
fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts")
        .join(name)
}

/// Reads the page until `done` holds; returns that state and how long it took. Past
/// `timeout` it saves a screenshot and panics with the last state.
fn wait_page(
    browser: &Browser,
    timeout: Duration,
    what: &str,
    done: impl Fn(&PageState) -> bool,
) -> (PageState, Duration) {
    let start = Instant::now();
    loop {
        let state = PageState::read(browser);
        if done(&state) {
            return (state, start.elapsed());
        }
        if start.elapsed() >= timeout {
            let shot = artifact("status_page_failure.png");
            browser.save_screenshot(&shot);
            panic!(
                "timed out after {timeout:?} waiting for {what}; page: {state:#?}; screenshot: {}",
                shot.display()
            );
        }
        std::thread::sleep(READ_PAUSE);
    }
}

/// Saves the screenshot as an artifact, and into `docs/` when asked to.
fn save_screenshots(browser: &Browser) {
    let png = browser.screenshot();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "screenshot is not a PNG"
    );
    let path = artifact("status_page.png");
    fs::create_dir_all(path.parent().unwrap()).expect("create target/test-artifacts");
    fs::write(&path, &png).expect("write screenshot");
    eprintln!("status_page: screenshot {}", path.display());
    if std::env::var("TIOGA_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        fs::create_dir_all(&docs).expect("create docs/");
        fs::write(docs.join("status_page.png"), &png).expect("write docs/status_page.png");
        eprintln!(
            "status_page: updated {}",
            docs.join("status_page.png").display()
        );
    }
}

/// Two health-checked HTTP backends in pool `app`, an HTTP listener and the admin
/// endpoint; kept alive together.
struct Setup {
    a: HttpBackend,
    b: HttpBackend,
    listen: SocketAddr,
    admin: SocketAddr,
    _tioga: Tioga,
}

fn start_tioga() -> Setup {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let (listen, admin) = (free_addr(), free_addr());
    let yaml = format!(
        "admin:
  bind: {admin}
pools:
  app:
    backends: [{a}, {b}]
    health_check: {{type: http, path: /health, interval: 500ms, timeout: 300ms}}
listeners:
  web:
    protocol: http
    bind: {listen}
    routes:
      - pool: app
",
        a = a.addr(),
        b = b.addr(),
    );
    let tioga = Tioga::start(&yaml, &[listen, admin]);
    Setup {
        a,
        b,
        listen,
        admin,
        _tioga: tioga,
    }
}

/// Sends requests through `listen` while the page polls twice more after `updated`,
/// so the screenshot shows live rates; then saves it.
fn screenshot_under_traffic(browser: &Browser, listen: SocketAddr, updated: u64) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..500 {
                if stop.load(Ordering::Relaxed) || get(listen, "/").is_err() {
                    break;
                }
                std::thread::sleep(READ_PAUSE);
            }
        });
        let polled = |s: &PageState| s.updated >= updated + 2;
        wait_page(browser, PAGE_TIMEOUT, "two more polls", polled);
        stop.store(true, Ordering::Relaxed);
    });
    save_screenshots(browser);
}

/// On a phone-sized window the page itself must not scroll sideways.
fn assert_fits_narrow_window(browser: &Browser) {
    browser.set_window_size(390, 844);
    let script = "return [document.documentElement.scrollWidth, window.innerWidth];";
    let size = browser.execute(script, json!([]));
    let (scroll, inner) = (size[0].as_u64().unwrap(), size[1].as_u64().unwrap());
    browser.save_screenshot(&artifact("status_page_narrow.png"));
    assert!(inner < 600, "the window did not get narrow: {inner}px");
    assert!(
        scroll <= inner,
        "the page is {scroll}px wide in a {inner}px window"
    );
}

#[test]
fn status_page_shows_a_backend_going_down_without_reloading() {
    let Some(bins) = browser_binaries() else {
        return;
    };
    let Setup {
        a,
        b,
        listen,
        admin,
        ..
    } = &start_tioga();
    let browser = Browser::launch(&bins, WINDOW).unwrap_or_else(|e| panic!("browser: {e}"));
    browser.goto(&format!("http://{admin}/"));

    let both_up = |s: &PageState| {
        s.health("app", a.addr()) == Some("UP") && s.health("app", b.addr()) == Some("UP")
    };
    let (before, _) = wait_page(&browser, PAGE_TIMEOUT, "both backends UP", both_up);
    assert_eq!(before.conn, "live");
    let script =
        format!("window.{MARKER} = 'page-' + performance.timeOrigin; return window.{MARKER};");
    let marker = browser.execute(&script, json!([]));
    let marker = marker.as_str().expect("marker is a string").to_string();
    for _ in 0..20 {
        let resp = get(*listen, "/").expect("request through the listener");
        assert_eq!(resp.status, 200);
    }

    b.set_healthy(false);
    let down = |s: &PageState| s.health("app", b.addr()) == Some("DOWN");
    let (after, took) = wait_page(&browser, PAGE_TIMEOUT, "backend b DOWN", down);
    let budget = CHECK_INTERVAL * 2 + POLL_PERIOD + SLACK;
    eprintln!("status_page: DOWN shown {took:?} after /health turned 503 (budget {budget:?})");
    assert!(took <= budget, "DOWN took {took:?}, more than {budget:?}");
    assert_eq!(
        after.marker.as_deref(),
        Some(marker.as_str()),
        "the page reloaded"
    );
    assert_eq!(after.time_origin, before.time_origin, "the page reloaded");
    assert!(
        after.updated > before.updated,
        "data-updated did not grow: {after:?}"
    );
    assert_eq!(after.health("app", a.addr()), Some("UP"), "{after:?}");
    assert_eq!(after.conn, "live");

    screenshot_under_traffic(&browser, *listen, after.updated);
    assert_fits_narrow_window(&browser);
}
