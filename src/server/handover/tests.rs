use super::*;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

/// A bundle of two real listening sockets and their addresses.
fn two_listeners() -> (Bundle, Vec<std::net::SocketAddr>) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![a.local_addr().unwrap(), b.local_addr().unwrap()];
    let payload = format!("{} {}", addrs[0], addrs[1]).into_bytes();
    let fds = vec![OwnedFd::from(a), OwnedFd::from(b)];
    (Bundle { payload, fds }, addrs)
}

/// The address a received descriptor listens on (so it is the same socket).
fn addr_of(fd: &OwnedFd) -> std::net::SocketAddr {
    let listener = TcpListener::from(fd.try_clone().unwrap());
    assert_ne!(listener.as_raw_fd(), -1);
    listener.local_addr().unwrap()
}

#[test]
fn a_bundle_of_our_own_uid_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let p = path.to_str().unwrap().to_string();
    let receiver = thread::spawn(move || receive(&p, Duration::from_secs(10)));
    let (bundle, addrs) = two_listeners();
    let stream = connect_within(&path, Duration::from_secs(10))
        .unwrap()
        .unwrap();
    send_bundle(&stream, &bundle).unwrap();
    let got = receiver.join().unwrap().unwrap();
    assert_eq!(got.payload, bundle.payload);
    let got: Vec<_> = got.fds.iter().map(addr_of).collect();
    assert_eq!(got, addrs);
    assert!(!path.exists(), "the upgrade socket is removed after use");
}

#[test]
fn the_receiving_socket_is_closed_to_other_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let p = path.to_str().unwrap().to_string();
    let receiver = thread::spawn(move || receive(&p, Duration::from_millis(300)));
    connect_within(&path, Duration::from_secs(10))
        .unwrap()
        .unwrap();
    let mode = std::fs::symlink_metadata(&path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(matches!(
        receiver.join().unwrap(),
        Err(HandoverError::Nobody(..))
    ));
}

#[test]
fn a_sender_of_another_uid_is_refused_and_waiting_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let p = path.to_str().unwrap().to_string();
    let other = own_uid() + 1;
    let receiver = thread::spawn(move || receive_as(&p, Duration::from_millis(500), other));
    let (bundle, _) = two_listeners();
    let stream = connect_within(&path, Duration::from_secs(10))
        .unwrap()
        .unwrap();
    // The refused sender may or may not manage to write before the receiver drops it.
    let _ = send_bundle(&stream, &bundle);
    assert!(
        matches!(receiver.join().unwrap(), Err(HandoverError::Nobody(..))),
        "nothing is taken from a sender of another uid"
    );
}

#[test]
fn a_successor_of_another_uid_is_refused_with_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let p = path.to_str().unwrap();
    match connect_successor_as(p, Duration::from_secs(5), own_uid() + 1) {
        Err(HandoverError::Refused { peer, own, .. }) => {
            assert_eq!(peer.pid, std::process::id() as i32);
            assert_eq!(peer.uid, own_uid());
            assert_eq!(own, own_uid() + 1);
        }
        other => panic!("expected a refusal, got {:?}", other.map(|s| s.peer)),
    }
}

#[test]
fn nobody_listening_is_reported_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.sock");
    let started = Instant::now();
    let result = connect_successor(path.to_str().unwrap(), Duration::from_millis(200));
    assert!(matches!(result, Err(HandoverError::Nobody(..))));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn the_old_side_passes_on_what_pingora_sends_to_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let successor_side = UnixListener::bind(&path).unwrap();
    let successor = connect_successor(path.to_str().unwrap(), Duration::from_secs(5)).unwrap();
    let relay = Relay::create().unwrap();
    let mode = std::fs::metadata(relay.dir.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the relay directory is private");
    let forwarding = successor.forward_from(relay.path()).unwrap();
    // Pingora's side: connect to its upgrade_sock (the relay) and send.
    let (bundle, addrs) = two_listeners();
    let pingora = connect_within(Path::new(relay.path()), Duration::from_secs(5))
        .unwrap()
        .unwrap();
    send_bundle(&pingora, &bundle).unwrap();
    let (stream, _) = successor_side.accept().unwrap();
    let got = recv_bundle(&stream).unwrap();
    forwarding.join().unwrap();
    assert_eq!(got.payload, bundle.payload);
    assert_eq!(got.fds.iter().map(addr_of).collect::<Vec<_>>(), addrs);
    relay.remove();
}

#[test]
fn the_new_side_delivers_to_pingora_on_the_relay() {
    let relay = Relay::create().unwrap();
    let (bundle, addrs) = two_listeners();
    let delivery = deliver(bundle, &relay);
    // Pingora's side binds the relay path when its bootstrap runs, maybe later.
    let pingora = UnixListener::bind(relay.path()).unwrap();
    let (stream, _) = pingora.accept().unwrap();
    let got = recv_bundle(&stream).unwrap();
    delivery.join().unwrap().unwrap();
    assert_eq!(got.fds.iter().map(addr_of).collect::<Vec<_>>(), addrs);
}

#[test]
fn a_stale_socket_is_replaced_but_a_regular_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    remove_stale_socket(&stale).unwrap();
    assert!(!stale.exists());
    let file = dir.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    remove_stale_socket(&file).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    let err = receive(file.to_str().unwrap(), Duration::from_millis(10)).err();
    assert!(matches!(err, Some(HandoverError::Io(..))), "{err:?}");
}
