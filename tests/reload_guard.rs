//! `reload_guard`: a reload that sends the route to a pool answering 500 rolls back by
//! itself within the window (logged, counted, in `/status`), and a reload that does no
//! harm is kept once the window passes.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(
    web: SocketAddr,
    admin: SocketAddr,
    good: &HttpBackend,
    bad: &HttpBackend,
    pool: &str,
    window: &str,
) -> String {
    format!(
        r#"
admin: {{bind: "{admin}"}}
reload_guard: {{window: {window}, max_5xx: 10%, min_requests: 10}}
pools:
  good: {{backends: ["{}"]}}
  bad: {{backends: ["{}"]}}
listeners:
  web:
    protocol: http
    bind: "{web}"
    routes: [{{pool: {pool}}}]
"#,
        good.addr(),
        bad.addr()
    )
}

#[test]
fn a_reload_answering_500_rolls_back_by_itself() {
    let (good, bad) = (spawn_http_backend("good"), spawn_http_backend("bad"));
    bad.set_status(500);
    let (web, admin) = (free_addr(), free_addr());
    let tioga = Tioga::start(
        &config(web, admin, &good, &bad, "good", "10s"),
        &[web, admin],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (stop, errors) = (stop.clone(), errors.clone());
        std::thread::spawn(move || {
            for i in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match get(web, &format!("/{i}")) {
                    Ok(r) if r.status == 200 => {}
                    _ => {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    tioga.rewrite_config(&config(web, admin, &good, &bad, "bad", "10s"));
    let sent = Instant::now();
    tioga.signal("HUP");
    wait_until(Duration::from_secs(5), "the bad pool answering", || {
        bad.requests() > 0
    });
    wait_until(Duration::from_secs(10), "the rollback", || {
        tioga.log().contains("reload_guard: rolled back")
    });
    let took = sent.elapsed();
    let at_bad = bad.requests();
    for i in 0..20 {
        assert_eq!(
            get(web, &format!("/after/{i}"))
                .unwrap()
                .header("x-backend"),
            Some("good")
        );
    }
    assert_eq!(
        bad.requests(),
        at_bad,
        "the bad pool gets nothing after the rollback"
    );
    stop.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    assert!(
        took < Duration::from_secs(10),
        "rolled back within the window: {took:?}"
    );
    assert!(
        errors.load(Ordering::SeqCst) > 0,
        "the bad config did answer 500"
    );
    let log = tioga.log();
    assert!(
        log.contains("answers since the reload were 5xx, above max_5xx 10%"),
        "{log}"
    );
    let status = get(admin, "/status").unwrap().text();
    assert!(status.contains("\"rolled_back\""), "{status}");
    let metrics = get(admin, "/metrics").unwrap().text();
    assert!(
        metrics.contains("tioga_config_reloads_total{result=\"rolled_back\"} 1"),
        "{metrics}"
    );
    println!("rolled back {took:?} after the signal");
}

#[test]
fn a_harmless_reload_is_kept() {
    let (good, bad) = (spawn_http_backend("good"), spawn_http_backend("bad"));
    let (web, admin) = (free_addr(), free_addr());
    let tioga = Tioga::start(
        &config(web, admin, &good, &bad, "good", "1s"),
        &[web, admin],
    );
    tioga.rewrite_config(&config(web, admin, &good, &bad, "bad", "1s"));
    tioga.signal("HUP");
    wait_until(Duration::from_secs(10), "the watch to end", || {
        for i in 0..3 {
            let _ = get(web, &format!("/{i}"));
        }
        tioga.log().contains("reload_guard: the reload passed")
    });
    assert!(!tioga.log().contains("rolled back"), "{}", tioga.log());
    assert_eq!(get(web, "/").unwrap().header("x-backend"), Some("bad"));
}
