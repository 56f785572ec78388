//! Where each key of a YAML file stands: a map from key path (`pools.web.backends[1]`)
//! to its line, so that problems found after parsing can still name the line.
//!
//! serde_yaml reports a line for syntax errors only; its `Value` forgets positions.
//! This index walks the file once more with yaml-rust2's event parser and records the
//! line of every map key and sequence item, in the same path notation that
//! `serde_path_to_error` prints.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Key path → 1-based line.
#[derive(Debug, Default)]
pub(crate) struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Indexes `text`. A file that does not parse gives an empty index (the syntax
    /// error itself is reported by serde_yaml with its line).
    pub(crate) fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Self::default();
        }
        Self {
            lines: walker.lines,
        }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// One open collection while walking the events.
enum Frame {
    /// A map: the path of the map and the key whose value comes next, if any.
    Map { path: String, key: Option<String> },
    /// A sequence: its path and the index of the next item.
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Walker {
    /// Path of the node that starts now, recording its line. Returns `None` when the
    /// node is a map key rather than a value.
    fn enter_node(&mut self, mark: &Marker) -> Option<String> {
        let path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                p
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) if path.is_empty() => k,
                Some(k) => format!("{path}.{k}"),
                None => return None,
            },
        };
        self.lines.entry(path.clone()).or_insert(mark.line());
        Some(path)
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) if self.enter_node(&mark).is_none() => {
                // A map key: remember it (and its line, as the key's own line).
                if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                    let full = if path.is_empty() {
                        text.clone()
                    } else {
                        format!("{path}.{text}")
                    };
                    self.lines.insert(full, mark.line());
                    *key = Some(text);
                }
            }
            Event::MappingStart(..) => {
                let path = self.enter_node(&mark).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_node(&mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.enter_node(&mark);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keys_and_items() {
        let idx = LineIndex::build(
            "pools:\n  web:\n    backends:\n      - 127.0.0.1:1\n      - address: x\n        weight: 3\nlisteners: {}\n",
        );
        assert_eq!(idx.line("pools"), Some(1));
        assert_eq!(idx.line("pools.web"), Some(2));
        assert_eq!(idx.line("pools.web.backends[0]"), Some(4));
        assert_eq!(idx.line("pools.web.backends[1].weight"), Some(6));
        assert_eq!(idx.line("listeners"), Some(7));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(idx.line("pools.web.backends[1].nope"), Some(5));
        assert_eq!(idx.line("nothing"), None);
    }
}
