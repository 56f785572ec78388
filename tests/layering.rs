//! Keeps the crate's layers honest: every `crate::…` and `super::…` path in `src/`
//! must point down the layer table of `src/lib.rs`, and the files inside one module
//! must not import each other in a circle. A child may always use its parent's items
//! (`use super::*`), so those edges are not counted.
//!
//! This reads the source text (comments removed), so it needs no build of its own and
//! fails with the file, line and path that runs back up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of each top-level module: a module may import only lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("vocab", 0),
    ("routing", 1),
    ("upstream", 1),
    ("filter", 2),
    ("observability", 2),
    ("config", 3),
    ("proxy", 3),
    ("server", 4),
    ("cli", 5),
    ("fuzzing", 5),
];

/// A module path such as `["config", "validate"]`; the crate root is empty.
type ModPath = Vec<String>;

/// One reference from a file to a module path.
struct Reference {
    from: ModPath,
    line: usize,
    text: String,
    to: ModPath,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` with its module path (`main.rs` is another crate).
fn modules(dir: &Path, prefix: &ModPath, out: &mut BTreeMap<ModPath, PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut p = prefix.clone();
            p.push(name);
            modules(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut p = prefix.clone();
            match name.as_str() {
                "mod" => {}
                "lib" if prefix.is_empty() => {}
                "main" if prefix.is_empty() => continue,
                _ => p.push(name),
            }
            out.insert(p, path);
        }
    }
}

/// The code of a line without its comment.
fn code(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    line.split(" //").next().unwrap_or(line)
}

/// The `crate::a::b` and `super::…::x` paths in `text`, resolved against `from`.
fn paths_in(text: &str, from: &ModPath) -> Vec<ModPath> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for (start, _) in text
        .match_indices("crate::")
        .chain(text.match_indices("super::"))
    {
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let rest = &text[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let segments: Vec<&str> = rest[..end].split("::").filter(|s| !s.is_empty()).collect();
        let mut base: ModPath = Vec::new();
        let mut i = 0;
        if segments[0] == "crate" {
            i = 1;
        } else {
            // `super` in `a/b.rs` (module a::b) is `a`; in `a/b/mod.rs` also `a`.
            base = from.clone();
            while i < segments.len() && segments[i] == "super" {
                base.pop();
                i += 1;
            }
        }
        base.extend(segments[i..].iter().map(|s| s.to_string()));
        found.push(base);
    }
    found
}

/// The longest prefix of `path` that is a module (a file) of the crate.
fn resolve(path: &ModPath, known: &BTreeMap<ModPath, PathBuf>) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains_key(p))
        .unwrap_or_default()
}

fn references() -> (BTreeMap<ModPath, PathBuf>, Vec<Reference>) {
    let mut known = BTreeMap::new();
    modules(&src_dir(), &Vec::new(), &mut known);
    let mut refs = Vec::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for to in paths_in(code(line), module) {
                refs.push(Reference {
                    from: module.clone(),
                    line: n + 1,
                    text: line.trim().to_string(),
                    to: resolve(&to, &known),
                });
            }
        }
    }
    (known, refs)
}

fn layer(module: &ModPath) -> Option<u8> {
    let top = module.first()?;
    Some(
        LAYERS
            .iter()
            .find(|(name, _)| name == top)
            .unwrap_or_else(|| panic!("module `{top}` has no layer in tests/layering.rs"))
            .1,
    )
}

fn file_of(known: &BTreeMap<ModPath, PathBuf>, m: &ModPath) -> String {
    known[m]
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn imports_point_down_the_layers() {
    let (known, refs) = references();
    let mut wrong = Vec::new();
    for r in &refs {
        let (Some(from), Some(to)) = (layer(&r.from), layer(&r.to)) else {
            continue; // the crate root may use anything; nothing below may use it
        };
        if r.from[0] != r.to[0] && to >= from {
            wrong.push(format!(
                "{}:{}: `{}` (layer {from}) uses `{}` (layer {to}): {}",
                file_of(&known, &r.from),
                r.line,
                r.from.join("::"),
                r.to.join("::"),
                r.text
            ));
        }
    }
    for r in refs
        .iter()
        .filter(|r| r.to.is_empty() && !r.from.is_empty())
    {
        wrong.push(format!(
            "{}:{}: uses the crate root: {}",
            file_of(&known, &r.from),
            r.line,
            r.text
        ));
    }
    assert!(
        wrong.is_empty(),
        "imports that run back up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_circles_between_files() {
    let (known, refs) = references();
    let mut edges: BTreeMap<&ModPath, BTreeSet<&ModPath>> = BTreeMap::new();
    for r in &refs {
        let to_ancestor = r.to.len() < r.from.len() && r.from.starts_with(&r.to);
        if r.to != r.from && !to_ancestor {
            edges.entry(&r.from).or_default().insert(&r.to);
        }
    }
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a ModPath,
        edges: &BTreeMap<&'a ModPath, BTreeSet<&'a ModPath>>,
        stack: &mut Vec<&'a ModPath>,
        done: &mut BTreeSet<&'a ModPath>,
    ) -> Option<Vec<&'a ModPath>> {
        if let Some(at) = stack.iter().position(|s| *s == m) {
            let mut circle = stack[at..].to_vec();
            circle.push(m);
            return Some(circle);
        }
        if !done.insert(m) {
            return None;
        }
        stack.push(m);
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in known.keys() {
        if let Some(circle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            let names: Vec<String> = circle.iter().map(|m| file_of(&known, m)).collect();
            panic!("files that import each other: {}", names.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_a_path_that_runs_back_up() {
    let from: ModPath = vec!["routing".into(), "key".into()];
    let found = paths_in(code("use crate::config::HashKey; // x"), &from);
    assert_eq!(
        found,
        vec![vec!["config".to_string(), "HashKey".to_string()]]
    );
    assert_eq!(
        paths_in("use super::cookie_value;", &from),
        vec![vec!["routing".to_string(), "cookie_value".to_string()]]
    );
    assert!(paths_in(code("// crate::config"), &from).is_empty());
    assert!(layer(&vec!["config".into()]) > layer(&vec!["routing".into()]));
}
