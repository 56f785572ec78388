//! Limits checked on the raw text before any YAML parser sees it, so that a hostile
//! file is refused at once instead of costing the parser time (parsing deep nesting
//! is quadratic): the file's size, and how deep its collections nest.

/// The largest config file: far above thousands of routes.
pub(super) const MAX_SIZE: usize = 8 * 1024 * 1024;
/// The deepest nesting: Tioga's own format needs under 10 levels.
pub(super) const MAX_DEPTH: usize = 64;

/// What is wrong with the file's shape, with the line where it shows.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooBig {
    pub(super) line: Option<usize>,
    pub(super) message: String,
}

/// Checks size and nesting depth (block indentation, `- ` items and `[`/`{` flow
/// collections together), skipping comments and quoted strings.
pub(super) fn check(text: &str) -> Result<(), TooBig> {
    if text.len() > MAX_SIZE {
        return Err(TooBig {
            line: None,
            message: format!(
                "the file is {} bytes; a config may be at most {MAX_SIZE} bytes",
                text.len()
            ),
        });
    }
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if flow == 0 {
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent = line.len() - body.len();
            let mut rest = body;
            // `- - x` nests a sequence per dash on one line.
            let mut dashes = 0;
            while let Some(r) = rest
                .strip_prefix("- ")
                .or(rest.strip_prefix('-').filter(|r| r.is_empty()))
            {
                dashes += 1;
                rest = r.trim_start_matches(' ');
            }
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            check_depth(indents.len() + dashes, n)?;
        }
        flow = scan_flow(line, flow, indents.len(), n)?;
    }
    Ok(())
}

/// Follows `[`/`{` nesting through `line`; returns the flow depth at its end.
fn scan_flow(line: &str, mut flow: usize, block: usize, n: usize) -> Result<usize, TooBig> {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for c in line.chars() {
        match (quote, c) {
            (Some('"'), '"') if prev != '\\' => quote = None,
            (Some('\''), '\'') => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if prev == ' ' => break,
            (None, '[' | '{') => {
                flow += 1;
                check_depth(block + flow, n)?;
            }
            (None, ']' | '}') => flow = flow.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    Ok(flow)
}

fn check_depth(depth: usize, n: usize) -> Result<(), TooBig> {
    if depth > MAX_DEPTH {
        return Err(TooBig {
            line: Some(n + 1),
            message: format!("nested more than {MAX_DEPTH} levels deep"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_files_pass() {
        let text = "a:\n  b:\n    - c: [1, {d: \"[[[[\"}]\n    - '{{{'  # [[[\n";
        assert_eq!(check(text), Ok(()));
    }

    #[test]
    fn deep_flow_nesting_is_refused_quickly() {
        let text = format!("a: {}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = check(&text).unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("64 levels"));
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let text: String = (0..80)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert_eq!(check(&text).unwrap_err().line, Some(65));
        let dashes = format!("a:\n{}x\n", "- ".repeat(100));
        assert_eq!(check(&dashes).unwrap_err().line, Some(2));
    }

    #[test]
    fn a_huge_file_is_refused_by_size() {
        let text = "#".repeat(MAX_SIZE + 1);
        assert!(check(&text).unwrap_err().message.contains("at most"));
    }
}
