//! The status page's explain form in headless Chromium (as `tests/status_page.rs`
//! drives it): a request typed into the form is answered from `GET /explain`, naming
//! the route it would take and why the route before it did not match.
//!
//! Needs `chromium` and `chromium-driver` (`make test-deps`); `TIOGA_SKIP_BROWSER=1`
//! skips it.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use webdriver::{Binaries, Browser};

const FILL_AND_SUBMIT: &str = r#"
const f = document.getElementById("explain-form");
f.method.value = arguments[0];
f.url.value = arguments[1];
f.headers.value = arguments[2];
f.requestSubmit();
"#;

const READ: &str = r#"
const out = document.getElementById("explain-out");
return { route: out.dataset.route || "", text: out.textContent };
"#;

#[test]
fn the_status_page_explains_a_request() {
    if std::env::var("TIOGA_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("explain_page: skipped (TIOGA_SKIP_BROWSER=1)");
        return;
    }
    let bins = Binaries::find().unwrap_or_else(|e| {
        panic!("{e}: needs chromium and chromium-driver (make test-deps), or TIOGA_SKIP_BROWSER=1")
    });
    let backend = spawn_http_backend("a");
    let (web, admin) = (free_addr(), free_addr());
    let _tioga = Tioga::start(
        &format!(
            "admin: {{bind: '{admin}'}}
pools:
  api: {{backends: ['{a}']}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    routes:
      - match: {{path_prefix: /static/}}
        pool: api
      - match: {{host: api.example, headers: {{x-canary: '1'}}}}
        pool: api
",
            a = backend.addr()
        ),
        &[web, admin],
    );
    let browser = Browser::launch(&bins, (1000, 800)).expect("launch the browser");
    browser.goto(&format!("http://{admin}/"));
    browser.execute(
        FILL_AND_SUBMIT,
        json!([
            "GET",
            format!("http://{web}/v1"),
            "Host: api.example\nx-canary: 1"
        ]),
    );
    let mut last = Value::Null;
    wait_until(Duration::from_secs(15), "the explain form's answer", || {
        last = browser.execute(READ, json!([]));
        last["route"] != ""
    });
    assert_eq!(last["route"], "web[1]", "{last}");
    let text = last["text"].as_str().unwrap_or_default();
    assert!(text.contains("web[0]  no match: path_prefix"), "{text}");
    assert!(text.contains("route web[1], pool api"), "{text}");
}
