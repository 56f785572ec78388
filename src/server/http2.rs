//! Pingora's HTTP server options for an HTTP listener's HTTP/2.

use pingora_core::apps::HttpServerOptions;
use std::time::Duration;

/// h2c prior knowledge when `h2c` (plain listeners with `http2: true`); an HTTP/2
/// connection without a stream for `idle` is closed (the HTTP/1 `keepalive_timeout`'s
/// counterpart, as the accept stack's head deadlines are HTTP/1 only).
pub(super) fn server_options(h2c: bool, idle: Duration) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    options.h2_idle_timeout = Some(idle);
    options
}
