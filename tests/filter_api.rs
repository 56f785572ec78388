//! The filter extension API through its worked example, `examples/api_key.rs`: the
//! example binary (Tioga plus a user filter registered as `api_key`) guards a route with
//! 401 until the request carries a configured key, then proxies it. And config errors
//! for filters: the plain `tioga -t` names an unregistered filter with its key path and
//! line and lists the known ones; bad settings of built-in filters are each reported at
//! their own key path and line, all in one run; the example's `-t` reports bad
//! `api_key` settings the same way.
//!
//! The example is built with `cargo build --example api_key` into the directory of the
//! `tioga` binary under test, and run by [`Example`], a small runner like
//! `common::Tioga` for another binary.

mod common;

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// How long building the example may take (it may have to compile the crate).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the example may take to listen, or to finish `-t`.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Variables cargo sets for a test binary but not for a `cargo build` run from a shell.
const TEST_ONLY_ENV: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
];

/// Start of every config: one worker thread, files in the test's temp dir.
const SERVER: &str =
    "server: {threads: 1, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}\n";

/// Builds `examples/api_key.rs` once per test run and returns the binary's path: the
/// `examples/` folder beside the `tioga` binary, in the same profile. A failed build
/// fails every test that needs the example, without building again.
fn example_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build_example) {
        Ok(bin) => bin,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `cargo build --example api_key` in the package dir, with a deadline.
fn build_example() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_BIN_EXE_tioga"))
        .parent()
        .expect("the tioga binary's dir");
    let mut args = vec!["build", "--example", "api_key"];
    if dir.file_name().is_some_and(|n| n == "release") {
        args.push("--release");
    }
    let mut cargo = Command::new(env!("CARGO"));
    // Drop what cargo sets for a running test, or build scripts that watch these (ring
    // watches CARGO_MANIFEST_DIR) would rebuild, here and again in the next plain build.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if TEST_ONLY_ENV.contains(&name.as_ref())
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
        {
            cargo.env_remove(name.as_ref());
        }
    }
    let mut child = cargo
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run cargo build --example api_key: {e}"))?;
    let Some(status) = wait_child(&mut child, BUILD_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "cargo build --example api_key took over {BUILD_TIMEOUT:?}"
        ));
    };
    if !status.success() {
        return Err(format!("cargo build --example api_key failed: {status}"));
    }
    let bin = dir.join("examples").join("api_key");
    match bin.is_file() {
        true => Ok(bin),
        false => Err(format!("{} was not built", bin.display())),
    }
}

/// Writes `yaml` (with `@DIR@` expanded) as [`CONFIG_FILE`] in a new temp dir.
fn write_config(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("tioga-filter-api-")
        .tempdir()
        .expect("create temp dir");
    let config = dir.path().join(CONFIG_FILE);
    let text = yaml.replace("@DIR@", &dir.path().display().to_string());
    fs::write(&config, text).expect("write config");
    (dir, config)
}

/// Runs `BIN -c FILE -t` on `yaml`; returns its exit code (-1 if killed by a signal)
/// and stderr.
fn check_with(bin: &Path, yaml: &str) -> (i32, String) {
    let (dir, config) = write_config(yaml);
    let err_path = dir.path().join("check.stderr");
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .arg("-t")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).expect("create stderr file"))
        .spawn()
        .expect("start -t");
    let status = wait_child(&mut child, RUN_TIMEOUT);
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{} -t did not exit in {RUN_TIMEOUT:?}:\n{stderr}",
            bin.display()
        );
    };
    (status.code().unwrap_or(-1), stderr)
}

/// The example binary running on a config; killed on drop, its log printed if the
/// test is failing.
struct Example {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Example {
    /// Runs the example on `yaml` and waits until `ready` accepts TCP.
    fn start(yaml: &str, ready: SocketAddr) -> Example {
        let (dir, config) = write_config(yaml);
        let log = dir.path().join("api_key.log");
        let out = File::create(&log).expect("create log file");
        let child = Command::new(example_bin())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log file"))
            .stderr(out)
            .spawn()
            .expect("start the api_key example");
        let mut example = Example {
            child,
            log,
            _dir: dir,
        };
        wait_until(RUN_TIMEOUT, "the api_key example to listen", || {
            if let Ok(Some(status)) = example.child.try_wait() {
                panic!("the api_key example exited ({status})");
            }
            TcpStream::connect_timeout(&ready, Duration::from_millis(200)).is_ok()
        });
        example
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- api_key example log ----\n{log}---- end of log ----");
        }
    }
}

/// The 1-based number of the only line of `yaml` containing `needle`.
fn line_of(yaml: &str, needle: &str) -> usize {
    let found: Vec<usize> = yaml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "{needle:?} must be on exactly one line");
    found[0]
}

/// Asserts that `stderr` reports `message` for key `path` on the line of `needle`.
fn assert_reported(stderr: &str, yaml: &str, needle: &str, path: &str, message: &str) {
    let at = format!("{CONFIG_FILE}:{}: {path}: ", line_of(yaml, needle));
    let found = stderr
        .lines()
        .any(|l| l.contains(&at) && l.contains(message));
    assert!(found, "no `{at}...{message}...` in:\n{stderr}");
}

/// A config with one HTTP listener on `addr` in front of pool `demo` = `backend`;
/// `routes` is the YAML of the route list, indented by 6 spaces.
fn config(addr: SocketAddr, backend: SocketAddr, routes: &str) -> String {
    format!(
        "{SERVER}pools:\n  demo:\n    backends: ['{backend}']\n\
         listeners:\n  api:\n    protocol: http\n    bind: '{addr}'\n    routes:\n{routes}"
    )
}

/// The routes of `conf/api_key.yaml`, plus one using another header.
const API_KEY_ROUTES: &str = "      - match: {path: /public}
        pool: demo
      - match: {path_prefix: /alt}
        pool: demo
        filters:
          - api_key: {keys: [s3cret], header: x-token}
      - pool: demo
        filters:
          - api_key: {keys: [k1, k2]}
          - set_response_headers: {x-authenticated: \"yes\"}
";

#[test]
fn api_key_example_answers_401_until_a_key_is_given() {
    let backend = spawn_http_backend("a");
    let addr = free_addr();
    let _example = Example::start(&config(addr, backend.addr(), API_KEY_ROUTES), addr);
    let send = |req: Request| req.send(addr).expect("request through the example");

    let missing = send(Request::get("/private"));
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("ApiKey"));
    let wrong = send(Request::get("/private").header("x-api-key", "k3"));
    assert_eq!(wrong.status, 401);
    let other_header = send(Request::get("/private").header("x-token", "k1"));
    assert_eq!(other_header.status, 401);
    assert_eq!(
        backend.requests(),
        0,
        "an unauthenticated request was proxied"
    );

    for key in ["k1", "k2"] {
        let ok = send(Request::get("/private?x=1").header("x-api-key", key));
        assert_eq!(ok.status, 200, "key {key}: {}", ok.text());
        assert_eq!(ok.header("x-backend"), Some("a"));
        assert_eq!(ok.header("x-seen-path"), Some("/private?x=1"));
        assert_eq!(ok.header("x-seen-h-x-api-key"), Some(key));
        assert_eq!(ok.header("x-authenticated"), Some("yes"));
    }
    assert_eq!(backend.requests(), 2);

    // A route without the filter is open; `header:` moves the key elsewhere.
    let public = send(Request::get("/public"));
    assert_eq!(
        (public.status, public.header("x-authenticated")),
        (200, None)
    );
    let alt = send(Request::get("/alt").header("x-api-key", "s3cret"));
    assert_eq!(alt.status, 401);
    let alt = send(Request::get("/alt").header("x-token", "s3cret"));
    assert_eq!((alt.status, alt.header("x-backend")), (200, Some("a")));
}

#[test]
fn plain_tioga_names_an_unregistered_filter_and_lists_the_known_ones() {
    let yaml = config(free_addr(), free_addr(), API_KEY_ROUTES);
    let (code, stderr) = check_config(&yaml);
    assert_ne!(code, 0, "tioga -t accepted an unknown filter");
    assert_reported(
        &stderr,
        &yaml,
        "api_key: {keys: [s3cret]",
        "listeners.api.routes[1].filters[0].api_key",
        "unknown filter `api_key`",
    );
    assert_reported(
        &stderr,
        &yaml,
        "api_key: {keys: [k1, k2]}",
        "listeners.api.routes[2].filters[0].api_key",
        "unknown filter `api_key`",
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("routes[2].filters[0].api_key"))
        .unwrap();
    for known in ["rate_limit", "strip_prefix", "redirect", "allow", "deny"] {
        assert!(line.contains(known), "`{known}` not listed in: {line}");
    }
    // The filter after the unknown one was still checked and is fine.
    assert!(!stderr.contains("filters[1]"), "{stderr}");
}

#[test]
fn bad_builtin_filter_settings_are_each_reported_at_their_key() {
    let routes = "      - match: {path: /a}
        pool: demo
        filters:
          - rate_limit: {rate: lots}
          - allow: [10.0.0.0/8, nope]
      - match: {path: /b}
        pool: demo
        filters:
          - set_request_headers: {x-ok: '1'}
          - rewrite_path: {regex: \"(\", replace: x}
          - redirect: {to: /x, status: 200}
          - rate_limit: {rate: 1, per: soon}
          - strip_prefix: no-slash
          - deny: []
";
    let mut yaml = config(free_addr(), free_addr(), routes);
    yaml.push_str(&format!(
        "  raw:\n    protocol: tcp\n    bind: '{}'\n    pool: demo\n    filters:\n      - set_response_headers: {{x-a: b}}\n",
        free_addr()
    ));
    let (code, stderr) = check_config(&yaml);
    assert_ne!(code, 0, "tioga -t accepted bad filter settings");
    let r0 = "listeners.api.routes[0].filters";
    let r1 = "listeners.api.routes[1].filters";
    let cases = [
        ("rate: lots", format!("{r0}[0].rate_limit.rate"), "lots"),
        ("nope]", format!("{r0}[1].allow[1]"), "`nope` is not an IP"),
        (
            "regex: \"(\"",
            format!("{r1}[1].rewrite_path.regex"),
            "regex",
        ),
        ("status: 200", format!("{r1}[2].redirect"), "200"),
        ("per: soon", format!("{r1}[3].rate_limit.per"), "soon"),
        ("no-slash", format!("{r1}[4].strip_prefix"), "no-slash"),
        ("deny: []", format!("{r1}[5].deny"), "empty"),
        (
            "x-a: b",
            "listeners.raw.filters[0].set_response_headers".into(),
            "HTTP routes only",
        ),
    ];
    for (needle, path, message) in &cases {
        assert_reported(&stderr, &yaml, needle, path, message);
    }
    assert!(
        !stderr.contains("filters[0].set_request_headers"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("has {} problem(s)", cases.len())),
        "expected exactly {} problems:\n{stderr}",
        cases.len()
    );
}

#[test]
fn api_key_example_check_reports_its_own_settings_errors() {
    let routes = "      - match: {path: /a}
        pool: demo
        filters:
          - api_key: {keys: []}
      - match: {path: /b}
        pool: demo
        filters:
          - rate_limit: {rate: 3}
          - api_key: {keys: [k1], hdr: x-key}
      - match: {path: /c}
        pool: demo
        filters:
          - api_key: {keys: k1}
          - api_key: {keys: [k1], header: \"bad header\"}
      - pool: demo
        filters:
          - api_key: {keys: [k1, k2]}
";
    let bin = example_bin();
    let yaml = config(free_addr(), free_addr(), routes);
    let (code, stderr) = check_with(bin, &yaml);
    assert_ne!(code, 0, "the example's -t accepted bad api_key settings");
    let r = "listeners.api.routes";
    assert_reported(
        &stderr,
        &yaml,
        "keys: []",
        &format!("{r}[0].filters[0].api_key"),
        "`keys` is empty",
    );
    assert_reported(
        &stderr,
        &yaml,
        "hdr: x-key",
        &format!("{r}[1].filters[1].api_key.hdr"),
        "unknown field `hdr`",
    );
    assert_reported(
        &stderr,
        &yaml,
        "{keys: k1}",
        &format!("{r}[2].filters[0].api_key.keys"),
        "invalid type",
    );
    assert_reported(
        &stderr,
        &yaml,
        "bad header",
        &format!("{r}[2].filters[1].api_key"),
        "not a valid header name",
    );
    assert!(stderr.contains("has 4 problem(s)"), "{stderr}");

    // The same binary accepts a valid file using both its own and built-in filters.
    let good = config(free_addr(), free_addr(), API_KEY_ROUTES);
    let (code, stderr) = check_with(bin, &good);
    assert_eq!(code, 0, "the example's -t rejected a valid file:\n{stderr}");
}
