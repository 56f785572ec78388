//! The admin runtime API (`POST /pools/NAME/backends/ADDRESS`, with the admin token):
//! - drain a backend under load: once its in-flight requests finish it receives
//!   nothing new, no request fails, and `ready` brings it back;
//! - maint takes a backend out, a weight change moves the split, `/status` shows each
//!   state, and a reload ends every change (documented: changes last until a reload);
//! - a missing or wrong token gets 401 and changes nothing; bad bodies get 400.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "runtime-api-token-41c7";

struct Setup {
    tioga: Tioga,
    web: SocketAddr,
    admin: SocketAddr,
    _keys: tempfile::TempDir,
}

fn start(a: &HttpBackend, b: &HttpBackend, extra: &str) -> Setup {
    let keys = tempfile::tempdir().unwrap();
    let token = keys.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let (web, admin) = (free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{bind: "{admin}", token_file: "{}"}}
pools:
  app:
    backends: ["{}", "{}"]
{extra}listeners:
  web: {{protocol: http, bind: "{web}", routes: [{{pool: app}}]}}
"#,
        token.display(),
        a.addr(),
        b.addr()
    );
    let tioga = Tioga::start(&yaml, &[web, admin]);
    Setup {
        tioga,
        web,
        admin,
        _keys: keys,
    }
}

fn set(s: &Setup, backend: &HttpBackend, body: &str, token: Option<&str>) -> Response {
    let mut req = Request::post(&format!("/pools/app/backends/{}", backend.addr()), body);
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    req.send(s.admin).unwrap()
}

#[test]
fn a_drained_backend_finishes_its_requests_and_gets_no_more() {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    a.set_delay(Duration::from_millis(200));
    let s = start(&a, &b, "");
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (ok, failed, stop, web) = (ok.clone(), failed.clone(), stop.clone(), s.web);
            std::thread::spawn(move || {
                let mut conn = Conn::open(web).unwrap();
                for i in 0..20_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn.send(&Request::get(&format!("/{w}/{i}"))) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "requests in flight at a", || {
        a.active() > 0
    });
    let r = set(&s, &a, r#"{"state": "drain"}"#, Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"state\": \"drain\""), "{}", r.text());
    wait_until(Duration::from_secs(10), "a's requests to finish", || {
        a.active() == 0
    });
    let (at_a, at_b) = (a.requests(), b.requests());
    wait_until(Duration::from_secs(10), "more load on b", || {
        b.requests() > at_b + 200
    });
    assert_eq!(a.requests(), at_a, "a drained backend gets no new request");
    let status = get(s.admin, "/status").unwrap().text();
    assert!(status.contains("\"drain\""), "{status}");
    // Ready again: a gets requests again.
    assert_eq!(
        set(&s, &a, r#"{"state": "ready"}"#, Some(TOKEN)).status,
        200
    );
    wait_until(Duration::from_secs(10), "a back in rotation", || {
        a.requests() > at_a
    });
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "failed requests");
    assert!(ok.load(Ordering::SeqCst) > 200);
    assert!(
        s.tioga.log().contains("set backend"),
        "every change is logged"
    );
}

#[test]
fn maint_weight_and_reload() {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let s = start(&a, &b, "");
    assert_eq!(
        set(&s, &a, r#"{"state": "maint"}"#, Some(TOKEN)).status,
        200
    );
    for i in 0..10 {
        let r = get(s.web, &format!("/m{i}")).unwrap();
        assert_eq!(r.header("x-backend"), Some("b"));
    }
    // Weight 3 for b, a back: b gets three of every four requests.
    assert_eq!(
        set(&s, &a, r#"{"state": "ready"}"#, Some(TOKEN)).status,
        200
    );
    let r = set(&s, &b, r#"{"weight": 3}"#, Some(TOKEN));
    assert!(r.text().contains("\"weight\": 3"), "{}", r.text());
    let at_b = b.requests();
    for i in 0..40 {
        get(s.web, &format!("/w{i}")).unwrap();
    }
    assert_eq!(b.requests() - at_b, 30, "weight 3 of 4");
    // A reload ends every change.
    assert_eq!(
        set(&s, &a, r#"{"state": "maint"}"#, Some(TOKEN)).status,
        200
    );
    s.tioga.signal("HUP");
    wait_until(Duration::from_secs(10), "the reload", || {
        s.tioga.log().contains("in place in")
    });
    let at_a = a.requests();
    for i in 0..10 {
        get(s.web, &format!("/r{i}")).unwrap();
    }
    assert_eq!(
        a.requests() - at_a,
        5,
        "after the reload: ready, weight 1 each"
    );
}

#[test]
fn changes_need_the_token_and_a_good_body() {
    let (a, b) = (spawn_http_backend("a"), spawn_http_backend("b"));
    let s = start(&a, &b, "");
    assert_eq!(set(&s, &a, r#"{"state": "maint"}"#, None).status, 401);
    assert_eq!(
        set(&s, &a, r#"{"state": "maint"}"#, Some("nope")).status,
        401
    );
    let (at_a, at_b) = (a.requests(), b.requests());
    for i in 0..10 {
        get(s.web, &format!("/{i}")).unwrap();
    }
    assert_eq!(
        (a.requests() - at_a, b.requests() - at_b),
        (5, 5),
        "nothing changed"
    );
    let status = get(s.admin, "/status").unwrap().text();
    assert!(!status.contains("\"maint\""), "{status}");
    assert_eq!(
        set(&s, &a, r#"{"state": "sleepy"}"#, Some(TOKEN)).status,
        400
    );
    assert_eq!(set(&s, &a, r#"{"weight": 0}"#, Some(TOKEN)).status, 400);
    assert_eq!(set(&s, &a, "not json", Some(TOKEN)).status, 400);
    let r = Request::post("/pools/app/backends/127.0.0.1:1", r#"{"state": "maint"}"#)
        .header("authorization", &format!("Bearer {TOKEN}"))
        .send(s.admin)
        .unwrap();
    assert_eq!(r.status, 404);
    let r = Request::post("/pools/nope/backends/127.0.0.1:1", r#"{"state": "maint"}"#)
        .header("authorization", &format!("Bearer {TOKEN}"))
        .send(s.admin)
        .unwrap();
    assert_eq!(r.status, 404);
}
