//! Runs a config's `tests:` against its own route tables (built as `tioga explain`
//! builds them, every backend counted up) and turns each failure into a config problem
//! at `tests[i]`, with its line and expected against actual.

use super::explain::{Explainer, Explanation};
use crate::config::tests_key::{ConfigTest, Expect};
use crate::config::{Config, ConfigError, Problem};
use crate::observability::explain::ExplainQuery;

/// Runs every test of `config`; `Err` lists each failing one.
pub(crate) fn run(config: &Config) -> Result<(), ConfigError> {
    if config.tests.is_empty() {
        return Ok(());
    }
    let explainer = Explainer::offline(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ConfigError::Read {
            file: config.file.clone(),
            source,
        })?;
    let problems: Vec<Problem> = runtime.block_on(async {
        let mut problems = Vec::new();
        for t in &config.tests {
            if let Some(message) = check(&explainer, t).await {
                problems.push(Problem {
                    path: t.path.clone(),
                    line: t.line,
                    message,
                });
            }
        }
        problems
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            file: config.file.clone(),
            problems,
        })
    }
}

/// Why test `t` fails, if it does.
async fn check(explainer: &Explainer, t: &ConfigTest) -> Option<String> {
    let q = ExplainQuery {
        method: t.method.clone(),
        url: t.url.clone(),
        headers: t.headers.clone(),
        from: t.from.clone(),
        sni: t.sni.clone(),
    };
    let request = match (t.method.as_str(), t.sni.as_deref()) {
        ("", None) => t.url.clone(),
        ("", Some("")) => format!("{} without sni", t.url),
        ("", Some(sni)) => format!("{} sni {sni}", t.url),
        (method, _) => format!("{method} {}", t.url),
    };
    match explainer.explain(&q).await {
        Err(e) => Some(format!("{request}: {e}")),
        Ok(got) if agrees(&t.expect, &got) => None,
        Ok(got) => Some(format!(
            "{request}: expected {}, got {}",
            describe(&t.expect),
            describe_actual(&actual(&got))
        )),
    }
}

/// Whether `got` has every value `expect` names.
fn agrees(expect: &Expect, got: &Explanation) -> bool {
    let actual = actual(got);
    (expect.route.is_none() || expect.route == actual.route)
        && (expect.pool.is_none() || expect.pool == actual.pool)
        && (expect.status.is_none() || expect.status == actual.status)
}

fn actual(got: &Explanation) -> Expect {
    Expect {
        route: got.route.clone(),
        pool: got.pool.clone(),
        status: got.status,
    }
}

/// The expected values, as given: `route web[1], pool api`, `status 301`.
fn describe(e: &Expect) -> String {
    let mut parts = Vec::new();
    if let Some(route) = &e.route {
        parts.push(format!("route {route}"));
    }
    if let Some(pool) = &e.pool {
        parts.push(format!("pool {pool}"));
    }
    if let Some(status) = e.status {
        parts.push(format!("status {status}"));
    }
    parts.join(", ")
}

/// What the request got: `route web[2], pool web, proxied`, `no route, status 404`.
fn describe_actual(e: &Expect) -> String {
    let route = e
        .route
        .as_ref()
        .map_or("no route".to_string(), |r| format!("route {r}"));
    let pool = e
        .pool
        .as_ref()
        .map(|p| format!(", pool {p}"))
        .unwrap_or_default();
    let status = e
        .status
        .map_or(", proxied".to_string(), |s| format!(", status {s}"));
    format!("{route}{pool}{status}")
}
