//! The upgrade socket hands listening sockets only to Tioga's own user.
//!
//! An operator who puts `server.upgrade_sock` in a directory other users can write
//! (as `/tmp` was by default) must not lose the listening sockets to a local process of
//! another uid that listens on the path before the real `tioga -u`: on SIGQUIT the old
//! process checks the waiting peer (`SO_PEERCRED`), refuses it, logs who it was and
//! keeps serving; a real upgrade afterwards still works. The other user is `nobody`,
//! through `setpriv`, which needs root; elsewhere the same checks are covered by the
//! unit tests of `src/server/handover.rs`.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

const NOBODY: &str = "65534";

fn config(listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "server:
  threads: 1
  pid_file: @DIR@/t.pid
  upgrade_sock: @DIR@/up.sock
  grace_period: 1s
  graceful_shutdown_timeout: 1s
pools:
  web:
    backends: [\"{backend}\"]
listeners:
  web:
    protocol: http
    bind: \"{listen}\"
    routes:
      - pool: web
"
    )
}

/// Whether this test can run a process as another user.
fn can_switch_user() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    root && Command::new("setpriv").arg("--version").output().is_ok()
}

#[test]
fn a_successor_of_another_uid_gets_no_sockets_and_the_old_process_keeps_serving() {
    if !can_switch_user() {
        eprintln!("skipped: needs root and setpriv to run a process as uid {NOBODY}");
        return;
    }
    let a = spawn_http_backend("a");
    let listen = free_addr();
    let mut old = Tioga::start(&config(listen, a.addr()), &[listen]);
    // A shared directory, as /tmp is: anyone may create the socket there, and the
    // other user must be able to read the config.
    for path in [old.dir(), old.config_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let sock = old.dir().join("up.sock");
    let setpriv = [
        "setpriv",
        "--reuid",
        NOBODY,
        "--regid",
        NOBODY,
        "--clear-groups",
    ];
    let mut thief = old.spawn_again_through(&setpriv, &["-u"]);
    wait_until(Duration::from_secs(10), "the other user's socket", || {
        std::fs::symlink_metadata(&sock).is_ok()
    });

    old.signal("QUIT");
    wait_until(Duration::from_secs(15), "the old process's refusal", || {
        old.log().contains("SIGQUIT ignored")
    });
    let log = old.log();
    assert!(
        log.contains(&format!("uid {NOBODY}")),
        "the refusal names who asked:\n{log}"
    );
    assert!(old.is_running(), "the old process keeps running");
    assert_eq!(get(listen, "/").unwrap().status, 200);
    let code = thief.exit_code(Duration::from_secs(15));
    assert_ne!(code, Some(0), "the other user's process got no sockets");
    assert!(
        !thief.log().contains("received"),
        "the other user's process received sockets:\n{}",
        thief.log()
    );
    assert_eq!(get(listen, "/").unwrap().status, 200, "still served");

    // The real upgrade still goes through.
    let mut new = old.spawn_again(&["-u"]);
    old.signal("QUIT");
    assert_eq!(old.exit_code(Duration::from_secs(20)), Some(0));
    assert!(new.is_running(), "{}", new.log());
    new.wait_ready(&[listen]);
    assert_eq!(get(listen, "/").unwrap().status, 200);
}
