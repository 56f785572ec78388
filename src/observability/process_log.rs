//! The process log (stderr, `RUST_LOG`, default `info`), with one correction to
//! Pingora's levels.
//!
//! Pingora logs every failed or timed-out TLS handshake on a listener at ERROR. On an
//! edge these are clients' doing: port scanners, TCP health checks of an outer load
//! balancer (a connect and a close, with no ClientHello), clients that refuse the
//! certificate, clients without a certificate on an mTLS listener. None of them is a
//! fault of Tioga, and at ERROR they would drown the errors that are. They are logged
//! at INFO, as nginx logs its SSL handshake failures (`info`).

use log::{Level, Log, Metadata, Record};

/// Pingora's module that logs failed downstream handshakes.
const LISTENING: &str = "pingora_core::services::listening";
/// How its messages about them begin ("… error from ADDR: …", "… timeout").
const HANDSHAKE: &str = "Downstream handshake";

/// Installs the process logger: `env_logger` under [`Relevel`]. Does nothing when a
/// logger is already installed (an embedding program's own).
pub(crate) fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    let logger = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Relevel(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// A logger that passes records to another, client handshake failures at INFO.
pub(crate) struct Relevel<L>(pub(crate) L);

impl<L: Log> Log for Relevel<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !client_handshake_failure(record) {
            if self.0.enabled(record.metadata()) {
                self.0.log(record);
            }
            return;
        }
        let info = Record::builder()
            .args(*record.args())
            .level(Level::Info)
            .target(record.target())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        if self.0.enabled(info.metadata()) {
            self.0.log(&info);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Whether `record` is Pingora's report of a downstream TLS handshake that failed or
/// timed out (`services/listening.rs`).
fn client_handshake_failure(record: &Record) -> bool {
    if record.target() != LISTENING || record.level() != Level::Error {
        return false;
    }
    match record.args().as_str() {
        Some(text) => text.starts_with(HANDSHAKE),
        None => record.args().to_string().starts_with(HANDSHAKE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::LevelFilter;
    use std::sync::Mutex;

    /// Keeps what it is given at or above its level.
    struct Keep(LevelFilter, Mutex<Vec<(Level, String, String)>>);

    impl Log for Keep {
        fn enabled(&self, metadata: &Metadata) -> bool {
            metadata.level() <= self.0
        }
        fn log(&self, record: &Record) {
            let kept = (
                record.level(),
                record.target().to_owned(),
                record.args().to_string(),
            );
            self.1.lock().unwrap().push(kept);
        }
        fn flush(&self) {}
    }

    fn send(logger: &Relevel<Keep>, level: Level, target: &str, text: std::fmt::Arguments) {
        let record = Record::builder()
            .args(text)
            .level(level)
            .target(target)
            .build();
        if logger.enabled(record.metadata()) {
            logger.log(&record);
        }
    }

    fn kept(filter: LevelFilter, each: impl Fn(&Relevel<Keep>)) -> Vec<(Level, String, String)> {
        let logger = Relevel(Keep(filter, Mutex::new(Vec::new())));
        each(&logger);
        logger.0 .1.into_inner().unwrap()
    }

    #[test]
    fn handshake_failures_come_down_to_info_and_the_rest_is_untouched() {
        let addr = "127.0.0.1:41234";
        let out = kept(LevelFilter::Info, |l| {
            send(
                l,
                Level::Error,
                LISTENING,
                format_args!("Downstream handshake error from {addr}: tls handshake eof"),
            );
            send(
                l,
                Level::Error,
                LISTENING,
                format_args!("Downstream handshake timeout"),
            );
            send(
                l,
                Level::Error,
                LISTENING,
                format_args!("Failed to accept(): too many open files"),
            );
            send(
                l,
                Level::Error,
                "pingora_core::connectors",
                format_args!("Downstream handshake error"),
            );
            send(
                l,
                Level::Debug,
                LISTENING,
                format_args!("Downstream handshake error"),
            );
        });
        let levels: Vec<_> = out
            .iter()
            .map(|(level, _, text)| (*level, text.as_str()))
            .collect();
        assert_eq!(
            levels,
            [
                (
                    Level::Info,
                    "Downstream handshake error from 127.0.0.1:41234: tls handshake eof"
                ),
                (Level::Info, "Downstream handshake timeout"),
                (Level::Error, "Failed to accept(): too many open files"),
                (Level::Error, "Downstream handshake error"),
            ]
        );
        assert_eq!(out[0].1, LISTENING);
    }

    #[test]
    fn below_the_filter_a_relevelled_failure_is_dropped() {
        let out = kept(LevelFilter::Warn, |l| {
            send(
                l,
                Level::Error,
                LISTENING,
                format_args!("Downstream handshake error: eof"),
            );
            send(
                l,
                Level::Error,
                LISTENING,
                format_args!("Failed to accept()"),
            );
        });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].2, "Failed to accept()");
    }
}
