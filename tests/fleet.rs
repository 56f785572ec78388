//! A fleet of two Tiogas sharing rate limits through a real `redis-server`
//! (`rate_limit: {…, store: redis://…}`): one key at 3× the limit, alternating between
//! the instances, is admitted at the configured rate, not twice it; with Redis killed
//! both keep answering under their own local limits and count the fallback; once Redis
//! is back on the same port the shared limit holds again. A hung Redis (SIGSTOP) costs
//! at most `store_timeout` to the few requests that find it up, then nothing. Also: TCP
//! connections share the budget, and `healthz` answers before routing.

mod common;

use common::redis::RedisServer;
use common::*;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The HTTP limit: `rate: 25, per: 500ms`, i.e. 50 per second with a burst of 25: small
/// against 10 s of traffic (5%, so the burst does not blur the ±10% check), and a
/// client pausing up to 500 ms (a loaded machine) loses none of the budget. The
/// decisions may wait up to `store_timeout: 1s` for Redis, so a busy test machine does
/// not turn a slow answer into a local decision; a dead Redis is seen at once anyway
/// (its connection is lost).
const RATE_PER_SECOND: f64 = 50.0;

struct Instance {
    tioga: Tioga,
    web: SocketAddr,
    raw: SocketAddr,
    admin: SocketAddr,
}

impl Instance {
    fn start(backend: SocketAddr, tcp_backend: SocketAddr, store: &str) -> Instance {
        let (web, raw, admin) = (free_addr(), free_addr(), free_addr());
        let yaml = format!(
            "admin: {{bind: '{admin}'}}
pools:
  app: {{backends: ['{backend}']}}
  echo: {{backends: ['{tcp_backend}']}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    healthz: /healthz
    routes:
      - pool: app
        filters:
          - rate_limit: {{rate: 25, per: 500ms, key: 'header:x-api-key', store: '{store}',
                          store_timeout: 1s}}
  raw:
    protocol: tcp
    bind: '{raw}'
    pool: echo
    filters:
      - rate_limit: {{rate: 3, per: 60s, store: '{store}', store_timeout: 1s}}
"
        );
        let tioga = Tioga::start(&yaml, &[web, raw, admin]);
        Instance {
            tioga,
            web,
            raw,
            admin,
        }
    }

    /// The value of the sample `series` in `/metrics` (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        let text = get(self.admin, "/metrics").expect("GET /metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// What one phase of traffic got.
#[derive(Debug)]
struct Phase {
    admitted: usize,
    refused: usize,
    seconds: f64,
    /// Admitted by each instance.
    by_instance: Vec<usize>,
}

/// Sends requests for key `key` at `per_second`, alternating between `fleet`'s
/// instances on keep-alive connections, for `duration`. Every answer must be 200 or 429.
fn drive(fleet: &[&Instance], key: &str, per_second: f64, duration: Duration) -> Phase {
    let mut conns: Vec<Option<Conn>> = fleet.iter().map(|_| None).collect();
    let n = (per_second * duration.as_secs_f64()) as usize;
    let (mut admitted, mut refused) = (0, 0);
    let mut by_instance = vec![0; fleet.len()];
    let start = Instant::now();
    for i in 0..n {
        // Pacing, not synchronisation: request i is due at i / per_second.
        let due = start + Duration::from_secs_f64(i as f64 / per_second);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let which = i % fleet.len();
        let conn = match &mut conns[which] {
            Some(c) if c.is_reusable() => c,
            slot => slot.insert(Conn::open(fleet[which].web).expect("connect to tioga")),
        };
        let resp = conn
            .send(&Request::get("/").header("x-api-key", key))
            .unwrap_or_else(|e| panic!("request {i} to instance {which} failed: {e}"));
        match resp.status {
            200 => {
                admitted += 1;
                by_instance[which] += 1;
            }
            429 => refused += 1,
            s => panic!("request {i} to instance {which}: status {s}"),
        }
    }
    Phase {
        admitted,
        refused,
        seconds: start.elapsed().as_secs_f64(),
        by_instance,
    }
}

/// Waits until every instance says the store answers.
fn wait_store_up(fleet: &[&Instance], series: &str) {
    for (i, inst) in fleet.iter().enumerate() {
        wait_until(
            Duration::from_secs(20),
            &format!("instance {i} to report the store up"),
            || inst.metric(series) == 1.0,
        );
    }
}

#[test]
fn two_instances_share_one_limit_through_redis_and_fall_back_locally_without_it() {
    let backend = spawn_http_backend("app");
    let tcp_backend = spawn_tcp_backend("echo");
    let mut redis = RedisServer::start(free_addr());
    let store = redis.url();
    let a = Instance::start(backend.addr(), tcp_backend.addr(), &store);
    let b = Instance::start(backend.addr(), tcp_backend.addr(), &store);
    let fleet = [&a, &b];
    let up = format!("tioga_rate_limit_store_up{{store=\"{store}\"}}");
    let fallback = format!("tioga_rate_limit_store_fallback_total{{store=\"{store}\"}}");

    // The store connects at the first decision; warm both up on another key.
    for inst in fleet {
        Request::get("/")
            .header("x-api-key", "warm-up")
            .send(inst.web)
            .unwrap();
    }
    wait_store_up(&fleet, &up);

    // The shared limit: 150 requests/s alternating, for 10 s.
    let offered = 3.0 * RATE_PER_SECOND;
    let shared = drive(&fleet, "k1", offered, Duration::from_secs(10));
    let expected = RATE_PER_SECOND * shared.seconds;
    eprintln!("shared (Redis up): {shared:?}, expected {expected:.0}");
    assert_eq!(
        shared.admitted + shared.refused,
        1500,
        "every request answered"
    );
    assert!(
        (shared.admitted as f64 - expected).abs() <= 0.1 * expected,
        "admitted {} over {:.1} s with a shared limit of {RATE_PER_SECOND}/s: expected {expected:.0} ± 10%",
        shared.admitted,
        shared.seconds
    );

    // Redis dies: both instances keep answering, each under its own local limit.
    let before = [a.metric(&fallback), b.metric(&fallback)];
    redis.kill();
    let local = drive(&fleet, "k2", offered, Duration::from_secs(4));
    let alone = RATE_PER_SECOND * local.seconds;
    eprintln!("local (Redis down): {local:?}, one instance's limit {alone:.0}");
    // Each instance holds its own limit (GCRA: at most rate × time + the burst of 25)…
    for (i, n) in local.by_instance.iter().enumerate() {
        assert!(
            *n as f64 <= alone + 25.0 + 1.0,
            "instance {i} admitted {n} with Redis down: over its local limit {alone:.0} + 25"
        );
    }
    // …so the fleet admits more than one shared limit would (each instance is offered
    // 1.5× the rate; a loaded client may fall behind, hence 1.2×, not 2×).
    assert!(
        local.admitted as f64 >= 1.2 * alone,
        "with Redis down each instance limits alone: more than {alone:.0} in all, got {}",
        local.admitted
    );
    for (i, inst) in fleet.iter().enumerate() {
        let rose = inst.metric(&fallback) - before[i];
        assert!(rose > 0.0, "instance {i}: the fallback metric did not rise");
        assert_eq!(inst.metric(&up), 0.0, "instance {i}: store still up");
    }

    // Redis returns on the same port (empty): the shared limit holds again.
    let redis = RedisServer::start(redis.addr());
    wait_store_up(&fleet, &up);
    let again = drive(&fleet, "k3", offered, Duration::from_secs(10));
    let expected = RATE_PER_SECOND * again.seconds;
    eprintln!("shared again: {again:?}, expected {expected:.0}");
    assert!(
        (again.admitted as f64 - expected).abs() <= 0.1 * expected,
        "after Redis returned: admitted {}, expected {expected:.0} ± 10%",
        again.admitted
    );

    // One outage, logged once going down and once coming back, by each instance.
    for (i, inst) in fleet.iter().enumerate() {
        let log = inst.tioga.log();
        assert_eq!(
            log.matches("limiting locally").count(),
            1,
            "instance {i}:\n{log}"
        );
        assert_eq!(
            log.matches("reachable again").count(),
            1,
            "instance {i}:\n{log}"
        );
    }
    drop(redis);
}

/// Whether a connection to a TCP listener reached the echo backend (its greeting
/// arrives) or was closed by the rate limit.
fn tcp_admitted(addr: SocketAddr) -> bool {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 5];
    match s.read_exact(&mut buf) {
        Ok(()) => {
            assert_eq!(&buf, b"echo\n");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
        Err(e) => panic!("neither greeted nor closed: {e}"),
    }
}

#[test]
fn tcp_connections_share_the_budget_and_healthz_answers_before_routes() {
    let backend = spawn_http_backend("app");
    let tcp_backend = spawn_tcp_backend("echo");
    let redis = RedisServer::start(free_addr());
    let a = Instance::start(backend.addr(), tcp_backend.addr(), &redis.url());
    let b = Instance::start(backend.addr(), tcp_backend.addr(), &redis.url());
    let fleet = [&a, &b];
    // Connect each store first, with an HTTP decision on a key of its own.
    for inst in fleet {
        Request::get("/")
            .header("x-api-key", "warm-up")
            .send(inst.web)
            .unwrap();
    }
    wait_store_up(
        &fleet,
        &format!("tioga_rate_limit_store_up{{store=\"{}\"}}", redis.url()),
    );
    // 3 connections per minute from 127.0.0.1, across both instances.
    let admitted: Vec<bool> = (0..8).map(|i| tcp_admitted(fleet[i % 2].raw)).collect();
    assert_eq!(
        admitted,
        [true, true, true, false, false, false, false, false]
    );

    // healthz: 200 before any route or filter, so never rate-limited.
    for _ in 0..30 {
        let resp = Request::get("/healthz").send(a.web).unwrap();
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok\n"));
    }
    assert_eq!(backend.requests(), 2, "health checks never reach a backend");
    let head = Request::new("HEAD", "/healthz").send(b.web).unwrap();
    assert_eq!(head.status, 200);
}

#[test]
fn dash_t_checks_the_store_url_form_only() {
    let yaml = |store: &str| {
        format!(
            "pools:
  app: {{backends: ['127.0.0.1:9']}}
listeners:
  web:
    protocol: http
    bind: '{}'
    healthz: /healthz
    routes:
      - pool: app
        filters:
          - rate_limit: {{rate: 5, store: '{store}'}}
",
            free_addr()
        )
    };
    // Nothing listens there: -t does not connect.
    let (code, err) = check_config(&yaml(&format!("redis://{}/0", free_addr())));
    assert_eq!(code, 0, "{err}");
    let (code, err) = check_config(&yaml("127.0.0.1:6379"));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{CONFIG_FILE}:11: listeners.web.routes[0].filters[0].rate_limit.store: `127.0.0.1:6379` is not a Redis URL"
        )),
        "{err}"
    );
    let (code, err) =
        check_config(&yaml("redis://127.0.0.1:6379/0").replace("/healthz", "healthz"));
    assert_eq!(code, 1);
    assert!(
        err.contains("listeners.web.healthz: `healthz` is not a path"),
        "{err}"
    );
}

#[test]
fn a_hung_redis_costs_at_most_the_decision_timeout_then_nothing() {
    let backend = spawn_http_backend("app");
    let redis = RedisServer::start(free_addr());
    let (web, admin) = (free_addr(), free_addr());
    let store = redis.url();
    let _tioga = Tioga::start(
        &format!(
            "admin: {{bind: '{admin}'}}
pools:
  app: {{backends: ['{}']}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    routes:
      - pool: app
        filters:
          - rate_limit: {{rate: 1000, per: 1s, store: '{store}', store_timeout: 200ms}}
",
            backend.addr()
        ),
        &[web, admin],
    );
    let metric = |series: &str| {
        let text = get(admin, "/metrics").expect("GET /metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let up = format!("tioga_rate_limit_store_up{{store=\"{store}\"}}");
    let fallback = format!("tioga_rate_limit_store_fallback_total{{store=\"{store}\"}}");
    get(web, "/").unwrap();
    wait_until(Duration::from_secs(20), "the store up", || {
        metric(&up) == 1.0
    });

    // Redis stops answering (its connections stay open). The decisions that find
    // the store up wait out store_timeout; after 3 failures it is down…
    redis.signal("STOP");
    for _ in 0..3 {
        assert_eq!(get(web, "/").unwrap().status, 200);
    }
    // …and every later decision is local at once: 37 requests that each waited
    // 200 ms would take 7.4 s.
    let start = Instant::now();
    for _ in 0..37 {
        assert_eq!(get(web, "/").unwrap().status, 200);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(3700),
        "37 requests took {took:?}"
    );
    assert_eq!(metric(&up), 0.0);
    assert!(metric(&fallback) >= 37.0);

    redis.signal("CONT");
    wait_until(Duration::from_secs(20), "the store up again", || {
        metric(&up) == 1.0
    });
    assert_eq!(get(web, "/").unwrap().status, 200);
}

#[test]
fn an_instance_started_before_redis_limits_locally_then_shares() {
    let backend = spawn_http_backend("app");
    let redis_addr = free_addr();
    let store = format!("redis://{redis_addr}/0");
    let (web, admin) = (free_addr(), free_addr());
    let tioga = Tioga::start(
        &format!(
            "admin: {{bind: '{admin}'}}
pools:
  app: {{backends: ['{}']}}
listeners:
  web:
    protocol: http
    bind: '{web}'
    routes:
      - pool: app
        filters:
          - rate_limit: {{rate: 1000, per: 1s, store: '{store}'}}
",
            backend.addr()
        ),
        &[web, admin],
    );
    let up = || {
        get(admin, "/metrics")
            .expect("GET /metrics")
            .text()
            .contains(&format!("tioga_rate_limit_store_up{{store=\"{store}\"}} 1"))
    };
    assert_eq!(get(web, "/").unwrap().status, 200, "answered without Redis");
    wait_until(Duration::from_secs(20), "the outage logged", || {
        tioga.log().contains("limiting locally")
    });
    assert!(!up());
    let _redis = RedisServer::start(redis_addr);
    wait_until(Duration::from_secs(20), "the store up", up);
    wait_until(Duration::from_secs(5), "the recovery logged", || {
        tioga.log().contains("reachable, limits are shared")
    });
}
