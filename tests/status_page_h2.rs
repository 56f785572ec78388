//! The status page through an HTTP/2 TLS listener: a route sends everything to a pool
//! whose backend is Tioga's own admin endpoint, and headless Chromium opens
//! `https://localhost:PORT/` (h2 by ALPN; the test certificate is accepted with
//! `--ignore-certificate-errors`). The page renders its pools, keeps polling
//! `/status` through the listener, and the access log lines of those requests say
//! `h2`.
//!
//! Needs `chromium` and `chromium-driver` like `tests/status_page.rs`;
//! `TIOGA_SKIP_BROWSER=1` skips it.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use common::pki::TestCa;
use common::*;
use serde_json::json;
use std::time::Duration;
use webdriver::{Binaries, Browser};

const READ_PAGE: &str = r#"
return { updated: Number(document.body.dataset.updated || 0),
         conn: document.body.dataset.conn || "",
         backends: Array.from(document.querySelectorAll("tr[data-backend]"),
                              (tr) => tr.dataset.backend) };
"#;

#[test]
fn chromium_opens_the_status_page_over_h2() {
    if std::env::var("TIOGA_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("status_page_h2: skipped (TIOGA_SKIP_BROWSER=1)");
        return;
    }
    let bins = Binaries::find()
        .unwrap_or_else(|e| panic!("{e}: install chromium and chromium-driver (`make test-deps`)"));
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "page");
    let cert = ca.issue("localhost", "localhost", &["localhost"]);
    let app = spawn_http_backend("app");
    let (web, admin) = (free_addr(), free_addr());
    let tioga = Tioga::start(
        &format!(
            "admin: {{bind: \"{admin}\"}}
access_log: {{target: '@DIR@/access.log'}}
pools:
  admin: {{backends: [\"{admin}\"]}}
  app: {{backends: [\"{app}\"]}}
listeners:
  web:
    protocol: http
    bind: \"{web}\"
    tls: {{cert: '{cert}', key: '{key}'}}
    routes: [{{pool: admin}}]
",
            app = app.addr(),
            cert = cert.cert.display(),
            key = cert.key.display()
        ),
        &[web, admin],
    );
    let browser = Browser::launch_with(&bins, (1200, 900), &["--ignore-certificate-errors"])
        .unwrap_or_else(|e| panic!("{e}"));
    browser.goto(&format!("https://localhost:{}/", web.port()));
    let mut page = json!(null);
    wait_until(Duration::from_secs(20), "the page to render live", || {
        page = browser.execute(READ_PAGE, json!([]));
        page["conn"] == "live" && page["updated"].as_u64() >= Some(2)
    });
    let backends = page["backends"].as_array().unwrap();
    assert!(
        backends.contains(&json!(app.addr().to_string())),
        "the page lists pool app's backend: {page}"
    );

    let log = tioga.dir().join("access.log");
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    wait_until(
        Duration::from_secs(10),
        "the page's requests in the log",
        || {
            let l = lines();
            l.iter().any(|e| e["path"] == "/") && l.iter().any(|e| e["path"] == "/status")
        },
    );
    for e in lines() {
        assert_eq!(e["protocol"], "h2", "{e}");
        assert_eq!(e["pool"], "admin", "{e}");
        if e["path"] == "/" || e["path"] == "/status" {
            assert_eq!(e["status"], 200, "{e}");
        }
    }
}
