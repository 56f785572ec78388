//! Readers for the plain values of the file (durations, addresses, pool names) that
//! record a problem at the key path instead of failing.

use super::problems::Problems;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The longest duration any key takes: longer ones are mistakes, and would overflow
/// timers.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration such as `500ms`, `1s`, `2m`; records a problem and returns the
/// default when it is not one, or is zero.
pub(super) fn duration(
    text: Option<&str>,
    path: &str,
    default: &str,
    p: &mut Problems,
) -> Duration {
    parse_duration(text, path, default, false, p)
}

/// [`duration`] where zero is meaningful (`server.grace_period: 0s`: no grace).
pub(super) fn duration_or_zero(
    text: Option<&str>,
    path: &str,
    default: &str,
    p: &mut Problems,
) -> Duration {
    parse_duration(text, path, default, true, p)
}

fn parse_duration(
    text: Option<&str>,
    path: &str,
    default: &str,
    zero_ok: bool,
    p: &mut Problems,
) -> Duration {
    let fallback = humantime::parse_duration(default).expect("built-in default");
    let Some(text) = text else { return fallback };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d > MAX_DURATION => {
            p.add(path, format!("`{text}` is too long: at most 24h"));
            fallback
        }
        Ok(d) if zero_ok || !d.is_zero() => d,
        Ok(_) => {
            p.add(
                path,
                format!("`{text}` is zero: give a positive duration such as 500ms or 1s"),
            );
            fallback
        }
        Err(_) => {
            p.add(
                path,
                format!("`{text}` is not a duration: write it like 500ms, 1s or 2m"),
            );
            fallback
        }
    }
}

/// Parses `host:port` (`[::1]:80` for IPv6); a host name is resolved once, now.
/// Port 0 is refused: it would listen on (or connect to) no port anyone chose.
pub(super) fn address(text: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    let addr = any_address(text, path, p)?;
    if addr.port() == 0 {
        p.add(
            path,
            format!("`{text}`: port 0 is out of range: give a port from 1 to 65535"),
        );
        return None;
    }
    Some(addr)
}

fn any_address(text: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let hint = "expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080";
    if text
        .rsplit_once(':')
        .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
    {
        p.add(path, format!("`{text}` is not an address: {hint}"));
        return None;
    }
    match text.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Some(addr),
        _ => {
            p.add(
                path,
                format!("`{text}` is not an address (the host does not resolve): {hint}"),
            );
            None
        }
    }
}

/// Records a problem when `pool` is not among the `known` pools.
pub(super) fn check_pool(pool: &str, at: String, known: &[&str], p: &mut Problems) {
    if !known.contains(&pool) {
        p.add(
            at,
            format!("unknown pool \"{pool}\" (known: {})", known.join(", ")),
        );
    }
}

/// Parses a size in bytes: `65536`, `64KiB`, `64k`, `1MiB`, `1m` (powers of 1024), and
/// records a problem when it is not one or lies outside `range`.
pub(super) fn size(
    text: &str,
    path: &str,
    range: std::ops::RangeInclusive<usize>,
    p: &mut Problems,
) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => 0,
    };
    let bytes = digits
        .parse::<usize>()
        .ok()
        .filter(|_| factor > 0)
        .and_then(|n| n.checked_mul(factor));
    let Some(bytes) = bytes else {
        p.add(
            path,
            format!("`{text}` is not a size: write it in bytes (65536) or like 64KiB or 1MiB"),
        );
        return None;
    };
    if !range.contains(&bytes) {
        p.add(
            path,
            format!(
                "{bytes} bytes is out of range: {} to {} bytes",
                range.start(),
                range.end()
            ),
        );
        return None;
    }
    Some(bytes)
}
