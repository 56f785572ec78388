//! Runs the real `tioga` binary for a test: writes the YAML config into a fresh temp
//! dir, starts `tioga -c FILE`, sends its stdout and stderr to a log file beside the
//! config, and polls until every listener given accepts TCP (the contract's readiness).
//! The process is killed when the handle drops; if the test is failing, the log is
//! printed then, so a red test shows what Tioga said.
//!
//! In the YAML, `@DIR@` is replaced by the temp dir's path, for files the config must
//! name (`pid_file: @DIR@/tioga.pid`, `upgrade_sock: @DIR@/upgrade.sock`).
//!
//! Ports: use [`free_addr`] for listener addresses. It binds port 0 and releases it, so
//! another process could take the port before Tioga binds it; that race is rare enough
//! for tests and keeps every port ephemeral.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::POLL;
pub use super::process::{free_addr, listening, wait_child};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tioga");
/// File name of the config inside the temp dir, for assertions on error messages.
pub const CONFIG_FILE: &str = "tioga.yaml";
/// How long [`Tioga::start`] waits for the listeners, and [`check_config`] for `-t`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// Makes a temp dir and writes `yaml` (with `@DIR@` expanded) as [`CONFIG_FILE`] in it.
fn write_config(yaml: &str) -> (Arc<TempDir>, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("tioga-test-")
        .tempdir()
        .expect("create temp dir");
    let config = dir.path().join(CONFIG_FILE);
    let text = yaml.replace("@DIR@", &dir.path().display().to_string());
    fs::write(&config, text).expect("write config");
    (Arc::new(dir), config)
}

/// Turns an exit status into one number: the exit code, or 128 + signal.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs `tioga -c FILE -t` on `yaml`; returns its exit code (128 + signal if killed)
/// and its stderr. The file is named [`CONFIG_FILE`].
pub fn check_config(yaml: &str) -> (i32, String) {
    let (dir, config) = write_config(yaml);
    let err_path = dir.path().join("check.stderr");
    let err = File::create(&err_path).expect("create stderr file");
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&config)
        .arg("-t")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("start tioga -t");
    let status = wait_child(&mut child, READY_TIMEOUT);
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(status) => (exit_code(status), stderr),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tioga -t did not exit within {READY_TIMEOUT:?}; stderr:\n{stderr}");
        }
    }
}

/// A running `tioga` process; killed (SIGKILL) and reaped on drop.
pub struct Tioga {
    child: Child,
    dir: Arc<TempDir>,
    config: PathBuf,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

/// Numbers log files so processes sharing a dir (upgrades) keep separate logs.
static NEXT_LOG: AtomicUsize = AtomicUsize::new(0);

impl Tioga {
    /// Writes `yaml` to a temp dir, runs `tioga -c FILE` and waits until every address
    /// in `ready` accepts TCP. Panics, printing the log, if Tioga exits or is not ready
    /// within [`READY_TIMEOUT`].
    pub fn start(yaml: &str, ready: &[SocketAddr]) -> Tioga {
        let mut tioga = Tioga::spawn(yaml, &[]);
        tioga.wait_ready(ready);
        tioga
    }

    /// Writes `yaml` to a temp dir and runs `tioga -c FILE ARGS...` without waiting.
    pub fn spawn(yaml: &str, args: &[&str]) -> Tioga {
        let (dir, config) = write_config(yaml);
        Tioga::spawn_in(dir, config, &[], args)
    }

    /// Runs another `tioga -c FILE ARGS...` on this one's config file and temp dir,
    /// without waiting: the new process of an upgrade (`&["-u"]`).
    pub fn spawn_again(&self, args: &[&str]) -> Tioga {
        Tioga::spawn_in(self.dir.clone(), self.config.clone(), &[], args)
    }

    /// Like [`Tioga::spawn_again`], with the command run through `wrapper` (e.g.
    /// `setpriv --reuid=65534 ...`, to run it as another user).
    pub fn spawn_again_through(&self, wrapper: &[&str], args: &[&str]) -> Tioga {
        Tioga::spawn_in(self.dir.clone(), self.config.clone(), wrapper, args)
    }

    fn spawn_in(dir: Arc<TempDir>, config: PathBuf, wrapper: &[&str], args: &[&str]) -> Tioga {
        let n = NEXT_LOG.fetch_add(1, Ordering::SeqCst);
        let log = dir.path().join(format!("tioga-{n}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let mut command = match wrapper.split_first() {
            None => Command::new(BIN),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
        };
        let child = command
            .arg("-c")
            .arg(&config)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start tioga");
        Tioga {
            child,
            dir,
            config,
            log,
            exited: None,
        }
    }

    /// Polls until every address in `addrs` accepts TCP. Panics, printing the log, if
    /// the process exits first or [`READY_TIMEOUT`] passes.
    pub fn wait_ready(&mut self, addrs: &[SocketAddr]) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pending: Vec<SocketAddr> = addrs.to_vec();
        loop {
            pending.retain(|addr| TcpStream::connect_timeout(addr, POLL * 10).is_err());
            if pending.is_empty() {
                return;
            }
            if let Some(status) = self.wait_exit(Duration::ZERO) {
                panic!(
                    "tioga exited ({status}) before {pending:?} accepted connections; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "tioga: {pending:?} not accepting connections after {READY_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process holds the server side of `client`'s TCP connection, i.e. has
    /// accepted it: a connection still in the listen queue has no socket file (its
    /// `/proc/net/tcp` inode is 0). IPv4 only. Counting descriptors instead races with
    /// the readiness probe's connection, which Tioga may still be closing.
    pub fn has_accepted(&self, client: &TcpStream) -> bool {
        let (Ok(SocketAddr::V4(local)), Ok(SocketAddr::V4(peer))) =
            (client.local_addr(), client.peer_addr())
        else {
            return false;
        };
        // /proc/net/tcp prints an address as the in-memory u32 in hex, then the port.
        let hex = |a: std::net::SocketAddrV4| {
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(a.ip().octets()),
                a.port()
            )
        };
        // The server side's entry: local = the listener's address, remote = the client.
        let (server, remote) = (hex(peer), hex(local));
        let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let inode = table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1) == Some(&server.as_str()) && f.get(2) == Some(&remote.as_str()))
                .then(|| f.get(9).and_then(|i| i.parse::<u64>().ok()))
                .flatten()
        });
        let Some(inode) = inode.filter(|&i| i != 0) else {
            return false;
        };
        let socket = format!("socket:[{inode}]");
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == socket.as_str()))
    }

    /// The temp dir holding the config and logs (`@DIR@` in the YAML).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file passed with `-c`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the config file's contents (`@DIR@` expanded), e.g. before an upgrade.
    pub fn rewrite_config(&self, yaml: &str) {
        let text = yaml.replace("@DIR@", &self.dir().display().to_string());
        fs::write(&self.config, text).expect("rewrite config");
    }

    /// The log file (stdout and stderr together).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Sends a signal by name (`"TERM"`, `"SIGQUIT"`, `"INT"`, ...) with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let name = sig.trim_start_matches("SIG");
        let status = Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {} failed", self.pid());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_child(&mut self.child, timeout);
        }
        self.exited
    }

    /// The exit code of an exited process (128 + signal if killed by one).
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        self.wait_exit(timeout).map(exit_code)
    }
}

impl Drop for Tioga {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- tioga log ({}) ----\n{}---- end of tioga log ----",
                self.log.display(),
                self.log()
            );
        }
    }
}
