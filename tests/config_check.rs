//! Config errors, as the contract states them: `tioga -c FILE -t` exits 0 on a valid
//! file, and otherwise non-zero with every problem on stderr, each naming the file, the
//! line and the key path (`tioga.yaml:32: listeners.web.routes[2].pool: ...`). A normal
//! start on a bad file fails the same way before binding anything, and a start on an
//! address already in use fails with a message naming the address.
//!
//! The YAML under test marks each line where a problem is expected with a comment
//! (`# <- name`), so the expected line numbers follow the text.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::*;

/// How long a failing start may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// The 1-based line of the line of `yaml` that carries the marker `# <- NAME`.
fn line_of(yaml: &str, name: &str) -> usize {
    let marker = format!("# <- {name}");
    let mut found = yaml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with(&marker));
    let (i, _) = found.next().unwrap_or_else(|| panic!("no marker {marker}"));
    assert!(found.next().is_none(), "marker {marker} used twice");
    i + 1
}

/// The problem lines of an error output, from the file name on (`tioga.yaml:LINE: ...`),
/// without the directory, which differs between runs.
fn problems(output: &str) -> Vec<String> {
    let prefix = format!("{CONFIG_FILE}:");
    output
        .lines()
        .filter_map(|l| l.find(&prefix).map(|at| l[at..].to_string()))
        .filter(|l| l[prefix.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

/// Asserts that `stderr` has a problem at the marked line with key `path` whose message
/// contains every fragment; returns that message.
fn assert_problem(
    stderr: &str,
    yaml: &str,
    marker: &str,
    path: &str,
    fragments: &[&str],
) -> String {
    let head = format!("{CONFIG_FILE}:{}: {path}: ", line_of(yaml, marker));
    let found = problems(stderr).into_iter().find(|l| l.starts_with(&head));
    let line = found.unwrap_or_else(|| panic!("no problem `{head}...` in:\n{stderr}"));
    for fragment in fragments {
        assert!(line.contains(fragment), "`{line}` lacks `{fragment}`");
    }
    line[head.len()..].to_string()
}

/// A config with one problem of each kind the contract lists; the listener addresses
/// are `web` (also claimed by `dup`), `raw` and `secure`.
fn broken_config(web: SocketAddr, raw: SocketAddr, secure: SocketAddr) -> String {
    format!(
        "server:
  threads: 1
  pid_file: @DIR@/tioga.pid
pools:
  web:
    backends: [\"127.0.0.1:9001\"]
  typo:
    backends: [\"127.0.0.1:9002\"]
    bogus_key: 1 # <- unknown-key
  wrongtype:
    backends: [\"127.0.0.1:9003\"]
    retries: many # <- wrong-type
  empty:
    backends: [] # <- empty
  badaddr:
    backends:
      - 127.0.0.1:notaport # <- address
  baddur:
    backends: [\"127.0.0.1:9004\"]
    connect_timeout: 5 parsecs # <- duration
  hash:
    backends: [\"127.0.0.1:9005\"]
    balance: consistent_hash # <- hash
listeners:
  web:
    protocol: http
    bind: \"{web}\" # <- bind-web
    routes:
      - match: {{path_prefix: /a}}
        pool: web
      - match:
          path_regex: \"(unclosed\" # <- regex
        pool: web
      - match: {{path_prefix: /c}}
        pool: apii # <- route-pool
  raw:
    protocol: tcp
    bind: \"{raw}\"
    pool: dbb # <- tcp-pool
  dup:
    protocol: tcp
    bind: \"{web}\" # <- bind-dup
    pool: web
  secure:
    protocol: http
    bind: \"{secure}\"
    tls:
      cert: /nonexistent/tioga-cert.pem # <- cert
      key: /nonexistent/tioga-key.pem # <- key
    routes:
      - pool: web
"
    )
}

const KNOWN_POOLS: &[&str] = &[
    "badaddr",
    "baddur",
    "empty",
    "hash",
    "typo",
    "web",
    "wrongtype",
];

#[test]
fn valid_config_passes() {
    let yaml = "server:
  threads: 1
pools:
  api:
    backends:
      - 127.0.0.1:9001
      - address: 127.0.0.1:9002
        weight: 3
    balance: consistent_hash
    hash_key: header:x-user
    health_check: {type: http, path: /health, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
    connect_timeout: 1s
    read_timeout: 30s
    retries: 2
  db:
    backends: [\"[::1]:5432\"]
    balance: least_conn
    health_check: {type: tcp, interval: 2s}
listeners:
  web:
    protocol: http
    bind: [127.0.0.1:18080, 127.0.0.1:18081]
    routes:
      - match: {host: \"*.example.com\", path_prefix: /api/, method: [GET, POST]}
        pool: api
      - match: {path_regex: \"^/v[0-9]+/\", headers: {x-canary: \"1\"}}
        pool: api
      - pool: api
  sql:
    protocol: tcp
    bind: 127.0.0.1:15432
    pool: db
";
    let (code, stderr) = check_config(yaml);
    assert_eq!(code, 0, "a valid config was refused:\n{stderr}");
    assert!(problems(&stderr).is_empty(), "{stderr}");
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let yaml = broken_config(free_addr(), free_addr(), free_addr());
    let (code, stderr) = check_config(&yaml);
    eprintln!("tioga -t said:\n{stderr}");
    assert_ne!(code, 0, "a broken config passed");

    let check = |marker: &str, path: &str, fragments: &[&str]| {
        assert_problem(&stderr, &yaml, marker, path, fragments)
    };
    check("unknown-key", "pools.typo.bogus_key", &["unknown key"]);
    check("wrong-type", "pools.wrongtype.retries", &["many"]);
    check("empty", "pools.empty.backends", &["empty"]);
    check(
        "address",
        "pools.badaddr.backends[0]",
        &["127.0.0.1:notaport"],
    );
    check("duration", "pools.baddur.connect_timeout", &["5 parsecs"]);
    check("hash", "pools.hash.balance", &["hash_key"]);
    check(
        "regex",
        "listeners.web.routes[1].match.path_regex",
        &["(unclosed"],
    );
    check(
        "cert",
        "listeners.secure.tls.cert",
        &["/nonexistent/tioga-cert.pem"],
    );
    check(
        "key",
        "listeners.secure.tls.key",
        &["/nonexistent/tioga-key.pem"],
    );
    for (marker, path, pool) in [
        ("route-pool", "listeners.web.routes[2].pool", "apii"),
        ("tcp-pool", "listeners.raw.pool", "dbb"),
    ] {
        let message = check(marker, path, &[pool, "known"]);
        let known = message.split("(known:").nth(1).unwrap_or("");
        for name in KNOWN_POOLS {
            assert!(
                known.contains(name),
                "`{message}` does not list pool {name}"
            );
        }
    }
    // The shared address is reported on one of the two listeners, naming the other.
    let bind = ["web", "dup"].iter().find_map(|l| {
        let head = format!(
            "{CONFIG_FILE}:{}: listeners.{l}.bind: ",
            line_of(&yaml, &format!("bind-{l}"))
        );
        problems(&stderr).into_iter().find(|p| p.starts_with(&head))
    });
    let bind = bind.unwrap_or_else(|| panic!("shared address not reported:\n{stderr}"));
    assert!(
        bind.contains("listeners.web") || bind.contains("listeners.dup"),
        "{bind}"
    );

    assert_eq!(
        problems(&stderr).len(),
        12,
        "one line per problem:\n{stderr}"
    );
}

#[test]
fn problems_in_one_section_are_all_reported() {
    let yaml = "server:
  threads: 1
pools:
  web:
    backends: [] # <- empty
    bogus_key: 1 # <- unknown-key
    connect_timeout: 5 parsecs # <- duration
listeners:
  web:
    protocol: http
    bind: 127.0.0.1:18080
    colour: blue # <- listener-key
    routes:
      - pool: nope # <- route-pool
";
    let (code, stderr) = check_config(yaml);
    assert_ne!(code, 0);
    assert_problem(&stderr, yaml, "empty", "pools.web.backends", &["empty"]);
    assert_problem(
        &stderr,
        yaml,
        "unknown-key",
        "pools.web.bogus_key",
        &["unknown key"],
    );
    assert_problem(
        &stderr,
        yaml,
        "duration",
        "pools.web.connect_timeout",
        &["5 parsecs"],
    );
    assert_problem(
        &stderr,
        yaml,
        "listener-key",
        "listeners.web.colour",
        &["unknown key"],
    );
    assert_problem(
        &stderr,
        yaml,
        "route-pool",
        "listeners.web.routes[0].pool",
        &["nope"],
    );
}

#[test]
fn yaml_syntax_error_names_the_line() {
    let yaml = "pools:
  web:
    backends:
      - 127.0.0.1:9001
   balance: round_robin # <- syntax
listeners:
  raw: {protocol: tcp, bind: 127.0.0.1:15432, pool: web}
";
    let (code, stderr) = check_config(yaml);
    assert_ne!(code, 0, "a file that is not YAML passed");
    let head = format!("{CONFIG_FILE}:{}: ", line_of(yaml, "syntax"));
    let found = problems(&stderr);
    assert!(
        found.len() == 1 && found[0].starts_with(&head),
        "expected one problem starting `{head}`:\n{stderr}"
    );
}

#[test]
fn start_on_a_bad_config_fails_the_same_way_and_binds_nothing() {
    let (web, raw, secure) = (free_addr(), free_addr(), free_addr());
    let yaml = broken_config(web, raw, secure);
    let (_, checked) = check_config(&yaml);
    let expected = problems(&checked);
    assert_eq!(expected.len(), 12, "{checked}");

    let mut tioga = Tioga::spawn(&yaml, &[]);
    let code = tioga.exit_code(EXIT_DEADLINE);
    let log = tioga.log();
    assert!(
        code.is_some_and(|c| c != 0),
        "a start on a broken config gave {code:?}; log:\n{log}"
    );
    assert_eq!(problems(&log), expected, "start and -t report differently");
    for addr in [web, raw, secure] {
        assert!(TcpStream::connect(addr).is_err(), "{addr} is listening");
    }
}

#[test]
fn start_on_an_address_in_use_fails_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let other = free_addr();
    let yaml = format!(
        "server:
  threads: 1
  pid_file: @DIR@/tioga.pid
  upgrade_sock: @DIR@/upgrade.sock
pools:
  web:
    backends: [\"127.0.0.1:9001\"]
listeners:
  raw:
    protocol: tcp
    bind: \"{other}\"
    pool: web
  web:
    protocol: http
    bind: \"{addr}\"
    routes:
      - pool: web
"
    );
    let mut tioga = Tioga::spawn(&yaml, &[]);
    let code = tioga.exit_code(EXIT_DEADLINE);
    let log = tioga.log();
    assert!(
        code.is_some_and(|c| c != 0),
        "a start on a taken address gave {code:?}; log:\n{log}"
    );
    let said = log
        .lines()
        .find(|l| l.contains(&addr.to_string()))
        .unwrap_or_else(|| panic!("no message names {addr}; log:\n{log}"));
    assert!(said.to_lowercase().contains("in use"), "unclear: {said}");
    assert!(TcpStream::connect(other).is_err(), "{other} is listening");
    drop(taken);
}

#[test]
fn a_hostile_config_is_refused_at_once_with_the_reason() {
    // Nested 100,000 levels deep: refused before parsing (parsing it took minutes).
    let deep = format!(
        "pools: {}\"x\"{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (code, err) = check_config(&deep);
    assert_ne!(code, 0);
    assert!(err.contains(":1: nested more than 64 levels"), "{err}");

    // Numbers out of range name the range.
    let (code, err) = check_config(
        "server: {threads: 4294967296}
pools: {p: {backends: [127.0.0.1:9]}}
listeners: {w: {protocol: tcp, bind: 127.0.0.1:0, pool: p}}
",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("server.threads") && err.contains("1 to 1024"),
        "{err}"
    );
    assert!(
        err.contains("listeners.w.bind") && err.contains("port 0"),
        "{err}"
    );
}
