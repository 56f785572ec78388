//! The L4 listener: a Pingora `ServerApp` that forwards raw TCP connections to a pool.
//!
//! Each connection gets a backend (the client address is the `consistent_hash` key),
//! connecting within `connect_timeout` and retrying another backend on failure. With no
//! eligible backend the client connection is closed at once. Bytes are then copied
//! both ways; an EOF from one side is passed on as a half-close, and the connection is
//! closed when neither side has sent anything for `read_timeout`.

use crate::filter::{Context, Decision, Filter};
use crate::routing::key::ip_key;
use crate::upstream::{Chosen, Pool};
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read per copy step, per direction.
const COPY_BUFFER: usize = 32 * 1024;

/// One TCP listener's proxy logic.
pub struct TcpProxy {
    /// The listener's name.
    pub listener: String,
    /// The pool it forwards to.
    pub pool: Arc<Pool>,
    /// Connection filters, in order.
    pub filters: Box<[Arc<dyn Filter>]>,
}

#[async_trait]
impl ServerApp for TcpProxy {
    async fn process_new(
        self: &Arc<Self>,
        client: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = client
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        if !self.admit(peer).await {
            return None; // dropping `client` closes it
        }
        let Some((upstream, chosen)) = self.connect(peer).await else {
            return None; // dropping `client` closes it at once
        };
        let read_timeout = self.pool.spec.read_timeout;
        if let Err(e) = relay(client, upstream, read_timeout).await {
            log::debug!(
                "listener {}: connection to {} ended: {e}",
                self.listener,
                chosen.addr
            );
        }
        None
    }
}

impl TcpProxy {
    /// Runs the connection filters; false when one refuses the connection.
    async fn admit(&self, client: Option<SocketAddr>) -> bool {
        let mut state = http::Extensions::new();
        for f in self.filters.iter() {
            let mut ctx = Context::new(
                &self.listener,
                None,
                self.pool.name(),
                client,
                false,
                &mut state,
            );
            match f.connection(&mut ctx).await {
                Ok(Decision::Continue) => {}
                Ok(Decision::Respond(r)) => {
                    log::debug!(
                        "listener {}: connection from {client:?} refused ({})",
                        self.listener,
                        r.status
                    );
                    return false;
                }
                Err(e) => {
                    log::warn!("listener {}: connection filter failed: {e}", self.listener);
                    return false;
                }
            }
        }
        true
    }

    /// Connects to a backend, retrying others on failure.
    async fn connect(&self, client: Option<SocketAddr>) -> Option<(TcpStream, Chosen)> {
        let pool = &self.pool;
        let key = if pool.uses_key() {
            ip_key(client.map(|a| a.ip()))
        } else {
            Vec::new()
        };
        let mut tried = Vec::new();
        loop {
            let Some(chosen) = pool.select(&key, &tried) else {
                log::warn!(
                    "listener {}: pool {} has no eligible backend",
                    self.listener,
                    pool.name()
                );
                return None;
            };
            tried.push(chosen.addr);
            match tokio::time::timeout(pool.spec.connect_timeout, TcpStream::connect(chosen.addr))
                .await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, chosen));
                }
                outcome => {
                    chosen
                        .lease
                        .stats()
                        .connect_failures
                        .fetch_add(1, Ordering::Relaxed);
                    let why = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_string(),
                    };
                    log::warn!(
                        "pool {}: connecting to {} failed: {why}",
                        pool.name(),
                        chosen.addr
                    );
                    if tried.len() > pool.spec.retries {
                        return None;
                    }
                }
            }
        }
    }
}

/// Copies both ways until both sides are done or the connection idles out.
async fn relay(client: Stream, upstream: TcpStream, idle: Duration) -> std::io::Result<()> {
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = upstream.into_split();
    let both = async {
        let (a, b) = tokio::join!(
            pump(&mut cr, &mut uw, &last, start),
            pump(&mut ur, &mut cw, &last, start)
        );
        a.and(b)
    };
    tokio::select! {
        r = both => r,
        () = idle_out(&last, start, idle) => Ok(()),
    }
}

/// Copies `r` to `w`, half-closing `w` at EOF, and stamps activity in `last`.
async fn pump<R, W>(r: &mut R, w: &mut W, last: &AtomicU64, start: Instant) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Resolves once nothing has moved either way for `idle`.
async fn idle_out(last: &AtomicU64, start: Instant, idle: Duration) {
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = start + since + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}
