//! Real peer programs (Debian's haproxy, nginx) run by a test: a config written into a
//! temp dir, the program started on it in the foreground, waited for until its
//! listeners accept, and killed (by its PID) when the handle drops. Also
//! [`connect_from`]: a client connection from a chosen loopback address (127.0.0.x),
//! so a test can tell the original client from the proxies in between.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// A running peer program; killed and reaped on drop.
pub struct PeerProcess {
    child: Child,
    dir: TempDir,
    name: String,
}

impl PeerProcess {
    /// Writes `config` (with `@DIR@` replaced by the temp dir) to `file` in a fresh
    /// temp dir, runs `program` with `args` (`@CONFIG@` is the config's path, `@DIR@`
    /// the dir) and waits until every address in `ready` accepts TCP.
    pub fn start(
        program: &str,
        file: &str,
        config: &str,
        args: &[&str],
        ready: &[SocketAddr],
    ) -> PeerProcess {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tioga-{program}-"))
            .tempdir()
            .expect("create temp dir");
        let dir_text = dir.path().display().to_string();
        let path = dir.path().join(file);
        fs::write(&path, config.replace("@DIR@", &dir_text)).expect("write config");
        let log = fs::File::create(dir.path().join("output.log")).expect("create log");
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("@CONFIG@", &path.display().to_string())
                    .replace("@DIR@", &dir_text)
            })
            .collect();
        // Debian installs both in /usr/sbin, which a user's PATH may leave out.
        let sbin = Path::new("/usr/sbin").join(program);
        let binary = if sbin.exists() {
            sbin
        } else {
            PathBuf::from(program)
        };
        let child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (is it installed? make test-deps): {e}"));
        let mut peer = PeerProcess {
            child,
            dir,
            name: program.to_string(),
        };
        for addr in ready {
            super::wait_until(
                Duration::from_secs(20),
                &format!("{program} on {addr}"),
                || {
                    if let Ok(Some(status)) = peer.child.try_wait() {
                        panic!("{program} exited ({status}):\n{}", peer.output());
                    }
                    TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
                },
            );
        }
        peer
    }

    /// The program's temp dir (its logs are there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the temp dir, read whole (empty if missing).
    pub fn read(&self, file: &str) -> String {
        fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }

    /// What the program printed.
    pub fn output(&self) -> String {
        self.read("output.log")
    }

    /// The path of a file in the temp dir.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.output());
        }
    }
}

/// A TCP connection to `to` from the loopback address `from` (such as 127.0.0.5).
pub fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};
    let from: std::net::SocketAddrV4 = format!("{from}:0").parse().expect("an IPv4 address");
    let SocketAddr::V4(to) = to else {
        panic!("connect_from takes IPv4 addresses");
    };
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(from))?;
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
    Ok(TcpStream::from(fd))
}
