//! Path normalisation before routing, so that a route (and the `allow`/`deny` filters
//! on it) sees the path a backend will act on, not a spelling of it.
//!
//! Applied to the path only (the query is left alone), in this order:
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded,
//!    as RFC 3986 §6.2.2.2 allows (`%2e` is `.`, `%41` is `A`); other escapes stay,
//!    with their hex digits uppercased; a malformed escape or an encoded NUL is refused;
//! 2. repeated slashes are merged (`//` → `/`), as nginx's `merge_slashes` does;
//! 3. dot segments are removed (RFC 3986 §5.2.4: `/a/./b/../c` → `/a/c`); `..` above
//!    the root stays at the root.
//!
//! Spellings that backends disagree on are refused instead of guessed: a dot segment
//! with parameters (`..;x`, which Tomcat reads as `..`), and a segment whose encoded
//! slashes or backslashes (`%2F`, `%5C`) hide a dot segment (`..%2Fadmin`). An encoded
//! slash that hides nothing (`group%2Fproject`) passes unchanged.
//!
//! A path that is already normal, the common case, is checked in one pass and not
//! copied.

use std::borrow::Cow;
use std::fmt;

/// Why a path was refused (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadPath {
    /// A `%` not followed by two hex digits.
    Escape,
    /// `%00`.
    Nul,
    /// A dot segment spelled in a way backends read differently.
    Ambiguous,
}

impl fmt::Display for BadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadPath::Escape => "a malformed percent-escape",
            BadPath::Nul => "an encoded NUL",
            BadPath::Ambiguous => "an ambiguous dot segment",
        })
    }
}

/// The normal form of `path`; borrowed when `path` is already normal. Paths that do
/// not start with `/` (`*`, or empty) are returned as they are.
pub(crate) fn normalize_path(path: &str) -> Result<Cow<'_, str>, BadPath> {
    if !path.starts_with('/') || is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        check_segment(segment)?;
        match *segment {
            "" if i < last => {}
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    // A path that ended in a dot segment names a directory: keep its trailing slash.
    let dir = matches!(segments[last], "." | "..");
    let mut normal = String::with_capacity(decoded.len());
    for s in &out {
        normal.push('/');
        normal.push_str(s);
    }
    if dir || normal.is_empty() {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

/// True when `path` has no escape, no `//` and no dot segment.
fn is_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.contains(&b'%') {
        return false;
    }
    b.iter().enumerate().all(|(i, &c)| {
        if c != b'/' {
            return true;
        }
        let rest = &b[i + 1..];
        !(rest.first() == Some(&b'/') || is_dot_start(rest))
    })
}

/// Whether `rest` (what follows a `/`) starts with a dot segment, with or without
/// parameters.
fn is_dot_start(rest: &[u8]) -> bool {
    let seg = rest.split(|&c| c == b'/').next().unwrap_or_default();
    let name = seg.split(|&c| c == b';').next().unwrap_or_default();
    name == b"." || name == b".."
}

/// Refuses the spellings backends disagree on (see the module docs).
fn check_segment(segment: &str) -> Result<(), BadPath> {
    let name = segment.split(';').next().unwrap_or_default();
    if name != segment && (name == "." || name == "..") {
        return Err(BadPath::Ambiguous);
    }
    let b = segment.as_bytes();
    let hides_separator = b.windows(3).any(|w| {
        w[0] == b'%' && ((w[1] == b'2' && w[2] == b'F') || (w[1] == b'5' && w[2] == b'C'))
    });
    if hides_separator {
        let full = segment.replace("%2F", "/").replace("%5C", "/");
        if full.split(['/', ';']).any(|s| s == "." || s == "..") {
            return Err(BadPath::Ambiguous);
        }
    }
    Ok(())
}

/// Decodes escapes of unreserved characters and uppercases the others' hex digits.
fn decode_unreserved(path: &str) -> Result<String, BadPath> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            let next = b[i..]
                .iter()
                .position(|&c| c == b'%')
                .map_or(b.len(), |n| i + n);
            out.push_str(&path[i..next]);
            i = next;
            continue;
        }
        let hex = |j: usize| b.get(j).and_then(|&c| (c as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err(BadPath::Escape);
        };
        let byte = (hi * 16 + lo) as u8;
        if byte == 0 {
            return Err(BadPath::Nul);
        }
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(b[i + 1].to_ascii_uppercase() as char);
            out.push(b[i + 2].to_ascii_uppercase() as char);
        }
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(path: &str) -> String {
        normalize_path(path).unwrap().into_owned()
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/a.b/c..d/.e",
            "/v1/users;jsessionid=1",
            "*",
            "",
        ] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn the_issues_bypasses_all_leave_public() {
        for p in [
            "/public/../admin",
            "/public/./../admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public/x/../../admin",
            "/public;/../admin",
        ] {
            assert_eq!(n(p), "/admin", "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/a/./b/../c"), "/a/c");
        assert_eq!(n("//a///b//"), "/a/b/");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a/%2e"), "/a/");
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded_others_kept() {
        assert_eq!(n("/%41%7e%2D"), "/A~-");
        assert_eq!(
            n("/a%2fb"),
            "/a%2Fb",
            "an encoded slash hiding nothing stays"
        );
        assert_eq!(n("/group%2Fproject/x/../y"), "/group%2Fproject/y");
        assert_eq!(n("/%e2%82%ac"), "/%E2%82%AC");
    }

    #[test]
    fn ambiguous_and_malformed_paths_are_refused() {
        assert_eq!(normalize_path("/a/%zz"), Err(BadPath::Escape));
        assert_eq!(normalize_path("/a/%2"), Err(BadPath::Escape));
        assert_eq!(normalize_path("/a%00b"), Err(BadPath::Nul));
        assert_eq!(normalize_path("/public/..;/admin"), Err(BadPath::Ambiguous));
        assert_eq!(normalize_path("/public/.;x/admin"), Err(BadPath::Ambiguous));
        assert_eq!(
            normalize_path("/public/..%2fadmin"),
            Err(BadPath::Ambiguous)
        );
        assert_eq!(
            normalize_path("/public/%2e%2e%5cadmin"),
            Err(BadPath::Ambiguous)
        );
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for p in ["/a/../b//c/./", "/%2e%2e/x", "/a%2fb/../c", "/x/..", "//"] {
            let once = n(p);
            assert_eq!(n(&once), once, "{p}");
        }
    }
}
