//! A minimal blocking HTTP/1.1 client on `std::net`, so tests stay plain `#[test]`
//! functions and see exactly what goes over the wire.
//!
//! ```ignore
//! let resp = Request::get("/api/x").header("host", "api.example.com").send(addr)?;
//! assert_eq!(resp.status, 200);
//! assert_eq!(resp.header("x-backend"), Some("a"));
//! ```
//!
//! [`Request::send`] opens a new connection and asks the server to close it
//! (`Connection: close`, unless the request sets its own `connection` header); [`Conn`]
//! keeps one connection open across requests. Bodies can be bytes, streamed from a
//! [`Read`] with a known length ([`Request::body_stream`]) or sent chunked
//! ([`Request::body_chunked`]), so large uploads need not sit in memory. Responses are
//! read by `Content-Length`, chunked encoding or to EOF. Every read and write has a
//! timeout ([`DEFAULT_TIMEOUT`] unless [`Request::timeout`] says otherwise), so a test
//! never hangs.

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect, read and write timeout of a request unless set with [`Request::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head accepted.
const MAX_HEAD: u64 = 64 * 1024;
/// Chunk size used when streaming a request body.
const CHUNK: usize = 64 * 1024;

/// A reader that is consumed the first time its request is sent.
type StreamSlot = RefCell<Option<Box<dyn Read + Send>>>;

enum Body {
    Empty,
    Bytes(Vec<u8>),
    Stream { len: u64, reader: StreamSlot },
    Chunked(StreamSlot),
}

/// An HTTP/1.1 request under construction; send it with [`Request::send`] or [`Conn::send`].
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Body,
    timeout: Duration,
}

impl Request {
    /// A request with the given method and target (path plus optional query).
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Body::Empty,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A `GET` of `path`.
    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    /// A `POST` of `body` to `path`.
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new("POST", path).body(body)
    }

    /// Replaces the method.
    pub fn method(mut self, method: &str) -> Request {
        self.method = method.to_string();
        self
    }

    /// Adds a header (repeat the call to send a header twice). Setting `host`,
    /// `connection`, `content-length` or `transfer-encoding` replaces the default.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends `body` with a `Content-Length`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Body::Bytes(body.into());
        self
    }

    /// Sends `len` bytes read from `reader` as they go, with a `Content-Length`.
    /// The reader is consumed by the first send.
    pub fn body_stream(mut self, len: u64, reader: impl Read + Send + 'static) -> Request {
        let reader: Box<dyn Read + Send> = Box::new(reader);
        self.body = Body::Stream {
            len,
            reader: RefCell::new(Some(reader)),
        };
        self
    }

    /// Sends everything `reader` yields with `Transfer-Encoding: chunked`.
    /// The reader is consumed by the first send.
    pub fn body_chunked(mut self, reader: impl Read + Send + 'static) -> Request {
        let reader: Box<dyn Read + Send> = Box::new(reader);
        self.body = Body::Chunked(RefCell::new(Some(reader)));
        self
    }

    /// Sets the connect, read and write timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = timeout;
        self
    }

    /// Sends the request on a new connection to `addr` and reads the response.
    pub fn send(&self, addr: SocketAddr) -> io::Result<Response> {
        let mut conn = Conn::open_with_timeout(addr, self.timeout)?;
        conn.exchange(self, true)
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Writes the whole request; `close` asks the server to close the connection.
    fn write_to(&self, out: &mut impl Write, addr: SocketAddr, close: bool) -> io::Result<()> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self.has_header("host") {
            head.push_str(&format!("host: {addr}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let framed = self.has_header("content-length") || self.has_header("transfer-encoding");
        let length = match &self.body {
            Body::Empty => None,
            Body::Bytes(bytes) => Some(bytes.len() as u64),
            Body::Stream { len, .. } => Some(*len),
            Body::Chunked(_) => None,
        };
        if !framed {
            match (&self.body, length) {
                (Body::Chunked(_), _) => head.push_str("transfer-encoding: chunked\r\n"),
                (_, Some(n)) => head.push_str(&format!("content-length: {n}\r\n")),
                (_, None) => {}
            }
        }
        if close && !self.has_header("connection") {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        match &self.body {
            Body::Empty => {}
            Body::Bytes(bytes) => out.write_all(bytes)?,
            Body::Stream { len, reader } => {
                let mut reader = take_reader(reader)?;
                let copied = io::copy(&mut (&mut reader).take(*len), out)?;
                if copied != *len {
                    let msg = format!("body stream ended after {copied} of {len} bytes");
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
                }
            }
            Body::Chunked(reader) => write_chunked(&mut take_reader(reader)?, out)?,
        }
        out.flush()
    }
}

fn take_reader(slot: &StreamSlot) -> io::Result<Box<dyn Read + Send>> {
    slot.borrow_mut()
        .take()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "streamed body already sent"))
}

fn write_chunked(reader: &mut dyn Read, out: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        write!(out, "{n:x}\r\n")?;
        out.write_all(&buf[..n])?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"0\r\n\r\n")
}

/// A response as received.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers in the order received, names as sent by the server.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked encoding removed).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection kept open across requests (keep-alive).
pub struct Conn {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    reusable: bool,
}

impl Conn {
    /// Connects to `addr` with [`DEFAULT_TIMEOUT`].
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
        Conn::open_with_timeout(addr, DEFAULT_TIMEOUT)
    }

    /// Connects to `addr`; `timeout` bounds the connect and every later read and write.
    pub fn open_with_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let conn = Conn {
            addr,
            reader: BufReader::new(stream),
            reusable: true,
        };
        conn.set_timeout(timeout)?;
        Ok(conn)
    }

    /// Sets the read and write timeout for what follows.
    pub fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream().set_read_timeout(Some(timeout))?;
        self.stream().set_write_timeout(Some(timeout))
    }

    /// Sends `req` on this connection (no `Connection: close` added) and reads the answer.
    pub fn send(&mut self, req: &Request) -> io::Result<Response> {
        self.exchange(req, false)
    }

    /// Whether the last response left the connection usable (no `Connection: close`,
    /// body not delimited by EOF).
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// The underlying socket, e.g. to shut down one direction.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes raw bytes, for requests the builder cannot express.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads one response; `head_request` says the request was a HEAD (no body follows).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let (resp, reusable) = read_response(&mut self.reader, head_request)?;
        self.reusable = reusable;
        Ok(resp)
    }

    fn exchange(&mut self, req: &Request, close: bool) -> io::Result<Response> {
        self.set_timeout(req.timeout)?;
        let is_head = req.method.eq_ignore_ascii_case("HEAD");
        let written = {
            let mut out = BufWriter::with_capacity(CHUNK, self.reader.get_ref());
            req.write_to(&mut out, self.addr, close)
        };
        match written {
            Ok(()) => self.read_response(is_head),
            // The server may answer (413, 403, ...) and close before taking the whole
            // body; prefer its answer to the write error.
            Err(e) => self.read_response(is_head).map_err(|_| e),
        }
    }
}

/// Sends `GET path` to `addr` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    Request::get(path).send(addr)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one line (at most [`MAX_HEAD`] bytes) without its line ending.
fn read_line(rd: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    rd.by_ref().take(MAX_HEAD).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a full line was read",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("response head is not UTF-8"))
}

/// Reads a status line and headers, skipping interim (1xx) responses.
fn read_head(rd: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    for _ in 0..16 {
        let line = read_line(rd)?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {line:?}")));
        }
        let mut headers = Vec::new();
        loop {
            let line = read_line(rd)?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        if !(100..200).contains(&status) || status == 101 {
            return Ok((status, headers));
        }
    }
    Err(bad("too many interim responses"))
}

/// Reads a response; the flag says whether the connection can carry another request.
fn read_response(rd: &mut impl BufRead, head_request: bool) -> io::Result<(Response, bool)> {
    let (status, headers) = read_head(rd)?;
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let mut reusable = !resp
        .header("connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if head_request || status == 204 || status == 304 {
        // No body.
    } else if chunked {
        resp.body = read_chunked(rd)?;
    } else if let Some(len) = resp.header("content-length") {
        let len: u64 = len.parse().map_err(|_| bad("bad content-length"))?;
        let got = rd.by_ref().take(len).read_to_end(&mut resp.body)?;
        if got as u64 != len {
            let msg = format!("body ended after {got} of {len} bytes");
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
        }
    } else {
        rd.read_to_end(&mut resp.body)?;
        reusable = false;
    }
    Ok((resp, reusable))
}

fn read_chunked(rd: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(rd)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            break;
        }
        let got = rd.by_ref().take(size).read_to_end(&mut body)?;
        if got as u64 != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated chunk",
            ));
        }
        if !read_line(rd)?.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
    // Trailers, up to the empty line.
    for _ in 0..100 {
        if read_line(rd)?.is_empty() {
            return Ok(body);
        }
    }
    Err(bad("too many trailers"))
}
