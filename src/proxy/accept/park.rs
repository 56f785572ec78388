//! Idle HTTP/1 connections held small: between requests, and before the first one, a
//! plain connection is only its stream, waiting in a task of Tioga's own.
//!
//! Pingora serves a connection's requests in one loop that starts reading the next
//! request as soon as the previous one ends, so the boxed request future (its header
//! buffer, the proxy's per-request state), the loop's own future and the task that
//! accepted the connection all stay allocated for the whole idle time. Here the
//! accept stack moves each HTTP connection into a small task of its own ([`Served`]),
//! runs each request through [`HttpServerApp::process_new_http`] itself, and between
//! requests waits on the socket holding no buffer ([`readable`]): Pingora's session
//! and request future are made only when the next request's first bytes are there.
//! Coalescing's write buffer is given back for the wait too.
//!
//! What Pingora's loop does between requests is kept: a new session takes the
//! previous one's persistent settings (keep-alive, reuses left); the first session's
//! keep-alive is off when shutdown has begun. A connection waiting for its next
//! request is closed when shutdown begins, as Pingora closes the ones waiting in
//! `read_request`; one waiting for its first request is not (the first-request
//! guard, [`first_request`](super::first_request)). TLS streams keep Pingora's loop:
//! the socket's readiness says nothing of the plaintext rustls may hold.

use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, ReadBuf};

/// An app behind the accept stack: Pingora's [`ServerApp`], and for HTTP apps the
/// per-request entry that lets the stack hold idle connections itself.
#[async_trait]
pub(crate) trait Served: ServerApp + Send + Sync + 'static {
    /// Whether the app serves HTTP ([`Served::request`]).
    const HTTP: bool = false;

    /// Serves one request of `session`, handing back the stream if it may be reused.
    async fn request(
        self: &Arc<Self>,
        _session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        None
    }

    /// How many requests a connection may carry (`None`: no limit).
    fn keepalive_request_limit(&self) -> Option<u32> {
        None
    }
}

#[async_trait]
impl<T: HttpServerApp + Send + Sync + 'static> Served for T {
    const HTTP: bool = true;

    async fn request(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.process_new_http(session, shutdown).await
    }

    fn keepalive_request_limit(&self) -> Option<u32> {
        self.server_options()
            .and_then(|o| o.keepalive_request_limit)
    }
}

/// Resolves once the client has sent bytes, or closed: a read of nothing, which
/// waits on the socket's readiness like any read but needs no buffer and takes no
/// bytes. Plain-TCP streams only (a TLS stream would take it for the end of input).
pub(super) async fn readable<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> io::Result<()> {
    let mut nothing = ReadBuf::new(&mut []);
    poll_fn(|cx| Pin::new(&mut *stream).poll_read(cx, &mut nothing)).await
}

/// Serves a plain HTTP/1 connection's requests, holding it small between them
/// (module docs). The client's first bytes are there already.
pub(super) async fn serve<A: Served>(
    app: &Arc<A>,
    mut stream: pingora_core::protocols::Stream,
    shutdown: &mut ShutdownWatch,
) {
    let mut settings = None;
    loop {
        // The session is made and moved into the (boxed) request future outside this
        // future's state, which therefore stays a few words while it waits.
        let Some(reused) = request(app, stream, settings, shutdown).await else {
            return;
        };
        let (next, next_settings) = reused.consume();
        (stream, settings) = (next, next_settings);
        super::coalesce::release(&*stream);
        if !next_request(&mut stream, shutdown).await {
            return;
        }
    }
}

/// One request on `stream`: a new session with the previous one's persistent
/// settings (or, for the first, what Pingora's own loop sets), served by the app.
fn request<'a, A: Served>(
    app: &'a Arc<A>,
    stream: pingora_core::protocols::Stream,
    settings: Option<HttpPersistentSettings>,
    shutdown: &'a ShutdownWatch,
) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'a>> {
    let mut session = ServerSession::new_http1(stream);
    match settings {
        Some(settings) => settings.apply_to_session(&mut session),
        None => {
            session.set_keepalive((!*shutdown.borrow()).then_some(60));
            session.set_keepalive_reuses_remaining(app.keepalive_request_limit());
        }
    }
    app.request(session, shutdown)
}

/// Waits for the next request's first bytes (true), or for shutdown (false) —
/// whichever comes first; bytes already there win.
async fn next_request(
    stream: &mut pingora_core::protocols::Stream,
    shutdown: &mut ShutdownWatch,
) -> bool {
    let closing = async {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                // No shutdown can come any more.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        biased;
        r = readable(stream) => r.is_ok(),
        () = closing => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_core::protocols::l4::stream::Stream as L4Stream;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (pingora_core::protocols::Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Box::new(L4Stream::from(server.unwrap().0)), client.unwrap())
    }

    #[tokio::test]
    async fn readable_waits_for_bytes_and_leaves_them() {
        let (mut server, mut client) = pair().await;
        let early = tokio::time::timeout(Duration::from_millis(50), readable(&mut server)).await;
        assert!(early.is_err(), "nothing sent yet");
        client.write_all(b"GET").await.unwrap();
        readable(&mut server).await.unwrap();
        let mut got = [0u8; 3];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET");
    }

    #[tokio::test]
    async fn a_waiting_connection_closes_on_shutdown_and_bytes_win_over_it() {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let (mut server, _client) = pair().await;
        let waiting = tokio::spawn(async move { next_request(&mut server, &mut rx).await });
        tokio::task::yield_now().await;
        tx.send(true).unwrap();
        assert!(
            !waiting.await.unwrap(),
            "shutdown closes an idle connection"
        );

        let mut rx = tx.subscribe();
        let (mut server, _c) = pair().await;
        assert!(
            !next_request(&mut server, &mut rx).await,
            "shutdown already begun"
        );

        let (mut server, mut client) = pair().await;
        client.write_all(b"GET").await.unwrap();
        readable(&mut server).await.unwrap();
        let mut rx = tx.subscribe();
        assert!(
            next_request(&mut server, &mut rx).await,
            "a request already there"
        );
    }
}
