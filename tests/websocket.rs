//! WebSocket (HTTP/1.1 Upgrade) through an http listener, with tokio-tungstenite as
//! client and echo server:
//! - 10,000 messages of 1 B to 1 MiB are echoed intact and in order;
//! - a connection idle for longer than the pool's `read_timeout`, while pings flow,
//!   stays open; one where nothing flows for `read_timeout` is closed (the idle rule
//!   in docs/configuration.md);
//! - a zero-downtime upgrade (SIGQUIT + `-u`) while a WebSocket is open lets it finish
//!   within `grace_period` on the old process; one still open when the old process
//!   exits is closed; new connections reach the new process;
//! - fresh WebSockets carry their first message, however fast the backend answers; a
//!   refused upgrade gets the backend's answer; `Upgrade: h2c` never reaches a backend.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Starts an echo server on a runtime of its own: every text or binary message is sent
/// back, pings are answered by tungstenite.
fn spawn_echo() -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_binary() || m.is_text()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, rt)
}

/// The `i`th message: 1 MiB every 1000th, else 1 B to 16 KiB; its bytes say `i`.
fn message(i: usize) -> Vec<u8> {
    let len = match i % 1000 {
        999 => 1024 * 1024,
        _ => 1 + (i * 7919) % 16384,
    };
    (0..len).map(|j| (i.wrapping_mul(31) + j) as u8).collect()
}

fn yaml(echo: SocketAddr, bind: SocketAddr, read_timeout: &str) -> String {
    format!(
        "server:
  threads: 2
  pid_file: @DIR@/t.pid
  upgrade_sock: @DIR@/up.sock
  grace_period: 6s
  graceful_shutdown_timeout: 1s
pools:
  echo: {{backends: [\"{echo}\"], read_timeout: {read_timeout}}}
listeners:
  web:
    protocol: http
    bind: \"{bind}\"
    routes: [{{pool: echo}}]
"
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(bind: SocketAddr) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{bind}/chat"))
        .await
        .expect("WebSocket handshake through Tioga");
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends `text` and waits (bounded) for its echo.
async fn echo_once(ws: &mut Ws, text: &str) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Duration::from_secs(10);
    loop {
        match tokio::time::timeout(deadline, ws.next()).await {
            Err(_) => return Err("no echo within 10 s".into()),
            Ok(None) => return Err("closed".into()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => return Ok(()),
            Ok(Some(Ok(Message::Pong(_)))) => continue,
            Ok(Some(Ok(other))) => return Err(format!("unexpected {other:?}")),
        }
    }
}

#[test]
fn ten_thousand_messages_are_echoed_intact_and_in_order() {
    let (echo, _rt) = spawn_echo();
    let bind = free_addr();
    let _tioga = Tioga::start(&yaml(echo, bind, "10s"), &[bind]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut tx, mut rx) = connect(bind).await.split();
        let writer = tokio::spawn(async move {
            for i in 0..10_000 {
                tx.send(Message::binary(message(i))).await.unwrap();
            }
            tx
        });
        for i in 0..10_000 {
            let m = tokio::time::timeout(Duration::from_secs(30), rx.next())
                .await
                .unwrap_or_else(|_| panic!("echo {i} within 30 s"))
                .expect("open")
                .expect("a message");
            assert!(
                m.into_data() == message(i),
                "message {i} echoed intact, in order"
            );
        }
        let tx = writer.await.unwrap();
        let mut ws = tx.reunite(rx).unwrap();
        ws.close(None).await.unwrap();
    });
}

/// Pingora 0.9's duplex loop could close an upgraded connection right after its 101
/// when the backend answered before the request's empty body was passed on
/// (cloudflare/pingora#946); Tioga proxies upgrades itself. Many fresh connections
/// at once, each checked by its first message, find that moment often.
#[test]
fn every_fresh_websocket_carries_its_first_message() {
    const CONNECTIONS: usize = 400;
    const AT_ONCE: usize = 16;
    let (echo, _rt) = spawn_echo();
    let bind = free_addr();
    let _tioga = Tioga::start(&yaml(echo, bind, "10s"), &[bind]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for batch in 0..CONNECTIONS / AT_ONCE {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..AT_ONCE {
                set.spawn(async move {
                    let mut ws = connect(bind).await;
                    let n = batch * AT_ONCE + i;
                    echo_once(&mut ws, &format!("first {n}"))
                        .await
                        .unwrap_or_else(|e| panic!("connection {n}: first message: {e}"));
                    ws.close(None).await.unwrap();
                });
            }
            while let Some(done) = set.join_next().await {
                done.unwrap();
            }
        }
    });
}

/// A backend that does not switch protocols answers the upgrade request as any other:
/// its status and body reach the client, and the connection then closes.
#[test]
fn a_refused_upgrade_gets_the_backend_answer_and_the_connection_closes() {
    let backend = spawn_http_backend("plain");
    let bind = free_addr();
    let _tioga = Tioga::start(&yaml(backend.addr(), bind, "10s"), &[bind]);
    let mut conn = std::net::TcpStream::connect(bind).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    use std::io::{Read, Write};
    conn.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)
        .expect("the connection closes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("plain"),
        "the backend's body arrives: {answer}"
    );
}

/// `Upgrade: h2c` (retired by RFC 9113) never reaches a backend, which could otherwise
/// take the connection's next requests in h2c, past the routes ("h2c smuggling"): the
/// request is answered as plain HTTP/1.1 and the connection stays HTTP/1.1.
#[test]
fn an_h2c_upgrade_request_reaches_the_backend_as_plain_http1() {
    let backend = spawn_http_backend("plain");
    let bind = free_addr();
    let _tioga = Tioga::start(&yaml(backend.addr(), bind, "10s"), &[bind]);
    let mut conn = Conn::open(bind).unwrap();
    let req = Request::get("/")
        .header("Connection", "Upgrade, HTTP2-Settings")
        .header("Upgrade", "h2c")
        .header("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA");
    let resp = conn.send(&req).unwrap();
    assert_eq!(resp.status, 200);
    for header in ["upgrade", "http2-settings"] {
        assert_eq!(
            resp.header(&format!("x-seen-h-{header}")),
            None,
            "{header} reached the backend"
        );
    }
    let again = conn.send(&Request::get("/again")).unwrap();
    assert_eq!(again.status, 200, "the connection is still HTTP/1.1");
    assert_eq!(again.header("x-seen-path"), Some("/again"));
}

#[test]
fn pings_keep_an_idle_websocket_open_past_read_timeout() {
    let (echo, _rt) = spawn_echo();
    let bind = free_addr();
    // read_timeout 3 s: long enough that the echo backend's first answer comes within it
    // while the other tests of this file load the machine.
    let _tioga = Tioga::start(&yaml(echo, bind, "3s"), &[bind]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = connect(bind).await;
        echo_once(&mut ws, "before").await.unwrap();
        // Over two read_timeouts without a message, a ping every 250 ms.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(7) {
            ws.send(Message::Ping(vec![1])).await.unwrap();
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Pong(_)))) => {}
                other => panic!("a pong while idle: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        echo_once(&mut ws, "after").await.unwrap();

        // Nothing at all for longer than read_timeout: the connection is closed.
        let mut silent = connect(bind).await;
        echo_once(&mut silent, "hello").await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match silent.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a silent WebSocket is closed after read_timeout"
        );
    });
}

#[test]
fn an_open_websocket_finishes_on_the_old_process_during_an_upgrade() {
    let (echo, _rt) = spawn_echo();
    let bind = free_addr();
    let mut old = Tioga::start(&yaml(echo, bind, "30s"), &[bind]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ws = rt.block_on(connect(bind));
    rt.block_on(echo_once(&mut ws, "before the upgrade"))
        .unwrap();
    // Another one its client never closes: drained when grace_period ends.
    let mut lingering = rt.block_on(connect(bind));
    rt.block_on(echo_once(&mut lingering, "lingering")).unwrap();

    let mut new = old.spawn_again(&["-u"]);
    old.signal("QUIT");
    let signalled = Instant::now();
    // Past Pingora's 5 s of hand-over, into grace_period: the old process still
    // carries the connection, message after message.
    rt.block_on(async {
        let mut n = 0;
        while signalled.elapsed() < Duration::from_secs(7) {
            echo_once(&mut ws, &format!("during {n}"))
                .await
                .unwrap_or_else(|e| panic!("message {n} during the upgrade: {e}"));
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ws.close(None).await.unwrap();
    });
    new.wait_ready(&[bind]);
    let code = old.exit_code(Duration::from_secs(15));
    assert_eq!(code, Some(0), "the old process exits once drained");
    let drained = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = lingering.next().await {}
        })
        .await
    });
    assert!(
        drained.is_ok(),
        "the lingering WebSocket is closed with the old process"
    );
    // The new process serves WebSockets.
    rt.block_on(async {
        let mut ws = connect(bind).await;
        echo_once(&mut ws, "after the upgrade").await.unwrap();
    });
}
