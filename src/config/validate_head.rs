//! An HTTP listener's rules for request heads (`normalize_path`,
//! `max_request_header_size`, `max_uri_length`, `max_header_count`,
//! `request_header_timeout`, `keepalive_timeout`), each checked against the range it
//! may take.

use super::file::ListenerSection;
use super::problems::{join, Problems};
use super::values::{duration, size};
use crate::vocab::HeadRules;

/// Pingora refuses heads past about 1 MiB and more than 256 header lines itself.
const MAX_HEAD: usize = 1024 * 1024;
const MAX_COUNT: usize = 256;

/// The rules of the http listener at `path`.
pub(super) fn rules(path: &str, s: &ListenerSection, p: &mut Problems) -> HeadRules {
    let d = HeadRules::default();
    let head_path = join(path, "max_request_header_size");
    let uri_path = join(path, "max_uri_length");
    let count_path = join(path, "max_header_count");
    let head = s
        .max_request_header_size
        .as_ref()
        .map(|t| size(&t.0, &head_path, 1024..=MAX_HEAD, p));
    let uri = s
        .max_uri_length
        .as_ref()
        .map(|t| size(&t.0, &uri_path, 64..=MAX_HEAD, p));
    let count = s.max_header_count.filter(|n| {
        let ok = (1..=MAX_COUNT).contains(n);
        if !ok {
            p.add(
                &count_path,
                format!("{n} is out of range: 1 to {MAX_COUNT}"),
            );
        }
        ok
    });
    HeadRules {
        normalize_path: s.normalize_path.unwrap_or(d.normalize_path),
        max_header_size: head.flatten().unwrap_or(d.max_header_size),
        max_uri_length: uri.flatten().unwrap_or(d.max_uri_length),
        max_header_count: count.unwrap_or(d.max_header_count),
        request_header_timeout: duration(
            s.request_header_timeout.as_deref(),
            &join(path, "request_header_timeout"),
            "10s",
            p,
        ),
        keepalive_timeout: duration(
            s.keepalive_timeout.as_deref(),
            &join(path, "keepalive_timeout"),
            "60s",
            p,
        ),
    }
}

/// Records a problem for each head rule given on a tcp listener.
pub(super) fn not_on_tcp(path: &str, s: &ListenerSection, p: &mut Problems) {
    let given = [
        ("normalize_path", s.normalize_path.is_some()),
        (
            "max_request_header_size",
            s.max_request_header_size.is_some(),
        ),
        ("max_uri_length", s.max_uri_length.is_some()),
        ("max_header_count", s.max_header_count.is_some()),
        ("request_header_timeout", s.request_header_timeout.is_some()),
        ("keepalive_timeout", s.keepalive_timeout.is_some()),
    ];
    for (key, _) in given.iter().filter(|(_, given)| *given) {
        p.add(join(path, key), "is for http listeners only");
    }
}
