//! The access log: one line per HTTP request and per TCP connection, as JSON or as a
//! combined-style text line, to stdout, stderr or a file.
//!
//! Logging never blocks the request path and allocates nothing there: the worker
//! thread renders the line into a reused thread-local buffer and appends it to a shared
//! batch (one uncontended lock); a dedicated thread swaps the batch out every 50 ms and
//! writes it with one `write`. When the batch is full (the target cannot keep up) the
//! line is dropped and counted in `tioga_access_log_dropped_total`.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, SystemTime};

/// The most a batch may hold before lines are dropped: at least 8 MiB every 50 ms, far
/// above any rate one machine serves.
const MAX_BATCH: usize = 8 * 1024 * 1024;

/// How often the writer writes the batch: lines reach the target within this time.
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

/// One request or connection, borrowed from the request for as long as it is rendered.
#[derive(Debug)]
pub struct Entry<'a> {
    /// When it ended (RFC 3339).
    pub time: SystemTime,
    /// `http` or `tcp`.
    pub protocol: &'static str,
    /// Client address.
    pub client: Option<SocketAddr>,
    /// Listener name.
    pub listener: &'a str,
    /// Route name (`LISTENER[i]`), HTTP only.
    pub route: Option<&'a str>,
    /// Pool name.
    pub pool: Option<&'a str>,
    /// Backend that served it.
    pub backend: Option<SocketAddr>,
    /// Request method (HTTP).
    pub method: &'a str,
    /// Request path and query (HTTP).
    pub path: &'a str,
    /// Host header (HTTP).
    pub host: &'a str,
    /// Referer header (HTTP).
    pub referer: &'a str,
    /// User-Agent header (HTTP).
    pub user_agent: &'a str,
    /// Status sent (HTTP), or 0 for a TCP connection closed normally, 502/503 when it
    /// could not be relayed.
    pub status: u16,
    /// Total duration.
    pub duration: Duration,
    /// Time to the backend's response head (HTTP).
    pub upstream_duration: Option<Duration>,
    /// Bytes received from the client (body for HTTP).
    pub bytes_in: u64,
    /// Bytes sent to the client (body for HTTP).
    pub bytes_out: u64,
    /// Attempts on another backend after a connect failure.
    pub retries: u32,
}

thread_local! {
    /// Each worker thread's line buffer, reused for every line it renders.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// The access log; cheap to share.
pub struct AccessLog {
    format: Format,
    /// Rendered lines waiting for the writer.
    batch: Arc<Mutex<Vec<u8>>>,
    dropped: prometheus::IntCounter,
    /// The output, until the writer thread starts. The thread starts with the first
    /// entry rather than at start-up: `-d` forks after start-up, and a thread started
    /// before the fork would not exist in the daemon.
    out: Mutex<Option<Box<dyn Write + Send>>>,
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
        Ok(Self {
            format,
            batch: Arc::new(Mutex::new(Vec::with_capacity(64 * 1024))),
            dropped,
            out: Mutex::new(Some(out)),
            started: Once::new(),
        })
    }

    fn start_writer(&self) {
        let Some(out) = self.out.lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        let batch = Arc::downgrade(&self.batch);
        let dropped = self.dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("tioga-access-log".into())
            .spawn(move || write_batches(&batch, out, &dropped));
        if let Err(e) = spawned {
            log::error!("access log: cannot start the writer thread: {e}");
        }
    }

    /// Renders `entry` and adds it to the batch, without waiting for the output.
    pub fn log(&self, entry: &Entry<'_>) {
        self.started.call_once(|| self.start_writer());
        LINE.with_borrow_mut(|line| {
            line.clear();
            super::log_line::render(entry, self.format, line);
            let Ok(mut batch) = self.batch.lock() else {
                return;
            };
            if batch.len() + line.len() > MAX_BATCH {
                drop(batch);
                self.dropped.inc();
                return;
            }
            batch.extend_from_slice(line);
        });
    }
}

/// The writer loop: every [`BATCH_INTERVAL`] takes the batch (swapping in its own empty
/// buffer, so neither side allocates) and writes it. Nothing wakes it per line (that
/// would cost a futex wake and a context switch per request). It ends when the access
/// log is gone. Lines it cannot write are counted as dropped; it keeps trying, so a
/// full disk loses lines while it lasts, not the log.
fn write_batches(
    batch: &Weak<Mutex<Vec<u8>>>,
    mut out: Box<dyn Write + Send>,
    dropped: &prometheus::IntCounter,
) {
    let mut lines = Vec::with_capacity(64 * 1024);
    let mut failing = false;
    loop {
        std::thread::sleep(BATCH_INTERVAL);
        let Some(shared) = batch.upgrade() else {
            return;
        };
        if let Ok(mut b) = shared.lock() {
            std::mem::swap(&mut *b, &mut lines);
        }
        drop(shared);
        if lines.is_empty() {
            continue;
        }
        match out.write_all(&lines).and_then(|()| out.flush()) {
            Ok(()) => failing = false,
            Err(e) => {
                let lost = lines.iter().filter(|&&b| b == b'\n').count();
                dropped.inc_by(lost as u64);
                if !failing {
                    log::error!("access log: cannot write ({e}); dropping lines until it can");
                }
                failing = true;
            }
        }
        lines.clear();
        // A burst may have grown the buffer; do not keep megabytes for ever.
        lines.shrink_to(1024 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let dropped = prometheus::IntCounter::new("d", "d").unwrap();
        let log =
            AccessLog::open(&Target::File(path.clone()), Format::Json, dropped.clone()).unwrap();
        let mut e = Entry {
            time: SystemTime::now(),
            protocol: "tcp",
            client: None,
            listener: "db",
            route: None,
            pool: Some("pg"),
            backend: None,
            method: "",
            path: "",
            host: "",
            referer: "",
            user_agent: "",
            status: 0,
            duration: Duration::ZERO,
            upstream_duration: None,
            bytes_in: 0,
            bytes_out: 0,
            retries: 0,
        };
        for status in [200, 404, 503] {
            e.status = status;
            log.log(&e);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() >= 3 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let statuses: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(statuses, [200, 404, 503]);
        assert_eq!(dropped.get(), 0);
    }
}
