//! The status page says why a backend is out, one backend for each reason: failing
//! its probe shows `probe`, answering 500 (ejected by passive health) `outlier`, drained
//! through the admin API `drain`, put in maintenance through it `maint` — in the row's
//! `data-out` and beside its DOWN badge, and the operator's two in the row's State; the
//! others stay UP and ready. A screenshot goes to
//! `target/test-artifacts/status_reasons.png`, and with `TIOGA_UPDATE_SCREENSHOT=1` to
//! `docs/status_page_reasons.png`.
//!
//! Needs `chromium` and `chromium-driver`; `TIOGA_SKIP_BROWSER=1` skips it.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use webdriver::{Binaries, Browser};

const TOKEN: &str = "status-reasons-token-91e0";
/// Tall enough for the config card and the whole pool in one screenshot.
const WINDOW: (u32, u32) = (1200, 1000);

const READ_ROWS: &str = r#"
return Array.from(document.querySelectorAll("tr[data-backend]"), (tr) => {
  const badge = tr.querySelector(".badge"), why = tr.querySelector(".why");
  const state = tr.querySelector(".state");
  return { backend: tr.dataset.backend || "", out: tr.dataset.out || "",
           state: tr.dataset.state || "", stateShown: state ? state.textContent : "",
           badge: badge ? badge.textContent : "", why: why ? why.textContent : "" };
});
"#;

#[test]
fn the_status_page_shows_why_each_backend_is_out() {
    if std::env::var("TIOGA_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("status_reasons: skipped (TIOGA_SKIP_BROWSER=1)");
        return;
    }
    let bins = Binaries::find().unwrap_or_else(|e| {
        panic!("{e}: needs chromium and chromium-driver (or TIOGA_SKIP_BROWSER=1)")
    });
    let keys = tempfile::tempdir().expect("temp dir");
    std::fs::write(keys.path().join("token"), TOKEN).expect("write token");
    let backends: Vec<HttpBackend> = [
        "ok",
        "probe-fails",
        "answers-500",
        "drained",
        "maintenance",
        "ok-too",
    ]
    .map(spawn_http_backend)
    .into();
    backends[1].set_healthy(false);
    backends[2].set_status(500);
    let list: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    let (listen, admin) = (free_addr(), free_addr());
    let yaml = format!(
        "admin:
  bind: {admin}
  token_file: {keys}/token
pools:
  app:
    backends: [{}]
    health_check: {{type: http, path: /health, interval: 300ms, timeout: 300ms}}
    outlier: {{consecutive_failures: 3, base_ejection: 60s, max_ejected: 50%}}
listeners:
  web:
    protocol: http
    bind: {listen}
    routes:
      - pool: app
",
        list.join(", "),
        keys = keys.path().display(),
    );
    let _tioga = Tioga::start(&yaml, &[listen, admin]);
    // Traffic until the 500 one is ejected.
    wait_until(
        Duration::from_secs(20),
        "the 500 backend to be ejected",
        || {
            let _ = get(listen, "/");
            let doc: Value = serde_json::from_slice(&get(admin, "/status").unwrap().body).unwrap();
            doc["pools"][0]["backends"][2]["out"] == json!(["outlier"])
                && doc["pools"][0]["backends"][1]["out"] == json!(["probe"])
        },
    );
    for (backend, state) in [(&list[3], "drain"), (&list[4], "maint")] {
        let body = format!("{{\"state\": \"{state}\"}}");
        let r = Request::post(&format!("/pools/app/backends/{backend}"), body)
            .header("authorization", &format!("Bearer {TOKEN}"))
            .send(admin)
            .expect("POST to the admin endpoint");
        assert_eq!(r.status, 200, "{state}: {}", r.text());
    }

    let browser = Browser::launch(&bins, WINDOW).expect("launch chromium");
    browser.goto(&format!("http://{admin}/"));
    let want = |addr: &String, out: &str, state: &str, badge: &str| {
        let text = |s: &str| s.to_string();
        (addr.clone(), text(out), text(state), text(badge))
    };
    let expected = vec![
        want(&list[0], "", "ready", "UP"),
        want(&list[1], "probe", "ready", "DOWN"),
        want(&list[2], "outlier", "ready", "DOWN"),
        want(&list[3], "drain", "drain", "DOWN"),
        want(&list[4], "maint", "maint", "DOWN"),
        want(&list[5], "", "ready", "UP"),
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = browser.execute(READ_ROWS, json!([]));
        let seen: Vec<(String, String, String, String)> = rows
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|r| {
                        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                        (s("backend"), s("out"), s("state"), s("badge"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if seen == expected {
            let shown = |k: &str| -> Vec<String> {
                let rows = rows.as_array().unwrap().iter();
                rows.map(|r| r[k].as_str().unwrap_or("").to_string())
                    .collect()
            };
            assert_eq!(shown("why"), ["", "probe", "outlier", "drain", "maint", ""]);
            let states = ["ready", "ready", "ready", "drain", "maint", "ready"];
            assert_eq!(shown("stateShown"), states);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "page shows {seen:?}, want {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifact = root.join("target/test-artifacts/status_reasons.png");
    fs::create_dir_all(artifact.parent().unwrap()).unwrap();
    fs::write(&artifact, &png).unwrap();
    if std::env::var("TIOGA_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        fs::write(root.join("docs/status_page_reasons.png"), &png).unwrap();
    }
}
