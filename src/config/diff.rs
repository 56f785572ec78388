//! `tioga -c NEW -t --diff OLD`: what changes between two config files, grouped
//! (server, admin, access log, listeners, routes, pools, backends, certificates,
//! filters, tests), each change marked "in place" when a reload can apply it or "needs
//! upgrade" when only a new process (`-u` + SIGQUIT) can.
//!
//! The files are compared as YAML values, key by key, so a change is named as the
//! operator wrote it (a certificate file replaced under the same path is not seen:
//! a reload reads every certificate again anyway). What a reload applies follows the contract: routes, pools,
//! backends, filters, certificates, health settings and the access log swap in place;
//! a listener added or removed, its addresses, what shapes its accept path (its
//! protocol, TLS on or off, `client_ca`, `min_version`, connection limits, timeouts,
//! coalescing) and the process settings (`server.threads`, the pid file, the upgrade
//! socket, `admin.bind`) need an upgrade.

use serde_yaml::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// Groups, in the order they are printed.
const GROUPS: &[&str] = &[
    "server",
    "admin",
    "access_log",
    "listeners",
    "routes",
    "pools",
    "backends",
    "certificates",
    "filters",
    "tests",
];

/// Listener keys a reload applies in place (the rest shape the accept path).
const LISTENER_IN_PLACE: &[&str] = &[
    "healthz",
    "normalize_path",
    "max_request_header_size",
    "max_uri_length",
    "max_header_count",
];

/// `server` keys a reload applies in place.
const SERVER_IN_PLACE: &[&str] = &["grace_period", "graceful_shutdown_timeout"];

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// One of [`GROUPS`].
    pub(crate) group: &'static str,
    /// `+ name`, `- name` or `~ name: what → what`.
    pub(crate) what: String,
    /// Whether a reload applies it without a new process.
    pub(crate) in_place: bool,
}

/// The changes from the config file `old` to `new`.
pub(crate) fn diff(old: &Path, new: &Path) -> Result<Vec<Change>, String> {
    Ok(changes(&read(old)?, &read(new)?))
}

/// The changes from the config text `old` to `new` (a reload's).
pub(crate) fn diff_texts(old: &str, new: &str) -> Result<Vec<Change>, String> {
    let parse = |t: &str| serde_yaml::from_str::<Value>(t).map_err(|e| e.to_string());
    Ok(changes(&parse(old)?, &parse(new)?))
}

fn changes(old_root: &Value, new_root: &Value) -> Vec<Change> {
    let mut d = Diff {
        changes: Vec::new(),
    };
    d.section(old_root, new_root, "server", |key| {
        SERVER_IN_PLACE.contains(&key)
    });
    d.section(old_root, new_root, "admin", |key| key != "bind");
    d.whole(old_root, new_root, "access_log", "access_log");
    d.whole(old_root, new_root, "tests", "tests");
    d.whole(old_root, new_root, "reload_guard", "server");
    d.listeners(get(old_root, "listeners"), get(new_root, "listeners"));
    d.pools(get(old_root, "pools"), get(new_root, "pools"));
    d.changes
}

/// The changes for a person, grouped, with a closing count.
pub(crate) fn render(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".into();
    }
    let mut out = String::new();
    for group in GROUPS {
        let in_group: Vec<_> = changes.iter().filter(|c| c.group == *group).collect();
        if in_group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{group}:");
        for c in in_group {
            let how = if c.in_place {
                "in place"
            } else {
                "needs upgrade"
            };
            let _ = writeln!(out, "  {}  [{how}]", c.what);
        }
    }
    let upgrades = changes.iter().filter(|c| !c.in_place).count();
    let _ = writeln!(
        out,
        "{} change(s): {} in place, {upgrades} need an upgrade (-u + SIGQUIT)",
        changes.len(),
        changes.len() - upgrades
    );
    out
}

fn read(file: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key)
}

/// A value in one line (JSON flow style); `none` when absent.
fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "none".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| "?".into()),
    }
}

/// The union of two maps' keys, in order.
fn keys(a: Option<&Value>, b: Option<&Value>) -> BTreeSet<String> {
    let names = |v: Option<&Value>| {
        v.and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    names(a).into_iter().chain(names(b)).collect()
}

struct Diff {
    changes: Vec<Change>,
}

impl Diff {
    fn add(&mut self, group: &'static str, what: String, in_place: bool) {
        self.changes.push(Change {
            group,
            what,
            in_place,
        });
    }

    /// A `~ name: old → new` change, when the values differ.
    fn changed(
        &mut self,
        group: &'static str,
        name: &str,
        a: Option<&Value>,
        b: Option<&Value>,
        in_place: bool,
    ) {
        if a != b {
            self.add(
                group,
                format!("~ {name}: {} → {}", show(a), show(b)),
                in_place,
            );
        }
    }

    /// A section compared key by key.
    fn section(
        &mut self,
        old: &Value,
        new: &Value,
        group: &'static str,
        in_place: impl Fn(&str) -> bool,
    ) {
        let (a, b) = (get(old, group), get(new, group));
        for key in keys(a, b) {
            let (x, y) = (a.and_then(|v| get(v, &key)), b.and_then(|v| get(v, &key)));
            self.changed(group, &format!("{group}.{key}"), x, y, in_place(&key));
        }
    }

    /// A section compared whole (applied in place).
    fn whole(&mut self, old: &Value, new: &Value, key: &str, group: &'static str) {
        let (a, b) = (get(old, key), get(new, key));
        if a != b {
            let what = match (a, b) {
                (None, Some(_)) => format!("+ {key}"),
                (Some(_), None) => format!("- {key}"),
                _ => format!("~ {key} changed"),
            };
            self.add(group, what, true);
        }
    }

    fn listeners(&mut self, old: Option<&Value>, new: Option<&Value>) {
        for name in keys(old, new) {
            let a = old.and_then(|v| get(v, &name));
            let b = new.and_then(|v| get(v, &name));
            match (a, b) {
                (None, Some(l)) => self.add(
                    "listeners",
                    format!(
                        "+ {name} ({} on {})",
                        show(get(l, "protocol")),
                        show(get(l, "bind"))
                    ),
                    false,
                ),
                (Some(_), None) => self.add("listeners", format!("- {name}"), false),
                (Some(a), Some(b)) => self.listener(&name, a, b),
                (None, None) => {}
            }
        }
    }

    fn listener(&mut self, name: &str, a: &Value, b: &Value) {
        for key in keys(Some(a), Some(b)) {
            let (x, y) = (get(a, &key), get(b, &key));
            if x == y {
                continue;
            }
            match key.as_str() {
                "bind" => self.changed("listeners", &format!("{name}: bind"), x, y, false),
                "pool" => self.changed("routes", &format!("{name}: pool"), x, y, true),
                "routes" => self.routes(name, x, y),
                "filters" => self.filters(name, x, y),
                "tls" => self.tls(name, x, y),
                other => self.changed(
                    "listeners",
                    &format!("{name}: {other}"),
                    x,
                    y,
                    LISTENER_IN_PLACE.contains(&other),
                ),
            }
        }
    }

    fn routes(&mut self, listener: &str, a: Option<&Value>, b: Option<&Value>) {
        let list = |v: Option<&Value>| v.and_then(Value::as_sequence).cloned().unwrap_or_default();
        let (a, b) = (list(a), list(b));
        for i in 0..a.len().max(b.len()) {
            let name = format!("{listener}[{i}]");
            match (a.get(i), b.get(i)) {
                (None, Some(r)) => self.add(
                    "routes",
                    format!(
                        "+ {name} (match {}, pool {})",
                        show(get(r, "match")),
                        show(get(r, "pool"))
                    ),
                    true,
                ),
                (Some(_), None) => self.add("routes", format!("- {name}"), true),
                (Some(x), Some(y)) => {
                    for key in ["match", "pool"] {
                        self.changed(
                            "routes",
                            &format!("{name}: {key}"),
                            get(x, key),
                            get(y, key),
                            true,
                        );
                    }
                    self.filters(&name, get(x, "filters"), get(y, "filters"));
                }
                (None, None) => {}
            }
        }
    }

    /// A filter list compared item by item: `+ web[0].filters[1] {…}`, `- …`, `~ …`.
    fn filters(&mut self, owner: &str, a: Option<&Value>, b: Option<&Value>) {
        let list = |v: Option<&Value>| v.and_then(Value::as_sequence).cloned().unwrap_or_default();
        let (a, b) = (list(a), list(b));
        for i in 0..a.len().max(b.len()) {
            let name = format!("{owner}.filters[{i}]");
            match (a.get(i), b.get(i)) {
                (None, Some(f)) => self.add("filters", format!("+ {name} {}", show(Some(f))), true),
                (Some(f), None) => self.add("filters", format!("- {name} {}", show(Some(f))), true),
                (x, y) => self.changed("filters", &name, x, y, true),
            }
        }
    }

    /// TLS on or off, `client_ca` and `min_version` need an upgrade (the accept path
    /// changes); certificate changes, file contents included, apply in place.
    fn tls(&mut self, listener: &str, a: Option<&Value>, b: Option<&Value>) {
        match (a, b) {
            (None, Some(_)) => self.add("certificates", format!("+ {listener}: TLS on"), false),
            (Some(_), None) => self.add("certificates", format!("- {listener}: TLS off"), false),
            (Some(x), Some(y)) => {
                for key in keys(Some(x), Some(y)) {
                    let in_place = !matches!(key.as_str(), "client_ca" | "min_version");
                    let what = format!("{listener}: tls.{key}");
                    self.changed("certificates", &what, get(x, &key), get(y, &key), in_place);
                }
            }
            (None, None) => {}
        }
    }

    fn pools(&mut self, old: Option<&Value>, new: Option<&Value>) {
        for name in keys(old, new) {
            let a = old.and_then(|v| get(v, &name));
            let b = new.and_then(|v| get(v, &name));
            match (a, b) {
                (None, Some(p)) => self.add(
                    "pools",
                    format!(
                        "+ {name} ({} backends)",
                        get(p, "backends")
                            .and_then(Value::as_sequence)
                            .map_or(0, Vec::len)
                    ),
                    true,
                ),
                (Some(_), None) => self.add("pools", format!("- {name}"), true),
                (Some(a), Some(b)) => {
                    for key in keys(Some(a), Some(b)) {
                        if key == "backends" {
                            self.backends(&name, get(a, &key), get(b, &key));
                        } else {
                            self.changed(
                                "pools",
                                &format!("{name}: {key}"),
                                get(a, &key),
                                get(b, &key),
                                true,
                            );
                        }
                    }
                }
                (None, None) => {}
            }
        }
    }

    fn backends(&mut self, pool: &str, a: Option<&Value>, b: Option<&Value>) {
        let (a, b) = (backend_weights(a), backend_weights(b));
        for (addr, weight) in &b {
            match a.iter().find(|(x, _)| x == addr) {
                None => self.add(
                    "backends",
                    format!("+ {pool} {addr} (weight {weight})"),
                    true,
                ),
                Some((_, w)) if w != weight => self.add(
                    "backends",
                    format!("~ {pool} {addr}: weight {w} → {weight}"),
                    true,
                ),
                Some(_) => {}
            }
        }
        for (addr, _) in &a {
            if !b.iter().any(|(x, _)| x == addr) {
                self.add("backends", format!("- {pool} {addr}"), true);
            }
        }
    }
}

/// `(address, weight)` of each backend entry (`"host:port"` or `{address, weight}`).
fn backend_weights(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_sequence)
        .map(|list| {
            list.iter()
                .map(|b| match b {
                    Value::Mapping(m) => (
                        show(m.get("address")),
                        m.get("weight").map_or("1".into(), |w| show(Some(w))),
                    ),
                    other => (show(Some(other)), "1".into()),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(old: &str, new: &str) -> Vec<(String, &'static str, bool)> {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
        std::fs::write(&a, old).unwrap();
        std::fs::write(&b, new).unwrap();
        diff(&a, &b)
            .unwrap()
            .into_iter()
            .map(|c| (c.what, c.group, c.in_place))
            .collect()
    }

    const BASE: &str = "
admin: {bind: 127.0.0.1:9900}
pools:
  api: {backends: [127.0.0.1:1, {address: 127.0.0.1:2, weight: 2}]}
listeners:
  web:
    protocol: http
    bind: 127.0.0.1:80
    routes:
      - match: {path_prefix: /a/}
        pool: api
  db: {protocol: tcp, bind: 127.0.0.1:5432, pool: api}
";

    #[test]
    fn the_same_file_has_no_changes() {
        assert!(changes(BASE, BASE).is_empty());
        assert_eq!(render(&[]), "no changes\n");
    }

    #[test]
    fn listeners_added_removed_and_rebound_need_an_upgrade() {
        let new = BASE
            .replace(
                "  db: {protocol: tcp, bind: 127.0.0.1:5432, pool: api}\n",
                "",
            )
            .replace("bind: 127.0.0.1:80", "bind: [127.0.0.1:80, 127.0.0.1:81]")
            + "  raw: {protocol: tcp, bind: 127.0.0.1:7000, pool: api}\n";
        assert_eq!(
            changes(BASE, &new),
            [
                ("- db".to_string(), "listeners", false),
                (
                    "+ raw (tcp on 127.0.0.1:7000)".to_string(),
                    "listeners",
                    false
                ),
                (
                    "~ web: bind: 127.0.0.1:80 → [\"127.0.0.1:80\",\"127.0.0.1:81\"]".to_string(),
                    "listeners",
                    false
                ),
            ]
        );
    }

    #[test]
    fn accept_path_and_process_settings_need_an_upgrade() {
        let new = BASE
            .replace("bind: 127.0.0.1:9900", "bind: 127.0.0.1:9901")
            .replace("protocol: tcp, bind", "protocol: tcp, max_connections: 10, bind")
            .replace(
                "    bind: 127.0.0.1:80\n",
                "    bind: 127.0.0.1:80\n    tls: {cert: c.pem, key: k.pem}\n    max_uri_length: 4096\n",
            );
        let got = changes(BASE, &new);
        let how = |what: &str| got.iter().find(|c| c.0.starts_with(what)).map(|c| c.2);
        assert_eq!(how("~ admin.bind"), Some(false));
        assert_eq!(how("~ db: max_connections"), Some(false));
        assert_eq!(how("+ web: TLS on"), Some(false));
        assert_eq!(how("~ web: max_uri_length"), Some(true));
        assert_eq!(got.len(), 4, "{got:?}");
    }

    #[test]
    fn backends_routes_pools_and_filters_apply_in_place() {
        let new = BASE
            .replace(
                "{address: 127.0.0.1:2, weight: 2}",
                "127.0.0.1:2, 127.0.0.1:3",
            )
            .replace("[127.0.0.1:1, ", "[")
            .replace("{path_prefix: /a/}", "{path_prefix: /b/}")
            .replace(
                "        pool: api\n",
                "        pool: api\n        filters: [{deny: [10.0.0.0/8]}]\n",
            )
            .replace(
                "pools:\n",
                "pools:\n  new: {backends: [127.0.0.1:4], balance: random}\n",
            );
        let got = changes(BASE, &new);
        assert!(got.iter().all(|c| c.2), "{got:?}");
        let whats: Vec<_> = got.iter().map(|c| (c.1, c.0.as_str())).collect();
        assert_eq!(
            whats,
            [
                (
                    "routes",
                    "~ web[0]: match: {\"path_prefix\":\"/a/\"} → {\"path_prefix\":\"/b/\"}"
                ),
                ("filters", "+ web[0].filters[0] {\"deny\":[\"10.0.0.0/8\"]}"),
                ("backends", "~ api 127.0.0.1:2: weight 2 → 1"),
                ("backends", "+ api 127.0.0.1:3 (weight 1)"),
                ("backends", "- api 127.0.0.1:1"),
                ("pools", "+ new (1 backends)"),
            ]
        );
    }
}
