//! Sends an HTTP client's answers at the end of the worker's pass over its ready
//! connections, not one by one in the middle of it.
//!
//! Each write to a client that sleeps waiting for it makes the kernel wake that
//! process; when it sits on another CPU that is an inter-processor interrupt, and on a
//! virtual machine a trip through the hypervisor. A worker that answers its ready
//! connections one after another, with the work of the next request in between, gives
//! the client time to fall asleep again before every answer. Event-loop proxies such as
//! HAProxy send together after a batch of events, and the client wakes once per batch.
//!
//! [`Coalesce`] is the client connection's write buffer. Writes are held (up to
//! [`HOLD_LIMIT`]); a flush hands the connection to its worker's flusher, a task that
//! the first flush of a pass wakes and that therefore runs after the connections made
//! ready in the same pass, and sends what each holds with one `send` (non-blocking,
//! straight on the socket). No task is polled again for it and no timer is involved.
//!
//! Nothing is lost or reordered:
//! - bytes leave in the order written: a write that does not fit is preceded by what is
//!   held, and the connection's own writes wait while anything is held for a full socket;
//! - when the socket is full, the rest stays held and the connection's task sends it
//!   itself, waiting on the socket as usual (the flusher wakes it; its reads, writes,
//!   flushes and shutdown all send what is held first);
//! - a send error is returned by the connection's next write or flush;
//! - a connection dropped with bytes held sends them before its socket closes, and
//!   leaves what the socket cannot take to a task that finishes the write (bounded by
//!   [`TAIL_TIMEOUT`]).
//!
//! Only Pingora's one-thread workers (current-thread runtimes, `threads: 1`) defer:
//! their flusher is the thread's. On work-stealing workers a flush sends at once, as a
//! plain write buffer. The accept stack decides which ([`Flush`]), and puts no buffer
//! of Pingora's under this one ([`Buffering`](super::buffering::Buffering)).

use super::Flush;
use crate::proxy::fd::{self, Socket};
use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::runtime::Handle;

/// Most bytes held for one client; a larger write goes to the socket at once.
pub(super) const HOLD_LIMIT: usize = 16 * 1024;
/// Buffer capacity kept between answers; a larger one is given back once sent, so an
/// idle keep-alive connection holds little.
const KEEP_CAPACITY: usize = 4 * 1024;
/// How long a dropped connection's last bytes may wait for a full socket.
const TAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// A plain-TCP client connection whose writes are sent in batches (module docs).
#[derive(Debug)]
pub(super) struct Coalesce {
    inner: Box<L4Stream>,
    out: Arc<Outbox>,
    /// Flushes wait for the worker's flusher ([`Flush::EndOfPass`]) or send at once.
    defer: bool,
}

/// What a connection holds, shared with its worker's flusher.
#[derive(Debug)]
struct Outbox {
    /// A duplicate of the connection's socket, made at its first deferred flush: the
    /// flusher, which may hold the outbox past the connection, sends on the
    /// connection's own socket, never on a descriptor number since reused.
    fd: OnceLock<OwnedFd>,
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    /// In the flusher's list for this pass.
    queued: bool,
    /// The socket was full: the connection's task sends the rest itself.
    stalled: bool,
    /// A send failed (and what was held is dropped); the connection's next write or
    /// flush reports it.
    failed: Option<io::ErrorKind>,
    /// The connection's task, woken when the flusher leaves it bytes to send.
    waker: Option<Waker>,
    /// The connection went idle with bytes held: the buffer goes once they are sent.
    release: bool,
}

impl Outbox {
    /// Whether the flusher can send for the connection: the outbox has its duplicate
    /// of the socket of `inner` (the connection's stream), made now if need be.
    fn has_fd(&self, inner: &L4Stream) -> bool {
        if self.fd.get().is_some() {
            return true;
        }
        match Socket::of(inner).map(|s| s.duplicate()) {
            Some(Ok(fd)) => self.fd.set(fd).is_ok(),
            _ => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // One thread uses an outbox at a time and nothing in it panics while locked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The flusher's part: one non-blocking send of everything held. A dropped
    /// connection holds nothing (its drop took the bytes).
    fn send_held(&self) {
        let mut held = self.lock();
        held.queued = false;
        // The descriptor is there: it was made before the outbox was queued.
        let (false, false, Some(fd)) = (held.stalled, held.bytes.is_empty(), self.fd.get()) else {
            return;
        };
        match send_now(fd.as_fd(), &held.bytes) {
            Ok(n) if n == held.bytes.len() => held.sent_all(),
            Ok(n) => {
                held.bytes.drain(..n);
                held.stalled = true;
                held.wake();
            }
            Err(e) => {
                held.fail(e.kind());
                held.wake();
            }
        }
    }
}

impl Held {
    /// `Err` once a send has failed.
    fn check(&self) -> io::Result<()> {
        self.failed.map_or(Ok(()), |kind| Err(kind.into()))
    }

    fn fail(&mut self, kind: io::ErrorKind) {
        self.bytes.clear();
        self.failed = Some(kind);
    }

    fn sent_all(&mut self) {
        self.bytes.clear();
        self.stalled = false;
        if self.release || self.bytes.capacity() > KEEP_CAPACITY {
            self.bytes = Vec::new();
            self.release = false;
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn keep_waker(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }
}

/// Sends as much of `bytes` as the socket takes now, without waiting.
fn send_now(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    let mut sent = 0;
    while sent < bytes.len() {
        match send(fd.as_raw_fd(), &bytes[sent..], flags) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

/// Gives back the write buffer of `stream` when it is a coalesced connection with
/// nothing held: an idle keep-alive connection then holds no buffer of its own.
pub(super) fn release(stream: &dyn pingora_core::protocols::IO) {
    if let Some(c) = stream.as_any().downcast_ref::<Coalesce>() {
        let mut held = c.out.lock();
        if held.bytes.is_empty() && !held.stalled {
            held.bytes = Vec::new();
        } else {
            // Still on its way (the flusher's pass, or a full socket).
            held.release = true;
        }
    }
}

impl Coalesce {
    /// Becomes `inner`'s write buffer, flushing as `flush` says. `inner` must have no
    /// write buffer of its own: held bytes go straight to the socket.
    pub(super) fn new(inner: Box<L4Stream>, flush: Flush) -> Self {
        let out = Arc::new(Outbox {
            fd: OnceLock::new(),
            state: Mutex::new(Held::default()),
        });
        Coalesce {
            inner,
            out,
            defer: flush == Flush::EndOfPass,
        }
    }

    /// Sends everything held through the stream itself, waiting on the socket.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut held = self.out.lock();
        held.check()?;
        while !held.bytes.is_empty() {
            match Pin::new(&mut *self.inner).poll_write(cx, &held.bytes) {
                Poll::Ready(Ok(0)) => {
                    held.fail(io::ErrorKind::WriteZero);
                    return Poll::Ready(held.check());
                }
                Poll::Ready(Ok(n)) => {
                    held.bytes.drain(..n);
                }
                Poll::Ready(Err(e)) => {
                    held.fail(e.kind());
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    held.stalled = true;
                    return Poll::Pending;
                }
            }
        }
        held.sent_all();
        drop(held);
        Pin::new(&mut *self.inner).poll_flush(cx)
    }
}

impl AsyncRead for Coalesce {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.out.lock().stalled {
            // The answer goes first; a full socket leaves this task registered for it,
            // and an error is reported by the next write.
            let _ = this.drain(cx);
        }
        Pin::new(&mut *this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Coalesce {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        {
            let mut held = this.out.lock();
            held.check()?;
            if !held.stalled && held.bytes.len() + buf.len() <= HOLD_LIMIT {
                held.bytes.extend_from_slice(buf);
                held.keep_waker(cx);
                if this.defer && !held.queued {
                    if this.out.has_fd(&this.inner) {
                        held.queued = true;
                        drop(held);
                        flusher::enqueue(&this.out);
                    } else {
                        // No descriptor left for a duplicate: send at flush instead.
                        this.defer = false;
                    }
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        // Too much to hold, or the socket is full: what is held goes first.
        ready!(this.drain(cx))?;
        Pin::new(&mut *this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.defer {
            let held = this.out.lock();
            held.check()?;
            if !held.stalled {
                // Queued by its write: the flusher sends it at the end of the pass.
                return Poll::Ready(Ok(()));
            }
        }
        this.drain(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        Pin::new(&mut *this.inner).poll_shutdown(cx)
    }
}

impl Drop for Coalesce {
    fn drop(&mut self) {
        // Taking the bytes also tells the flusher, which may still list this outbox,
        // that there is nothing to send on a socket about to close.
        let bytes = std::mem::take(&mut self.out.lock().bytes);
        if bytes.is_empty() {
            return;
        }
        // The stream, and so its socket, is still open here: it closes after this drop.
        let Some(socket) = Socket::of(&self.inner) else {
            return;
        };
        let sent = send_now(socket.borrow(), &bytes).unwrap_or(bytes.len());
        if sent < bytes.len() {
            send_tail(&socket, bytes, sent);
        }
    }
}

/// Finishes a dropped connection's write on a copy of its socket, in a task of its own.
fn send_tail(socket: &Socket<&L4Stream>, bytes: Vec<u8>, sent: usize) {
    let Ok(rt) = Handle::try_current() else {
        return;
    };
    let _in_runtime = rt.enter();
    let Ok(mut tcp) = socket.duplicate().and_then(fd::tokio_stream) else {
        return;
    };
    rt.spawn(async move {
        let _ = tokio::time::timeout(TAIL_TIMEOUT, tcp.write_all(&bytes[sent..])).await;
    });
}

mod flusher;

#[async_trait]
impl Shutdown for Coalesce {
    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(self).await;
    }
}

impl UniqueID for Coalesce {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

/// Plain TCP: no TLS to report.
impl Ssl for Coalesce {}

impl GetTimingDigest for Coalesce {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Coalesce {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Coalesce {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Coalesce {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Coalesce, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (coalesce(server), client)
    }

    /// `server` coalesced as the accept stack would on this worker.
    fn coalesce(server: TcpStream) -> Coalesce {
        let l4 = Box::new(L4Stream::from(server));
        Coalesce::new(l4, Flush::of_this_worker())
    }

    /// What `peer` has received so far, without waiting.
    fn received(peer: &TcpStream) -> Vec<u8> {
        let mut got = vec![0u8; 1 << 16];
        match peer.try_read(&mut got) {
            Ok(n) => got[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// Bytes `0, 1, 2 …` (mod 251), so that a lost or reordered piece shows.
    fn pattern(from: usize, len: usize) -> Vec<u8> {
        (from..from + len).map(|i| (i % 251) as u8).collect()
    }

    async fn read_all(peer: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut got))
            .await
            .expect("peer read timed out")
            .unwrap();
        got
    }

    /// What `peer` receives, polling (and yielding to the runtime) until `len` bytes or
    /// 5 s.
    async fn received_until(peer: &TcpStream, len: usize) -> Vec<u8> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < len && std::time::Instant::now() < deadline {
            got.extend(received(peer));
            tokio::task::yield_now().await;
        }
        got
    }

    #[tokio::test]
    async fn answers_flushed_in_one_pass_are_sent_when_it_ends() {
        let (mut a, peer_a) = pair().await;
        let (mut b, peer_b) = pair().await;
        a.write_all(b"answer a").await.unwrap();
        a.flush().await.unwrap();
        b.write_all(b"answer b").await.unwrap();
        b.flush().await.unwrap();
        // Time for a send to arrive, had there been one: this task has not yielded
        // since, so the flusher has not run.
        std::thread::sleep(Duration::from_millis(20));
        assert!(received(&peer_a).is_empty(), "sent before the pass ended");
        assert!(received(&peer_b).is_empty(), "sent before the pass ended");
        assert_eq!(received_until(&peer_a, 8).await, b"answer a");
        assert_eq!(received_until(&peer_b, 8).await, b"answer b");
    }

    #[tokio::test]
    async fn a_write_too_big_to_hold_follows_what_is_held() {
        let (mut a, mut peer) = pair().await;
        let small = pattern(0, 100);
        let big = pattern(100, HOLD_LIMIT + 1);
        a.write_all(&small).await.unwrap();
        a.write_all(&big).await.unwrap();
        a.write_all(&pattern(100 + big.len(), 10)).await.unwrap();
        Shutdown::shutdown(&mut a).await; // as Pingora ends a connection
        assert_eq!(read_all(&mut peer).await, pattern(0, 100 + big.len() + 10));
    }

    #[tokio::test]
    async fn a_full_socket_loses_and_reorders_nothing() {
        let (mut a, mut peer) = pair().await;
        const TOTAL: usize = 8 << 20;
        let writer = tokio::spawn(async move {
            // Small answers, each flushed: the flusher meets a full socket many times.
            let mut at = 0;
            while at < TOTAL {
                let len = 3000.min(TOTAL - at);
                a.write_all(&pattern(at, len)).await.unwrap();
                a.flush().await.unwrap();
                at += len;
            }
            Shutdown::shutdown(&mut a).await; // as Pingora ends a connection
        });
        // Start reading late, so the socket fills first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = read_all(&mut peer).await;
        writer.await.unwrap();
        assert_eq!(got.len(), TOTAL);
        assert!(got == pattern(0, TOTAL), "bytes lost or out of order");
    }

    #[tokio::test]
    async fn a_dropped_connection_still_sends_what_it_held() {
        let (mut a, mut peer) = pair().await;
        a.write_all(b"last answer").await.unwrap();
        a.flush().await.unwrap();
        drop(a);
        assert_eq!(read_all(&mut peer).await, b"last answer");
    }

    #[tokio::test]
    async fn a_dropped_connection_finishes_its_write_on_a_full_socket() {
        // Socket buffers too small for what is held, so the drop cannot send it all.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut peer = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        nix::sys::socket::setsockopt(&server, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
        let mut a = coalesce(server);

        let answer = pattern(0, HOLD_LIMIT);
        a.write_all(&answer).await.unwrap();
        a.flush().await.unwrap();
        drop(a);
        // Before this task yields, only what the socket took in the drop has arrived.
        std::thread::sleep(Duration::from_millis(20));
        let mut got = received(&peer);
        assert!(got.len() < answer.len(), "the socket took it all");
        got.extend(read_all(&mut peer).await);
        assert!(got == answer, "bytes lost or out of order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_work_stealing_worker_a_flush_sends_at_once() {
        let (mut a, peer) = pair().await;
        assert!(!a.defer);
        a.write_all(b"now").await.unwrap();
        a.flush().await.unwrap();
        // No yield: the bytes left in the flush.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(received(&peer), b"now");
    }

    #[tokio::test]
    async fn a_send_error_reaches_the_next_write() {
        let (mut a, peer) = pair().await;
        // A reset: close with unread data and SO_LINGER 0.
        let peer = peer.into_std().unwrap();
        socket_linger_zero(&peer);
        drop(peer);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let res = async {
                a.write_all(b"to nobody").await?;
                a.flush().await
            }
            .await;
            tokio::task::yield_now().await;
            if res.is_err() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no error reported");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn socket_linger_zero(s: &std::net::TcpStream) {
        use nix::sys::socket::{setsockopt, sockopt::Linger};
        let off = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        setsockopt(s, Linger, &off).unwrap();
    }
}
