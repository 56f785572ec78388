//! The status page follows the running config, in a real browser (headless Chromium
//! over WebDriver, as `status_page.rs`):
//! - it shows the config hash (12 characters, the whole one on hover) equal to
//!   `/status`, no reload yet;
//! - after a SIGHUP that applies a new file: a new hash, 1 reload, result `ok` by
//!   SIGHUP, and the change that needs an upgrade (`server.threads`) listed as such;
//! - after a SIGHUP with a broken file: result `refused` with its problem, while the
//!   hash and the reload count stay those of the running config;
//! - after the admin API drains one backend and puts another in maintenance (with the
//!   token; the same requests without it or with a wrong one are refused first): those
//!   rows show `drain` / `maint` as their state and as why they are out, and the
//!   operator changes list exactly the two accepted changes, newest first, with who
//!   asked.
//!
//! Needs `chromium` and `chromium-driver`; `TIOGA_SKIP_BROWSER=1` skips it. Screenshots
//! of the applied and the refused reload go to `target/test-artifacts/status_page_reload_
//! {ok,refused}.png`; on a timeout, `status_page_reload_failure.png`.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use webdriver::{Binaries, Browser};

const TOKEN: &str = "status-page-token-4c2a";
/// Longest wait for the page to show something (a reload, a poll, a change).
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything the test reads from the page, in one script run.
const READ_PAGE: &str = r##"
const cfg = document.getElementById("cfg"), $ = (id) => document.getElementById(id);
const text = (n) => n ? n.textContent : "";
return {
  updated: Number(document.body.dataset.updated || 0),
  hash: cfg.dataset.hash || "", hashShown: text($("cfg-hash")), hashTitle: $("cfg-hash").title,
  reloads: cfg.dataset.reloads || "", reloadsShown: text($("cfg-reloads")),
  result: cfg.dataset.result || "", resultShown: text($("cfg-result")), last: text($("cfg-last")),
  loaded: text($("cfg-loaded")),
  notes: Array.from(document.querySelectorAll("#cfg-notes li"), (li) => [li.className, li.textContent]),
  ops: Array.from(document.querySelectorAll("tr[data-op]"), (tr) => ({
    who: tr.dataset.opWho, pool: tr.dataset.opPool, backend: tr.dataset.opBackend,
    change: tr.dataset.opChange,
    shown: Array.from(tr.cells, (td) => td.textContent) })),
  rows: Array.from(document.querySelectorAll("tr[data-backend]"), (tr) => ({
    backend: tr.dataset.backend, state: tr.dataset.state || "", out: tr.dataset.out || "",
    stateShown: text(tr.querySelector(".state")), why: text(tr.querySelector(".why")),
    badge: text(tr.querySelector(".badge")) })),
};
"##;

fn config(admin: SocketAddr, listen: SocketAddr, keys: &Path, backends: &[String]) -> String {
    format!(
        "admin: {{bind: \"{admin}\", token_file: \"{}/token\"}}
pools:
  app:
    backends: [{}]
listeners:
  web:
    protocol: http
    bind: {listen}
    routes:
      - match: {{path_prefix: /gen0}}
        pool: app
      - pool: app
",
        keys.display(),
        backends.join(", ")
    )
}

/// Reads the page until `done` holds, and returns what it read; on timeout saves a
/// screenshot and panics with the last reading.
fn wait_page(browser: &Browser, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let page = browser.execute(READ_PAGE, json!([]));
        if done(&page) {
            return page;
        }
        if start.elapsed() >= PAGE_TIMEOUT {
            let shot = artifact("status_page_reload_failure.png");
            browser.save_screenshot(&shot);
            panic!(
                "timed out after {PAGE_TIMEOUT:?} waiting for {what}; page: {page:#}; \
                 screenshot: {}",
                shot.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `target/test-artifacts/NAME`.
fn artifact(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts")
        .join(name)
}

/// `/status`'s `config` object.
fn status_config(admin: SocketAddr) -> Value {
    let body = get(admin, "/status").expect("GET /status").body;
    let doc: Value = serde_json::from_slice(&body).expect("/status is JSON");
    doc["config"].clone()
}

/// A backend change through the admin API, with `token` (none: no Authorization).
fn set_backend(admin: SocketAddr, backend: &str, body: &str, token: Option<&str>) -> u16 {
    let mut req = Request::post(&format!("/pools/app/backends/{backend}"), body);
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    req.send(admin).expect("POST to the admin endpoint").status
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The notes of the last reload with class `class`.
fn notes<'a>(page: &'a Value, class: &str) -> Vec<&'a str> {
    let all = page["notes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    all.iter()
        .filter(|n| s(&n[0]) == class)
        .map(|n| s(&n[1]))
        .collect()
}

/// Asserts the page shows the hash `/status` gives, short with the whole on hover.
fn assert_hash_shown(page: &Value, hash: &str) {
    assert!(hash.len() > 12, "a config hash: {hash:?}");
    assert_eq!(s(&page["hash"]), hash, "{page:#}");
    assert_eq!(s(&page["hashShown"]), &hash[..12], "{page:#}");
    assert_eq!(s(&page["hashTitle"]), hash, "{page:#}");
}

#[test]
fn the_status_page_shows_reloads_and_operator_changes() {
    if std::env::var("TIOGA_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("status_page_reload: skipped (TIOGA_SKIP_BROWSER=1)");
        return;
    }
    let bins = Binaries::find().unwrap_or_else(|e| {
        panic!("{e}: needs chromium and chromium-driver (or TIOGA_SKIP_BROWSER=1)")
    });
    let keys = tempfile::tempdir().expect("temp dir");
    std::fs::write(keys.path().join("token"), TOKEN).expect("write token");
    let backends: Vec<HttpBackend> = ["a", "b", "c"].map(spawn_http_backend).into();
    let list: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    let (listen, admin) = (free_addr(), free_addr());
    let gen0 = config(admin, listen, keys.path(), &list);
    let tioga = Tioga::start(&gen0, &[listen, admin]);

    let browser = Browser::launch(&bins, (1200, 1000)).expect("launch chromium");
    browser.goto(&format!("http://{admin}/"));
    let h0 = s(&status_config(admin)["hash"]).to_string();
    let page = wait_page(&browser, "the first poll", |p| {
        p["updated"].as_u64() > Some(0)
    });
    assert_hash_shown(&page, &h0);
    assert_eq!(s(&page["reloads"]), "0", "{page:#}");
    assert_eq!(s(&page["reloadsShown"]), "0", "{page:#}");
    assert_eq!(s(&page["result"]), "none", "{page:#}");
    assert!(s(&page["loaded"]).ends_with(" ago"), "{page:#}");

    // A reload that applies: a route changes in place, server.threads needs an upgrade.
    let gen1 = format!("server:\n  threads: 2\n{}", gen0.replace("/gen0", "/gen1"));
    tioga.rewrite_config(&gen1);
    tioga.signal("HUP");
    let page = wait_page(&browser, "a new hash after SIGHUP", |p| {
        !s(&p["hash"]).is_empty() && s(&p["hash"]) != h0
    });
    let h1 = s(&status_config(admin)["hash"]).to_string();
    assert_ne!(h1, h0, "the reload changed the hash in /status");
    assert_hash_shown(&page, &h1);
    assert_eq!(s(&page["reloads"]), "1", "{page:#}");
    assert_eq!(s(&page["reloadsShown"]), "1", "{page:#}");
    assert_eq!(s(&page["result"]), "ok", "{page:#}");
    assert_eq!(s(&page["resultShown"]), "ok", "{page:#}");
    assert!(s(&page["last"]).contains("by SIGHUP"), "{page:#}");
    let upgrades = notes(&page, "upgrade");
    assert!(
        upgrades.iter().any(|u| u.contains("threads")),
        "server.threads listed as needing an upgrade: {page:#}"
    );
    assert!(
        notes(&page, "change").iter().any(|c| c.contains("gen1")),
        "the route change listed as applied in place: {page:#}"
    );
    assert!(notes(&page, "problem").is_empty(), "{page:#}");
    browser.save_screenshot(&artifact("status_page_reload_ok.png"));

    // A reload that is refused: its problem shows, the running config's hash stays.
    tioga.rewrite_config(&gen1.replace("      - pool: app\n", "      - pool: nowhere\n"));
    tioga.signal("HUP");
    let page = wait_page(&browser, "the refused reload", |p| {
        s(&p["result"]) == "refused"
    });
    assert_eq!(s(&page["resultShown"]), "refused", "{page:#}");
    let problems = notes(&page, "problem");
    assert!(
        problems.iter().any(|p| p.contains("nowhere")),
        "the problem is shown: {page:#}"
    );
    assert!(notes(&page, "upgrade").is_empty(), "{page:#}");
    assert_hash_shown(&page, &h1);
    assert_eq!(s(&status_config(admin)["hash"]), h1);
    assert_eq!(s(&page["reloads"]), "1", "{page:#}");

    // Operator changes: refused without the token, applied with it.
    let (b, c) = (list[1].as_str(), list[2].as_str());
    assert_eq!(set_backend(admin, b, r#"{"state":"drain"}"#, None), 401);
    assert_eq!(
        set_backend(admin, c, r#"{"state":"maint"}"#, Some("wrong")),
        401
    );
    assert_eq!(
        set_backend(admin, b, r#"{"state":"drain"}"#, Some(TOKEN)),
        200
    );
    assert_eq!(
        set_backend(admin, c, r#"{"state":"maint"}"#, Some(TOKEN)),
        200
    );
    let page = wait_page(&browser, "drain and maint shown", |p| {
        p["ops"].as_array().map_or(0, Vec::len) >= 2
            && p["rows"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| s(&r["state"]) == "maint"))
    });
    let rows: Vec<(&str, &str, &str, &str, &str)> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (state, out) = (s(&r["state"]), s(&r["out"]));
            assert_eq!(s(&r["stateShown"]), state, "{page:#}");
            (s(&r["backend"]), state, out, s(&r["why"]), s(&r["badge"]))
        })
        .collect();
    assert_eq!(
        rows,
        [
            (list[0].as_str(), "ready", "", "", "UP"),
            (b, "drain", "drain", "drain", "DOWN"),
            (c, "maint", "maint", "maint", "DOWN"),
        ],
        "{page:#}"
    );
    let ops: Vec<(&str, &str, &str)> = page["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let who = s(&o["who"]);
            assert!(who.starts_with("admin client 127.0.0.1"), "{page:#}");
            assert_eq!(s(&o["shown"][1]), who, "{page:#}");
            (s(&o["pool"]), s(&o["backend"]), s(&o["change"]))
        })
        .collect();
    assert_eq!(
        ops,
        [("app", c, "state maint"), ("app", b, "state drain")],
        "exactly the two accepted changes, newest first: {page:#}"
    );
    browser.save_screenshot(&artifact("status_page_reload_refused.png"));
}
