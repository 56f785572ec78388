//! DNS discovery against a real authoritative DNS server started by the test (Debian's
//! dnsmasq, answering from a hosts file it re-reads on SIGHUP): records change under
//! load, the new backend gets traffic within `refresh` + 1 s, the removed one gets
//! nothing new, no request fails, and when the DNS server dies the last set keeps
//! serving. SRV weights are honoured. A discovered backend that is down is taken out
//! by the health check and keeps that verdict across a change of set.

mod common;

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A dnsmasq on 127.0.0.1, answering only from its hosts file and SRV records.
struct Dns {
    child: Child,
    addr: SocketAddr,
    hosts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dns {
    fn start(hosts: &str, srv: &[String]) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        let hosts_file = dir.path().join("hosts");
        fs::write(&hosts_file, hosts).unwrap();
        for _ in 0..20 {
            let addr = free_addr();
            let mut cmd = Command::new("dnsmasq");
            cmd.args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file=",
                "--local-ttl=0",
            ])
            .arg(format!("--port={}", addr.port()))
            .arg(format!("--addn-hosts={}", hosts_file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            for s in srv {
                cmd.arg(format!("--srv-host={s}"));
            }
            let mut child = cmd.spawn().expect("dnsmasq (Debian package dnsmasq-base)");
            // Ready once it holds the UDP port; it exits at once if the port is taken.
            let end = Instant::now() + Duration::from_secs(5);
            let mut ready = false;
            while Instant::now() < end && child.try_wait().unwrap().is_none() {
                if std::net::UdpSocket::bind(addr).is_err() {
                    ready = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if ready {
                return Dns {
                    child,
                    addr,
                    hosts: hosts_file,
                    _dir: dir,
                };
            }
        }
        panic!("dnsmasq did not start");
    }

    /// Replaces the hosts file and makes dnsmasq re-read it.
    fn set_hosts(&self, hosts: &str) {
        fs::write(&self.hosts, hosts).unwrap();
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(ok.success());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.kill();
    }
}

/// HTTP backends on `ips`, all on the same port.
fn backends_on(ips: &[&str]) -> Vec<HttpBackend> {
    for _ in 0..50 {
        let port = free_addr().port();
        let started: Result<Vec<HttpBackend>, _> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let addr = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port);
                HttpBackend::bind(&format!("b{i}"), addr)
            })
            .collect();
        if let Ok(b) = started {
            return b;
        }
    }
    panic!("no port free on every address");
}

fn config(listen: SocketAddr, admin: SocketAddr, discovery: &str) -> String {
    format!(
        "server:
  threads: 2
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
admin:
  bind: \"{admin}\"
pools:
  web:
    discovery: {discovery}
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - pool: web
"
    )
}

/// GETs from `n` threads until stopped; counts failures.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(listen: SocketAddr, n: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..n)
            .map(|_| {
                let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
                std::thread::spawn(move || {
                    let end = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                        match get(listen, "/") {
                            Ok(r) if r.status == 200 => {}
                            Ok(r) => failed.lock().unwrap().push(format!("status {}", r.status)),
                            Err(e) => failed.lock().unwrap().push(e.to_string()),
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failed,
            threads,
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        failed
    }
}

fn status(admin: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&get(admin, "/status").unwrap().body).unwrap()
}

#[test]
fn records_change_under_load_and_no_request_fails() {
    let b = backends_on(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let port = b[0].addr().port();
    let dns = Dns::start("127.0.0.2 api.test\n127.0.0.3 api.test\n", &[]);
    let (listen, admin) = (free_addr(), free_addr());
    let discovery = format!(
        "{{dns: \"api.test:{port}\", refresh: 1s, resolver: \"{}\"}}",
        dns.addr
    );
    let mut dns = dns;
    let _tioga = Tioga::start(&config(listen, admin, &discovery), &[listen, admin]);
    wait_until(Duration::from_secs(10), "the first lookup", || {
        get(listen, "/").is_ok_and(|r| r.status == 200)
    });
    let load = Load::start(listen, 4);
    wait_until(Duration::from_secs(10), "traffic on b0 and b1", || {
        b[0].requests() > 20 && b[1].requests() > 20
    });
    assert_eq!(b[2].requests(), 0);

    // b2 comes in, b0 goes.
    dns.set_hosts("127.0.0.3 api.test\n127.0.0.4 api.test\n");
    let changed = Instant::now();
    wait_until(Duration::from_secs(10), "b2 to get traffic", || {
        b[2].requests() > 0
    });
    let took = changed.elapsed();
    eprintln!("new backend got traffic {took:?} after the records changed");
    assert!(
        took <= Duration::from_secs(2),
        "refresh (1 s) + 1 s: {took:?}"
    );
    // Requests already on their way to b0 finish; after that it gets nothing new.
    let settled = load.done() + 50;
    wait_until(Duration::from_secs(10), "50 more requests", || {
        load.done() > settled
    });
    let b0 = b[0].requests();
    let later = load.done() + 300;
    wait_until(Duration::from_secs(20), "300 more requests", || {
        load.done() > later
    });
    assert_eq!(b[0].requests(), b0, "the removed backend got new requests");

    // The DNS server dies: lookups fail, the last set keeps serving.
    dns.kill();
    wait_until(Duration::from_secs(15), "a failed lookup", || {
        status(admin)["pools"][0]["discovery"]["failures"].as_u64() > Some(0)
    });
    let (b1, b2) = (b[1].requests(), b[2].requests());
    let more = load.done() + 100;
    wait_until(Duration::from_secs(20), "100 more requests", || {
        load.done() > more
    });
    assert!(
        b[1].requests() > b1 && b[2].requests() > b2,
        "the last set serves on"
    );
    let failed = load.finish();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[test]
fn srv_weights_are_honoured() {
    let (light, heavy) = (spawn_http_backend("light"), spawn_http_backend("heavy"));
    let srv = vec![
        format!("_http._tcp.api.test,light.test,{},0,1", light.addr().port()),
        format!("_http._tcp.api.test,heavy.test,{},0,3", heavy.addr().port()),
    ];
    let dns = Dns::start("127.0.0.1 light.test\n127.0.0.1 heavy.test\n", &srv);
    let (listen, admin) = (free_addr(), free_addr());
    let discovery = format!(
        "{{srv: _http._tcp.api.test, refresh: 1s, resolver: \"{}\"}}",
        dns.addr
    );
    let _tioga = Tioga::start(&config(listen, admin, &discovery), &[listen, admin]);
    wait_until(Duration::from_secs(10), "both backends discovered", || {
        status(admin)["pools"][0]["backends"]
            .as_array()
            .is_some_and(|l| l.len() == 2)
    });
    let (l0, h0) = (light.requests(), heavy.requests());
    for i in 0..400 {
        let r = get(listen, "/").unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200);
    }
    let (l, h) = (light.requests() - l0, heavy.requests() - h0);
    eprintln!("SRV weights 1:3 → {l}:{h}");
    assert_eq!(l + h, 400);
    assert_eq!(
        (l, h),
        (100, 300),
        "smooth round robin honours the weights exactly"
    );
}

/// Backend `addr` of pool `web` in `/status`, if it is in the set.
fn backend_status(admin: SocketAddr, addr: SocketAddr) -> Option<serde_json::Value> {
    let doc = status(admin);
    let list = doc["pools"][0]["backends"].as_array()?.clone();
    list.into_iter().find(|b| b["address"] == addr.to_string())
}

#[test]
fn a_discovered_backend_that_is_down_is_taken_out_by_the_probe_and_stays_out() {
    let live = backends_on(&["127.0.0.2", "127.0.0.4"]);
    let port = live[0].addr().port();
    // Nothing listens on 127.0.0.3 at that port.
    let dead = SocketAddr::from(([127, 0, 0, 3], port));
    let dns = Dns::start("127.0.0.2 api.test\n127.0.0.3 api.test\n", &[]);
    let (listen, admin) = (free_addr(), free_addr());
    let discovery = format!(
        "{{dns: \"api.test:{port}\", refresh: 1s, resolver: \"{}\"}}
    health_check: {{type: tcp, interval: 200ms, timeout: 500ms, rise: 1, fall: 1}}",
        dns.addr
    );
    let _tioga = Tioga::start(&config(listen, admin, &discovery), &[listen, admin]);
    let out = |b: &serde_json::Value| b["out"].as_array().cloned().unwrap_or_default();
    wait_until(
        Duration::from_secs(10),
        "the probe to take the dead one out",
        || backend_status(admin, dead).is_some_and(|b| out(&b) == ["probe"]),
    );
    let failures = |b: &serde_json::Value| b["connect_failures"].as_u64().unwrap();
    let before = backend_status(admin, dead).unwrap();
    let b0 = live[0].requests();
    for i in 0..100 {
        let r = get(listen, "/").unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        live[0].requests() - b0,
        100,
        "every request to the live one"
    );
    let after = backend_status(admin, dead).unwrap();
    assert_eq!(
        failures(&after),
        failures(&before),
        "none tried on the dead one"
    );

    // A refresh that changes the set: the new backend is probed, the dead one keeps
    // its verdict (no transition: neither Pingora's probe state nor Tioga's reset).
    let transitions = before["transitions"].as_u64().unwrap();
    dns.set_hosts("127.0.0.2 api.test\n127.0.0.3 api.test\n127.0.0.4 api.test\n");
    let added = live[1].addr();
    wait_until(Duration::from_secs(10), "the new backend probed", || {
        backend_status(admin, added).is_some_and(|b| b["last_check"]["result"] == "ok")
    });
    let (b0, b1) = (live[0].requests(), live[1].requests());
    for i in 0..100 {
        let r = get(listen, "/").unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200);
    }
    let (d0, d1) = (live[0].requests() - b0, live[1].requests() - b1);
    assert_eq!((d0, d1), (50, 50), "round robin over the two live ones");
    let kept = backend_status(admin, dead).unwrap();
    assert_eq!(out(&kept), ["probe"], "{kept}");
    assert_eq!(
        kept["last_check"]["result"], "failed",
        "still probed: {kept}"
    );
    assert_eq!(kept["transitions"].as_u64(), Some(transitions), "{kept}");
    assert_eq!(
        failures(&kept),
        failures(&before),
        "none tried on the dead one"
    );
}
