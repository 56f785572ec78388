//! Sticky sessions with real backends and two Tioga instances sharing a config:
//! 200 clients with cookie jars keep their backend over 20 requests, whichever
//! instance they reach; the cookie never shows a backend's address; when a backend is
//! taken out, only its own clients move, each once.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn config(listen: SocketAddr, admin: SocketAddr, backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "server:
  threads: 2
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
admin:
  bind: \"{admin}\"
pools:
  web:
    backends: [{}]
    sticky: {{cookie: srv, max_age: 1h}}
    health_check: {{type: http, path: /health, interval: 200ms, timeout: 200ms}}
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - pool: web
",
        list.join(", ")
    )
}

/// One client: its cookie jar, the backends that served it, the cookies it was set.
#[derive(Default, Clone)]
struct Client {
    jar: Option<String>,
    served: Vec<String>,
    set: Vec<String>,
}

/// Sends `n` requests for each client, alternating between the `instances`.
fn browse(instances: [SocketAddr; 2], clients: &mut [Client], n: usize) {
    let mut conns: Vec<Conn> = instances.iter().map(|a| Conn::open(*a).unwrap()).collect();
    for c in clients.iter_mut() {
        for i in 0..n {
            let mut req = Request::get("/").timeout(Duration::from_secs(10));
            if let Some(cookie) = &c.jar {
                req = req.header("cookie", cookie);
            }
            let which = i % 2;
            let resp = match conns[which].send(&req) {
                Ok(r) => r,
                Err(_) => {
                    conns[which] = Conn::open(instances[which]).unwrap();
                    conns[which].send(&req).expect("answer")
                }
            };
            assert_eq!(resp.status, 200);
            c.served
                .push(resp.header("x-backend").unwrap_or("-").to_string());
            for set in resp.header_all("set-cookie") {
                let pair = set.split(';').next().unwrap_or("").trim().to_string();
                c.set.push(set.to_string());
                c.jar = Some(pair);
            }
        }
    }
}

/// Runs [`browse`] for all clients on 8 threads.
fn browse_all(instances: [SocketAddr; 2], clients: Vec<Client>, n: usize) -> Vec<Client> {
    let chunks: Vec<Vec<Client>> = clients.chunks(25).map(|c| c.to_vec()).collect();
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|mut chunk| {
            std::thread::spawn(move || {
                browse(instances, &mut chunk, n);
                chunk
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn out(admin: SocketAddr, addr: SocketAddr) -> bool {
    let resp = get(admin, "/status").expect("status");
    let doc: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    doc["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["address"] == addr.to_string() && b["healthy"] == false)
}

#[test]
fn clients_keep_their_backend_across_instances_and_only_a_removed_ones_move_once() {
    let backends: Vec<HttpBackend> = ["a", "b", "c"].map(spawn_http_backend).into();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let (one, two) = (free_addr(), free_addr());
    let (admin1, admin2) = (free_addr(), free_addr());
    let reordered = [addrs[2], addrs[1], addrs[0]];
    let _t1 = Tioga::start(&config(one, admin1, &addrs), &[one, admin1]);
    let _t2 = Tioga::start(&config(two, admin2, &reordered), &[two, admin2]);

    let clients = browse_all([one, two], vec![Client::default(); 200], 20);
    let mut first: HashMap<usize, String> = HashMap::new();
    for (i, c) in clients.iter().enumerate() {
        assert!(
            c.served.iter().all(|b| *b == c.served[0]),
            "client {i}: {:?}",
            c.served
        );
        assert_eq!(
            c.set.len(),
            1,
            "client {i}: the cookie is set once: {:?}",
            c.set
        );
        let cookie = c.jar.as_deref().unwrap();
        for addr in &addrs {
            for part in [
                addr.to_string(),
                addr.ip().to_string(),
                addr.port().to_string(),
            ] {
                assert!(!cookie.contains(&part), "cookie {cookie} shows {part}");
            }
        }
        first.insert(i, c.served[0].clone());
    }
    let names: std::collections::HashSet<&String> = first.values().collect();
    assert_eq!(names.len(), 3, "clients spread over every backend");

    // Take `a` out on both instances.
    backends[0].set_healthy(false);
    wait_until(Duration::from_secs(10), "a to be out on both", || {
        out(admin1, addrs[0]) && out(admin2, addrs[0])
    });
    let before: Vec<Client> = clients
        .into_iter()
        .map(|c| Client {
            jar: c.jar,
            ..Client::default()
        })
        .collect();
    let after = browse_all([one, two], before, 20);
    for (i, c) in after.iter().enumerate() {
        let now = &c.served[0];
        assert!(
            c.served.iter().all(|b| b == now),
            "client {i} moved more than once: {:?}",
            c.served
        );
        if first[&i] == "a" {
            assert_ne!(now, "a");
            assert_eq!(c.set.len(), 1, "client {i}: moved once, cookie set once");
        } else {
            assert_eq!(*now, first[&i], "client {i} of another backend moved");
            assert!(c.set.is_empty(), "client {i}: no new cookie");
        }
    }
}
