//! The HTTP backend's side of a connection: reading request heads and bodies (streamed
//! and hashed, never buffered) and answering by the routes the parent module lists.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{ActiveGuard, Fnv, Stats, CHUNK, MAX_HEAD};

/// How the request body is framed.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    /// Header names lowercased, in order of first appearance, repeated ones joined.
    headers: Vec<(String, String)>,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self, key: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Whether to answer with the body's length and hash.
    fn has_body(&self) -> bool {
        let framed = !matches!(self.framing, Framing::None | Framing::Length(0));
        framed || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH")
    }
}

type Reader = BufReader<tokio::net::tcp::OwnedReadHalf>;

/// Reads one line ending in `\n` into `line`, refusing to exceed `budget` bytes.
async fn read_line(rd: &mut Reader, line: &mut Vec<u8>, budget: &mut usize) -> io::Result<usize> {
    line.clear();
    let limit = (*budget as u64).max(1);
    let n = (&mut *rd).take(limit).read_until(b'\n', line).await?;
    *budget = budget.saturating_sub(n);
    if n > 0 && !line.ends_with(b"\n") {
        return Err(invalid("request head too long or truncated"));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(n)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads a request head; `Ok(None)` means the peer closed cleanly between requests.
async fn read_head(rd: &mut Reader) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let mut line = Vec::new();
    // Tolerate blank lines before the request line (RFC 9112 section 2.2).
    loop {
        if read_line(rd, &mut line, &mut budget).await? == 0 {
            return Ok(None);
        }
        if !line.is_empty() {
            break;
        }
    }
    let request_line = String::from_utf8_lossy(&line).into_owned();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        if read_line(rd, &mut line, &mut budget).await? == 0 {
            return Err(invalid("connection closed inside the head"));
        }
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let (name, value) = text.split_once(':').ok_or_else(|| invalid("bad header"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    let mut head = Head {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        framing: Framing::None,
        keep_alive: true,
    };
    let connection = head.header("connection").unwrap_or("").to_ascii_lowercase();
    head.keep_alive = match version {
        "HTTP/1.1" => !connection.contains("close"),
        "HTTP/1.0" => connection.contains("keep-alive"),
        _ => return Err(invalid("unsupported HTTP version")),
    };
    let te = head
        .header("transfer-encoding")
        .unwrap_or("")
        .to_ascii_lowercase();
    head.framing = if te.contains("chunked") {
        Framing::Chunked
    } else if let Some(cl) = head.header("content-length") {
        Framing::Length(cl.parse().map_err(|_| invalid("bad content-length"))?)
    } else {
        Framing::None
    };
    Ok(Some(head))
}

/// Streams `n` bytes of `rd` into `hash`.
async fn read_exact_hashed(rd: &mut Reader, mut n: u64, hash: &mut Fnv) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    while n > 0 {
        let want = n.min(CHUNK as u64) as usize;
        let got = rd.read(&mut buf[..want]).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        hash.update(&buf[..got]);
        n -= got as u64;
    }
    Ok(())
}

/// Reads the whole body as framed, hashing it; returns its length.
async fn read_body(rd: &mut Reader, framing: &Framing, hash: &mut Fnv) -> io::Result<u64> {
    match *framing {
        Framing::None => Ok(0),
        Framing::Length(n) => read_exact_hashed(rd, n, hash).await.map(|()| n),
        Framing::Chunked => {
            let mut total = 0u64;
            let mut line = Vec::new();
            loop {
                let mut budget = MAX_HEAD;
                read_line(rd, &mut line, &mut budget).await?;
                let text = String::from_utf8_lossy(&line);
                let size = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    break;
                }
                read_exact_hashed(rd, size, hash).await?;
                total += size;
                read_line(rd, &mut line, &mut budget).await?;
                if !line.is_empty() {
                    return Err(invalid("chunk not followed by CRLF"));
                }
            }
            // Trailers, up to the empty line.
            let mut budget = MAX_HEAD;
            while read_line(rd, &mut line, &mut budget).await? > 0 && !line.is_empty() {}
            Ok(total)
        }
    }
}

/// Writes a response that echoes `head` in `x-seen-*` headers.
async fn respond<W: AsyncWrite + Unpin>(
    wr: &mut W,
    stats: &Stats,
    head: &Head,
    status: u16,
    body: &str,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        503 => "Service Unavailable",
        _ => "Other",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    let mut add = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    add("content-type", "text/plain");
    add("content-length", &body.len().to_string());
    add("x-backend", &stats.name);
    add("x-seen-method", &head.method);
    add("x-seen-path", &head.target);
    add("x-seen-host", head.header("host").unwrap_or(""));
    for (name, value) in &head.headers {
        add(&format!("x-seen-h-{name}"), value);
    }
    if !head.keep_alive {
        add("connection", "close");
    }
    out.push_str("\r\n");
    if head.method != "HEAD" {
        out.push_str(body);
    }
    wr.write_all(out.as_bytes()).await?;
    wr.flush().await
}

/// Waits until the peer closes (or errors), discarding what it sends.
async fn hold_until_closed<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

pub(super) async fn serve_http(stream: TcpStream, stats: Arc<Stats>) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(CHUNK, rd);
    loop {
        let head = match read_head(&mut rd).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let _ = wr.write_all(bad_request(&e).as_bytes()).await;
                return;
            }
        };
        stats.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = head.header("x-id") {
            stats.ids.lock().unwrap().push(id.to_string());
        }
        if stats.announce.load(Ordering::SeqCst) {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "got {}", head.header("x-id").unwrap_or("-"));
            let _ = out.flush();
        }
        let _active = ActiveGuard::new(&stats.active);
        stats
            .peak
            .fetch_max(stats.active.load(Ordering::SeqCst), Ordering::SeqCst);
        match serve_one(&mut rd, &mut wr, &stats, &head).await {
            Ok(true) if head.keep_alive => {}
            _ => return,
        }
    }
}

fn bad_request(e: &io::Error) -> String {
    let body = format!("bad request: {e}\n");
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers one request; `Ok(false)` means the connection must not be reused.
async fn serve_one<W: AsyncWrite + Unpin>(
    rd: &mut Reader,
    wr: &mut W,
    stats: &Stats,
    head: &Head,
) -> io::Result<bool> {
    let expects_continue = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue && !matches!(head.framing, Framing::None) {
        wr.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let mut hash = Fnv::default();
    let len = match read_body(rd, &head.framing, &mut hash).await {
        Ok(len) => len,
        Err(e) => {
            let _ = wr.write_all(bad_request(&e).as_bytes()).await;
            return Ok(false);
        }
    };
    let default_body = format!("{}\n", stats.name);
    if head.path() != "/health" {
        let delay = stats.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        let status = stats.status.load(Ordering::SeqCst);
        if status > 0 {
            respond(wr, stats, head, status as u16, &default_body).await?;
            return Ok(true);
        }
    }
    match head.path() {
        "/health" => {
            stats.health_checks.fetch_add(1, Ordering::SeqCst);
            let (status, body) = match stats.unhealthy.load(Ordering::SeqCst) {
                true => (503, "unhealthy\n"),
                false => (200, "ok\n"),
            };
            respond(wr, stats, head, status, body).await?;
        }
        "/stall" => {
            hold_until_closed(rd).await;
            return Ok(false);
        }
        "/slow" => {
            let ms = head
                .query("ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            respond(wr, stats, head, 200, &default_body).await?;
        }
        _ if head.has_body() => {
            let body = format!("bytes={len} fnv={}", hash.hex());
            respond(wr, stats, head, 200, &body).await?;
        }
        _ => respond(wr, stats, head, 200, &default_body).await?,
    }
    Ok(true)
}
