//! The hand-over of listening sockets during an upgrade, with the peer checks that
//! Pingora's own transfer lacks.
//!
//! Pingora's transfer connects to (old process) or listens on (new process) its
//! `upgrade_sock` and trusts whoever is at the other end; the socket it creates is mode
//! 0666. A local process of another user that listens on the path first would receive
//! the live listening sockets, and one that connects first could plant its own. So
//! Pingora never touches the operator's `upgrade_sock`: it is given a socket in a
//! private directory of this process (a [`Relay`]), and Tioga carries the sockets
//! between that relay and the operator's path itself, over a connection whose peer
//! (`SO_PEERCRED`) has Tioga's own effective uid. A peer of another uid gets nothing,
//! and the process logs who it was.
//!
//! The wire format is Pingora's (one message: the listeners' names, the descriptors
//! as `SCM_RIGHTS`), so either side may still be a Tioga without these checks.

use rustix::net::{
    recvmsg, sendmsg, sockopt, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Pingora's limits: its names buffer and its receive side's descriptor count.
const MAX_PAYLOAD: usize = 2048;
const MAX_FDS: usize = 32;
/// Between two connection attempts, or two accept attempts, while waiting.
const POLL: Duration = Duration::from_millis(20);

/// Why a hand-over did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoverError {
    /// Nothing listened on, or connected to, the upgrade socket in time.
    #[error("no process {0} on {1} within {2:?}")]
    Nobody(&'static str, String, Duration),
    /// The peer runs as another user.
    #[error("refused {peer} on {path}: not uid {own}, Tioga's own")]
    Refused {
        /// Who it was.
        peer: Peer,
        /// The upgrade socket.
        path: String,
        /// Tioga's effective uid.
        own: u32,
    },
    /// A socket operation failed.
    #[error("{0}: {1}")]
    Io(String, io::Error),
}

/// The other end of a Unix socket connection, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    pid: i32,
    uid: u32,
    gid: u32,
    /// The peer's executable, when `/proc` shows it.
    exe: Option<PathBuf>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} (uid {}, gid {}", self.pid, self.uid, self.gid)?;
        if let Some(exe) = &self.exe {
            write!(f, ", {}", exe.display())?;
        }
        f.write_str(")")
    }
}

/// The listening sockets in transit: Pingora's names payload and the descriptors.
pub(crate) struct Bundle {
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Bundle {
    /// How many sockets it carries.
    pub(crate) fn len(&self) -> usize {
        self.fds.len()
    }
}

/// A private rendezvous between Pingora's transfer and this module: a socket path in
/// a fresh directory only this process's user can enter (mode 0700).
pub(crate) struct Relay {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Relay {
    /// Creates the private directory.
    pub(crate) fn create() -> io::Result<Relay> {
        let dir = tempfile::Builder::new()
            .prefix("tioga-handover-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?;
        let path = dir.path().join("pingora.sock");
        Ok(Relay { dir, path })
    }

    /// The path to give Pingora as its `upgrade_sock`.
    pub(crate) fn path(&self) -> &str {
        self.path.to_str().unwrap_or_default()
    }

    /// Removes the directory (also done on drop, which `process::exit` skips).
    pub(crate) fn remove(self) {
        let _ = self.dir.close();
    }
}

/// The uid every peer must have.
fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Who is at the other end of `stream`.
fn peer_of(stream: &UnixStream) -> io::Result<Peer> {
    let cred = sockopt::socket_peercred(stream)?;
    let pid = cred.pid.as_raw_nonzero().get();
    Ok(Peer {
        pid,
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
    })
}

/// Accepts `stream` only when its peer runs as `uid`.
fn check_peer(stream: &UnixStream, path: &str, uid: u32) -> Result<Peer, HandoverError> {
    let peer =
        peer_of(stream).map_err(|e| HandoverError::Io(format!("SO_PEERCRED on {path}"), e))?;
    if peer.uid != uid {
        return Err(HandoverError::Refused {
            peer,
            path: path.to_string(),
            own: uid,
        });
    }
    Ok(peer)
}

/// Reads one bundle (Pingora sends everything in one message).
fn recv_bundle(stream: &UnixStream) -> io::Result<Bundle> {
    let mut payload = vec![0u8; MAX_PAYLOAD];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut payload)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    payload.truncate(msg.bytes);
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the message carried no sockets",
        ));
    }
    Ok(Bundle { payload, fds })
}

/// Writes `bundle` as one message.
fn send_bundle(stream: &UnixStream, bundle: &Bundle) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = bundle.fds.iter().map(AsFd::as_fd).collect();
    let rights = SendAncillaryMessage::ScmRights(&fds);
    let mut space = vec![MaybeUninit::uninit(); rights.size()];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(rights);
    let sent = sendmsg(
        stream,
        &[IoSlice::new(&bundle.payload)],
        &mut control,
        SendFlags::empty(),
    )?;
    if sent != bundle.payload.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}

/// Connects to `path`, retrying while nothing listens there, until `wait` has passed.
fn connect_within(path: &Path, wait: Duration) -> io::Result<Option<UnixStream>> {
    let deadline = Instant::now() + wait;
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return Ok(Some(stream)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                thread::sleep(POLL);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Accepts one connection on `listener` (non-blocking) before `deadline`.
fn accept_before(listener: &UnixListener, deadline: Instant) -> io::Result<Option<UnixStream>> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                return Ok(Some(stream));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                thread::sleep(POLL);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The old process's side, once a successor of Tioga's uid is connected: takes what
/// Pingora sends to the relay and passes it on.
pub(crate) struct Successor {
    stream: UnixStream,
    /// Who it is.
    pub(crate) peer: Peer,
}

/// Waits up to `wait` for a process listening on `path` and connects to it; refuses
/// (and drops the connection) when it runs as another user.
pub(crate) fn connect_successor(path: &str, wait: Duration) -> Result<Successor, HandoverError> {
    connect_successor_as(path, wait, own_uid())
}

fn connect_successor_as(path: &str, wait: Duration, uid: u32) -> Result<Successor, HandoverError> {
    let io = |e| HandoverError::Io(format!("connecting to {path}"), e);
    let stream = connect_within(Path::new(path), wait)
        .map_err(io)?
        .ok_or_else(|| HandoverError::Nobody("listening", path.to_string(), wait))?;
    let peer = check_peer(&stream, path, uid)?;
    Ok(Successor { stream, peer })
}

impl Successor {
    /// Listens on `relay` for Pingora's transfer and forwards it to the successor on a
    /// thread of its own (Pingora sends from the thread that runs the signal handler).
    pub(crate) fn forward_from(
        self,
        relay_path: &str,
    ) -> Result<thread::JoinHandle<()>, HandoverError> {
        let listener = UnixListener::bind(relay_path)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| HandoverError::Io(format!("listening on {relay_path}"), e))?;
        let relay_path = relay_path.to_string();
        Ok(thread::spawn(move || {
            let forwarded = (|| {
                let deadline = Instant::now() + Duration::from_secs(10);
                let pingora = accept_before(&listener, deadline)
                    .map_err(|e| HandoverError::Io(format!("accepting on {relay_path}"), e))?
                    .ok_or_else(|| {
                        HandoverError::Nobody(
                            "sending",
                            relay_path.clone(),
                            Duration::from_secs(10),
                        )
                    })?;
                check_peer(&pingora, &relay_path, own_uid())?;
                let bundle = recv_bundle(&pingora)
                    .map_err(|e| HandoverError::Io(format!("receiving on {relay_path}"), e))?;
                send_bundle(&self.stream, &bundle)
                    .map_err(|e| HandoverError::Io(format!("sending to {}", self.peer), e))?;
                Ok::<_, HandoverError>(bundle.len())
            })();
            match forwarded {
                Ok(n) => log::info!("upgrade: handed {n} listening socket(s) to {}", self.peer),
                Err(e) => log::error!("upgrade: hand-over to {} failed: {e}", self.peer),
            }
            let _ = std::fs::remove_file(&relay_path);
        }))
    }
}

/// The new process's side: listens on `path` (mode 0600) for up to `wait` and returns
/// the first bundle sent by a process of Tioga's uid; connections from other users
/// are logged and dropped.
pub(crate) fn receive(path: &str, wait: Duration) -> Result<Bundle, HandoverError> {
    receive_as(path, wait, own_uid())
}

fn receive_as(path: &str, wait: Duration, uid: u32) -> Result<Bundle, HandoverError> {
    let io = |what: &str, e| HandoverError::Io(format!("{what} {path}"), e);
    remove_stale_socket(Path::new(path)).map_err(|e| io("replacing", e))?;
    let listener = UnixListener::bind(path).map_err(|e| io("listening on", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("restricting", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io("listening on", e))?;
    let deadline = Instant::now() + wait;
    let result = loop {
        let Some(stream) = accept_before(&listener, deadline).map_err(|e| io("accepting on", e))?
        else {
            break Err(HandoverError::Nobody("sending", path.to_string(), wait));
        };
        match check_peer(&stream, path, uid) {
            Ok(peer) => match recv_bundle(&stream) {
                Ok(bundle) => {
                    log::info!(
                        "upgrade: received {} listening socket(s) from {peer}",
                        bundle.len()
                    );
                    break Ok(bundle);
                }
                Err(e) => log::error!("upgrade: nothing usable from {peer} on {path}: {e}"),
            },
            Err(e) => log::error!("upgrade: {e}"),
        }
    };
    let _ = std::fs::remove_file(path);
    result
}

/// A socket file left at `path` (by a process that died) is removed; anything else
/// that is not a socket is left alone, and binding reports it.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        _ => Ok(()),
    }
}

/// Hands `bundle` to Pingora's receiving side on `relay` (which Pingora binds when its
/// bootstrap runs), from a thread: the caller runs that bootstrap.
pub(crate) fn deliver(bundle: Bundle, relay: &Relay) -> thread::JoinHandle<io::Result<()>> {
    let path = relay.path.clone();
    thread::spawn(move || {
        let stream = connect_within(&path, Duration::from_secs(10))?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "Pingora did not listen on the relay",
            )
        })?;
        send_bundle(&stream, &bundle)
    })
}

#[cfg(test)]
mod tests;
