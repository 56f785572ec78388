//! Problems found in a config, each with its key path, collected instead of stopping
//! at the first; and the serde glue that turns a deserialization error into one.

use super::error::Problem;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

/// Collects problems with their key paths.
#[derive(Default)]
pub(super) struct Problems {
    pub(super) list: Vec<Problem>,
}

impl Problems {
    /// Records a problem at `path`.
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        // One problem, one line: fold multi-line messages (regex errors draw a caret).
        let message: String = message.into();
        let message = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        self.list.push(Problem {
            path: path.into(),
            line: None,
            message,
        });
    }

    /// Deserializes `value` as `T`, recording every error with its key path. serde stops
    /// at the first error, so an offending map key is reported, taken out, and the rest
    /// deserialized again: one bad key does not hide the others. Returns `None` when the
    /// section cannot be built without the keys taken out.
    pub(super) fn parse<T: DeserializeOwned>(&mut self, path: &str, value: &Value) -> Option<T> {
        let mut value = value.clone();
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..64 {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let inner = e.path().to_string();
            let inner = if inner == "." { String::new() } else { inner };
            let (key, message) = describe_error(&inner, &e.into_inner().to_string());
            if let Some(field) = missing_field(&message) {
                if removed.contains(&join(&inner, field)) {
                    return None; // a consequence of a key already reported
                }
            }
            self.add(join(path, &key), message);
            if !remove_key(&mut value, &key) {
                return None;
            }
            removed.push(key);
        }
        None
    }
}

/// The key path and a readable message for a serde error at `inner`.
fn describe_error(inner: &str, message: &str) -> (String, String) {
    // serde names an unknown key in the message but not always in the path.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            let field = &rest[..end];
            let key = if inner == field || inner.ends_with(&format!(".{field}")) {
                inner.to_string()
            } else {
                join(inner, field)
            };
            let mut text = format!("unknown key{}", &rest[end + 1..])
                .replace(", expected one of", " (expected one of")
                .replace(", expected", " (expected");
            if text.contains(" (expected") {
                text.push(')');
            }
            return (key, text);
        }
    }
    let text = if message.contains("untagged enum BackendEntry") {
        "expected `host:port` or a map `{address: host:port, weight: N}`".to_string()
    } else if message.contains("untagged enum OneOrMany") {
        "expected one value or a list of values".to_string()
    } else {
        message.to_string()
    };
    (inner.to_string(), text)
}

/// `missing field `x`` → `x`.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Removes the map key at dotted `path` (no list indexes) from `value`.
fn remove_key(value: &mut Value, path: &str) -> bool {
    if path.is_empty() || path.contains('[') {
        return false;
    }
    let mut node = value;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(map) = node.as_mapping_mut() else {
            return false;
        };
        if parts.peek().is_none() {
            return map.remove(part).is_some();
        }
        match map.get_mut(part) {
            Some(next) => node = next,
            None => return false,
        }
    }
    false
}

/// `a` + `.b`, or `a` + `[0]` for index segments.
pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, _) => b.to_string(),
        _ if b.starts_with('[') => format!("{a}{b}"),
        _ => format!("{a}.{b}"),
    }
}
