//! The access log: one line per HTTP request and per TCP connection, as JSON or as a
//! combined-style text line, to stdout, stderr or a file.
//!
//! Logging never blocks the request path and allocates nothing there: the worker
//! thread renders the line into a reused thread-local buffer and appends it to a shared
//! batch (one uncontended lock); a dedicated thread swaps the batch out every 50 ms and
//! writes it with one `write`. When the batch is full (the target cannot keep up) the
//! line is dropped and counted in `tioga_access_log_dropped_total`.

pub(crate) use super::log_line::Entry;
pub(crate) use crate::vocab::{Format, Target};
use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;

/// The most a batch may hold before lines are dropped: at least 8 MiB every 50 ms, far
/// above any rate one machine serves.
const MAX_BATCH: usize = 8 * 1024 * 1024;

/// How often the writer writes the batch: lines reach the target within this time.
const BATCH_INTERVAL: Duration = Duration::from_millis(50);

thread_local! {
    /// Each worker thread's line buffer, reused for every line it renders.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// The access log; cheap to share.
pub(crate) struct AccessLog {
    format: Format,
    shared: Arc<Shared>,
    /// The writer thread starts with the first entry rather than at start-up: `-d`
    /// forks after start-up, and a thread started before the fork would not exist in
    /// the daemon.
    started: Once,
}

/// What the workers, the writer thread and [`AccessLog::flush`] share.
struct Shared {
    /// Rendered lines waiting for the writer.
    batch: Mutex<Vec<u8>>,
    /// The target, with the writer's own buffer; whoever writes holds it.
    out: Mutex<Output>,
    dropped: prometheus::IntCounter,
}

struct Output {
    target: Box<dyn Write + Send>,
    /// The batch being written (swapped with [`Shared::batch`], so neither side
    /// allocates).
    lines: Vec<u8>,
    /// Whether the last write failed (its error is logged once).
    failing: bool,
}

impl AccessLog {
    /// Opens `target`; the writer thread starts with the first entry.
    pub(crate) fn open(
        target: &Target,
        format: Format,
        dropped: prometheus::IntCounter,
    ) -> std::io::Result<Self> {
        let target: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::Stderr => Box::new(std::io::stderr()),
            Target::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let out = Output {
            target,
            lines: Vec::with_capacity(64 * 1024),
            failing: false,
        };
        Ok(Self {
            format,
            shared: Arc::new(Shared {
                batch: Mutex::new(Vec::with_capacity(64 * 1024)),
                out: Mutex::new(out),
                dropped,
            }),
            started: Once::new(),
        })
    }

    fn start_writer(&self) {
        let shared = Arc::downgrade(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("tioga-access-log".into())
            .spawn(move || write_batches(&shared));
        if let Err(e) = spawned {
            log::error!("access log: cannot start the writer thread: {e}");
        }
    }

    /// Renders `entry` and adds it to the batch, without waiting for the output.
    pub(crate) fn log(&self, entry: &Entry<'_>) {
        self.started.call_once(|| self.start_writer());
        LINE.with_borrow_mut(|line| {
            line.clear();
            super::log_line::render(entry, self.format, line);
            let Ok(mut batch) = self.shared.batch.lock() else {
                return;
            };
            if batch.len() + line.len() > MAX_BATCH {
                drop(batch);
                self.shared.dropped.inc();
                return;
            }
            batch.extend_from_slice(line);
        });
    }

    /// Writes what is waiting now, on the calling thread: at exit, so the last
    /// requests' lines are not lost with the writer thread.
    pub(crate) fn flush(&self) {
        self.shared.write_batch();
    }
}

impl Drop for AccessLog {
    /// A log a reload replaced keeps the lines of the requests that used it.
    fn drop(&mut self) {
        self.flush();
    }
}

/// The writer loop: every [`BATCH_INTERVAL`] writes the batch. Nothing wakes it per
/// line (that would cost a futex wake and a context switch per request). It ends when
/// the access log is gone.
fn write_batches(shared: &Weak<Shared>) {
    loop {
        std::thread::sleep(BATCH_INTERVAL);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.write_batch();
    }
}

impl Shared {
    /// Takes the batch and writes it. Lines that cannot be written are counted as
    /// dropped, and the next batch is tried again: a full disk loses lines while it
    /// lasts, not the log.
    fn write_batch(&self) {
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        let out = &mut *out;
        if let Ok(mut batch) = self.batch.lock() {
            std::mem::swap(&mut *batch, &mut out.lines);
        }
        if out.lines.is_empty() {
            return;
        }
        let written = out
            .target
            .write_all(&out.lines)
            .and_then(|()| out.target.flush());
        match written {
            Ok(()) => out.failing = false,
            Err(e) => {
                let lost = out.lines.iter().filter(|&&b| b == b'\n').count();
                self.dropped.inc_by(lost as u64);
                if !out.failing {
                    log::error!("access log: cannot write ({e}); dropping lines until it can");
                }
                out.failing = true;
            }
        }
        out.lines.clear();
        // A burst may have grown the buffer; do not keep megabytes for ever.
        out.lines.shrink_to(1024 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    /// A TCP connection's entry on listener `db`, pool `pg`.
    fn tcp_entry() -> Entry<'static> {
        Entry {
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
            tls_client: None,
            grpc_status: None,
        }
    }

    #[test]
    fn lines_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let dropped = prometheus::IntCounter::new("d", "d").unwrap();
        let log =
            AccessLog::open(&Target::File(path.clone()), Format::Json, dropped.clone()).unwrap();
        let mut e = tcp_entry();
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

    #[test]
    fn flush_writes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let dropped = prometheus::IntCounter::new("d", "d").unwrap();
        let log = AccessLog::open(&Target::File(path.clone()), Format::Combined, dropped).unwrap();
        let e = tcp_entry();
        log.log(&e);
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("listener=db route=- pool=pg"), "{text}");
    }
}
