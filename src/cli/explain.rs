//! `tioga -c FILE explain METHOD URL [-H 'Name: value']… [--from IP] [--json]`: the
//! config's route tables asked offline (every backend counted up, as no health check
//! has run), printed for a person or as the JSON `GET /explain` also returns.

use crate::config::Config;
use crate::observability::explain::{parse_header, ExplainQuery};
use crate::server::explain::{Explainer, Explanation};
use std::fmt::Write as _;
use std::process::ExitCode;

/// Exit code when no route matches (the request would get 404).
const NO_ROUTE: u8 = 3;

/// Runs the subcommand; exit 0 with a route, 3 without, 2 for a bad request.
pub(crate) fn run(
    config: &Config,
    method: &str,
    url: &str,
    headers: &[String],
    from: Option<String>,
    json: bool,
) -> ExitCode {
    let headers = match headers.iter().map(|h| parse_header(h)).collect() {
        Ok(h) => h,
        Err(e) => return bad(&e),
    };
    let q = ExplainQuery {
        method: method.to_string(),
        url: url.to_string(),
        headers,
        from,
    };
    let explainer = Explainer::offline(config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return bad(&e.to_string()),
    };
    let got = match runtime.block_on(explainer.explain(&q)) {
        Ok(got) => got,
        Err(e) => return bad(&e),
    };
    if json {
        println!("{}", serde_json::to_string(&got).unwrap_or_default());
    } else {
        print!("{}", render(&q, &got));
    }
    if got.route.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NO_ROUTE)
    }
}

fn bad(message: &str) -> ExitCode {
    eprintln!("tioga explain: {message}");
    ExitCode::from(2)
}

/// The explanation for a person.
fn render(q: &ExplainQuery, got: &Explanation) -> String {
    let mut out = format!(
        "{} {} from {} on listener {}\n",
        q.method.to_ascii_uppercase(),
        q.url,
        q.from.as_deref().unwrap_or("127.0.0.1"),
        got.listener
    );
    for r in &got.routes {
        let verdict = match r.failed {
            None => "matched".to_string(),
            Some(condition) => format!("no match: {condition}"),
        };
        let _ = writeln!(out, "  {:<16} {verdict}", r.route);
    }
    match &got.route {
        None => {
            let status = got.status.map_or("-".into(), |s| s.to_string());
            let _ = writeln!(out, "no route: {status}");
        }
        Some(route) => {
            let _ = write!(out, "route {route}");
            if let Some(pool) = &got.pool {
                let _ = write!(out, ", pool {pool}");
            }
            if !got.filters.is_empty() {
                let _ = write!(out, ", filters {}", got.filters.join(", "));
            }
            if let Some(backend) = &got.backend {
                let _ = write!(out, ", backend {backend}");
            }
            if let Some(status) = got.status {
                let _ = write!(out, ", answered {status} without a backend");
            }
            out.push('\n');
        }
    }
    out
}
