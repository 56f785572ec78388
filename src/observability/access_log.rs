//! The access log: one line per HTTP request and per TCP connection, as JSON or as a
//! combined-style text line, to stdout, stderr or a file.
//!
//! Logging never blocks the request path: entries go into a bounded queue that a
//! dedicated thread drains every 50 ms, formatting and writing them in one batch. When
//! the queue is full the entry is dropped and counted in `tioga_access_log_dropped_total`.

use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime};

/// Entries that may wait for the writer.
const QUEUE: usize = 16 * 1024;

/// How often the writer drains the queue: lines reach the target within this time,
/// and up to `QUEUE` / `BATCH_INTERVAL` (over 300,000) lines a second are kept.
const BATCH_INTERVAL: Duration = Duration::from_millis(50);

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(std::path::PathBuf),
}

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Apache combined log format, followed by Tioga's fields as `key=value`.
    Combined,
}

/// One request or connection.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// When it ended (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// `http` or `tcp`.
    pub protocol: &'static str,
    /// Client address.
    pub client: Option<SocketAddr>,
    /// Listener name.
    pub listener: Arc<str>,
    /// Route name (`LISTENER[i]`), HTTP only.
    pub route: Option<Arc<str>>,
    /// Pool name.
    pub pool: Option<Arc<str>>,
    /// Backend that served it.
    pub backend: Option<SocketAddr>,
    /// Request method (HTTP).
    pub method: String,
    /// Request path and query (HTTP).
    pub path: String,
    /// Host header (HTTP).
    pub host: String,
    /// Referer header (HTTP).
    pub referer: String,
    /// User-Agent header (HTTP).
    pub user_agent: String,
    /// Status sent (HTTP), or 0 for a TCP connection closed normally, 502/503 when it
    /// could not be relayed.
    pub status: u16,
    /// Total duration in seconds.
    pub duration: f64,
    /// Time to the backend's response head (HTTP), in seconds.
    pub upstream_duration: Option<f64>,
    /// Bytes received from the client (body for HTTP).
    pub bytes_in: u64,
    /// Bytes sent to the client (body for HTTP).
    pub bytes_out: u64,
    /// Attempts on another backend after a connect failure.
    pub retries: u32,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

/// What the writer thread takes: the queue's receiving end, the output, the format.
type Writer = (Receiver<Entry>, Box<dyn Write + Send>, Format);

/// The access log's queue; cheap to share.
pub struct AccessLog {
    queue: SyncSender<Entry>,
    dropped: prometheus::IntCounter,
    /// The writer's half, until the writer thread starts. The thread starts with the
    /// first entry rather than at start-up: `-d` forks after start-up, and a thread
    /// started before the fork would not exist in the daemon.
    writer: Mutex<Option<Writer>>,
    started: Once,
}

impl AccessLog {
    /// Opens `target`; the writer thread starts with the first entry.
    pub fn open(
        target: &Target,
        format: Format,
        dropped: prometheus::IntCounter,
    ) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::Stderr => Box::new(std::io::stderr()),
            Target::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (queue, rx) = sync_channel(QUEUE);
        Ok(Self {
            queue,
            dropped,
            writer: Mutex::new(Some((rx, out, format))),
            started: Once::new(),
        })
    }

    fn start_writer(&self) {
        let Some((rx, out, format)) = self.writer.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("tioga-access-log".into())
            .spawn(move || {
                write_lines(
                    rx,
                    std::io::BufWriter::with_capacity(64 * 1024, out),
                    format,
                )
            });
        if let Err(e) = spawned {
            log::error!("access log: cannot start the writer thread: {e}");
        }
    }

    /// Queues `entry` without waiting.
    pub fn log(&self, entry: Entry) {
        self.started.call_once(|| self.start_writer());
        if let Err(TrySendError::Full(_)) = self.queue.try_send(entry) {
            self.dropped.inc();
        }
    }
}

/// The writer loop: wakes every [`BATCH_INTERVAL`], writes whatever is queued and
/// flushes once. Senders never wake it (a blocking `recv` would cost a futex wake and a
/// context switch per request); it ends when every sender is gone.
fn write_lines(rx: Receiver<Entry>, mut out: impl Write, format: Format) {
    let mut line = Vec::with_capacity(512);
    loop {
        std::thread::sleep(BATCH_INTERVAL);
        let mut wrote = false;
        loop {
            match rx.try_recv() {
                Ok(entry) => {
                    line.clear();
                    render(&entry, format, &mut line);
                    if out.write_all(&line).is_err() {
                        return;
                    }
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if wrote && out.flush().is_err() {
            return;
        }
    }
}

/// Formats one entry, newline included.
pub fn render(e: &Entry, format: Format, out: &mut Vec<u8>) {
    match format {
        Format::Json => {
            let _ = serde_json::to_writer(&mut *out, e);
        }
        Format::Combined => {
            let dash = |s: &str| {
                if s.is_empty() {
                    "-".to_string()
                } else {
                    s.replace('"', "\\\"")
                }
            };
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            let _ = write!(
                out,
                "{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\" protocol={} listener={} route={} pool={} backend={} duration={:.6} upstream_duration={} bytes_in={} retries={}",
                opt(e.client.map(|c| c.ip().to_string())),
                humantime::format_rfc3339_millis(e.time),
                dash(&e.method),
                dash(&e.path),
                e.status,
                e.bytes_out,
                dash(&e.referer),
                dash(&e.user_agent),
                e.protocol,
                e.listener,
                opt(e.route.as_ref().map(|r| r.to_string())),
                opt(e.pool.as_ref().map(|p| p.to_string())),
                opt(e.backend.map(|b| b.to_string())),
                e.duration,
                opt(e.upstream_duration.map(|d| format!("{d:.6}"))),
                e.bytes_in,
                e.retries,
            );
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            protocol: "http",
            client: Some("127.0.0.1:5000".parse().unwrap()),
            listener: "web".into(),
            route: Some("web[0]".into()),
            pool: Some("api".into()),
            backend: Some("127.0.0.1:9001".parse().unwrap()),
            method: "GET".into(),
            path: "/a?b=1".into(),
            host: "example.com".into(),
            referer: String::new(),
            user_agent: "curl/8".into(),
            status: 200,
            duration: 0.0125,
            upstream_duration: Some(0.01),
            bytes_in: 0,
            bytes_out: 42,
            retries: 1,
        }
    }

    #[test]
    fn json_lines_carry_every_field() {
        let mut out = Vec::new();
        render(&entry(), Format::Json, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["client"], "127.0.0.1:5000");
        assert_eq!(v["route"], "web[0]");
        assert_eq!(v["backend"], "127.0.0.1:9001");
        assert_eq!(v["status"], 200);
        assert_eq!(v["retries"], 1);
        assert_eq!(v["time"], "2023-11-14T22:13:20.000Z");
        assert!(out.ends_with(b"\n"));
    }

    #[test]
    fn combined_lines_start_like_apache() {
        let mut out = Vec::new();
        render(&entry(), Format::Combined, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("127.0.0.1 - - [2023-11-14T22:13:20.000Z] \"GET /a?b=1 HTTP/1.1\" 200 42 \"-\" \"curl/8\" protocol=http listener=web route=web[0] pool=api backend=127.0.0.1:9001"), "{line}");
    }
}
