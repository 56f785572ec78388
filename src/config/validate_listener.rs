//! Validation of one listener's protocol-specific part: routes and TLS for HTTP,
//! the pool for TCP. Split from `validate` to keep each file to one concern.

use super::file::{ListenerSection, RouteSection};
use super::validate::{check_pool, join, Problems};
use super::{ListenerKind, RouteSpec, TlsSpec};
use crate::routing::Matcher;
use std::path::{Path, PathBuf};

/// Validates an `http` listener.
pub(super) fn http(
    file: &Path,
    path: &str,
    s: &ListenerSection,
    known: &[&str],
    p: &mut Problems,
) -> Option<ListenerKind> {
    if s.pool.is_some() {
        p.add(
            join(path, "pool"),
            "an http listener chooses its pool per route: move `pool` into `routes`",
        );
    }
    if s.filters.is_some() {
        p.add(
            join(path, "filters"),
            "http listeners take filters per route (`routes[i].filters`)",
        );
    }
    let tls = s.tls.as_ref().and_then(|t| {
        let tls_path = join(path, "tls");
        let base = file.parent().unwrap_or(Path::new("."));
        let cert = pem_file(base, &t.cert, &join(&tls_path, "cert"), "CERTIFICATE", p);
        let key = pem_file(base, &t.key, &join(&tls_path, "key"), "PRIVATE KEY", p);
        Some(TlsSpec {
            cert: cert?,
            key: key?,
        })
    });
    let routes_path = join(path, "routes");
    let Some(raw_routes) = &s.routes else {
        p.add(
            &routes_path,
            "missing: an http listener needs at least one route",
        );
        return None;
    };
    if raw_routes.is_empty() {
        p.add(&routes_path, "at least one route is required");
    }
    let listener = path.trim_start_matches("listeners.");
    let routes = raw_routes
        .iter()
        .enumerate()
        .filter_map(|(i, v)| route(listener, i, &format!("{routes_path}[{i}]"), v, known, p))
        .collect();
    Some(ListenerKind::Http { tls, routes })
}

fn route(
    listener: &str,
    i: usize,
    path: &str,
    value: &serde_yaml::Value,
    known: &[&str],
    p: &mut Problems,
) -> Option<RouteSpec> {
    let r: RouteSection = p.parse(path, value)?;
    let matcher = match Matcher::compile(&r.matches) {
        Ok(m) => Some(m),
        Err(errors) => {
            for e in errors {
                p.add(join(&join(path, "match"), &e.key), e.message);
            }
            None
        }
    };
    if let Some(filters) = &r.filters {
        if !filters.is_empty() {
            p.add(join(path, "filters"), "route filters are not supported yet");
        }
    }
    let Some(pool) = r.pool else {
        p.add(
            join(path, "pool"),
            "missing: every route names the pool that serves it",
        );
        return None;
    };
    check_pool(&pool, join(path, "pool"), known, p);
    Some(RouteSpec {
        name: format!("{listener}[{i}]"),
        matcher: matcher?,
        pool,
    })
}

/// Validates a `tcp` listener.
pub(super) fn tcp(
    path: &str,
    s: &ListenerSection,
    known: &[&str],
    p: &mut Problems,
) -> Option<ListenerKind> {
    if s.tls.is_some() {
        p.add(
            join(path, "tls"),
            "TLS termination is for http listeners only",
        );
    }
    if s.routes.is_some() {
        p.add(
            join(path, "routes"),
            "routes are for http listeners only: a tcp listener names one `pool`",
        );
    }
    if s.filters.as_ref().is_some_and(|f| !f.is_empty()) {
        p.add(
            join(path, "filters"),
            "tcp listener filters are not supported yet",
        );
    }
    let Some(pool) = &s.pool else {
        p.add(join(path, "pool"), "missing: a tcp listener needs `pool`");
        return None;
    };
    check_pool(pool, join(path, "pool"), known, p);
    Some(ListenerKind::Tcp { pool: pool.clone() })
}

/// Checks that a PEM file can be read and holds a block of `kind`. Relative paths are
/// taken from the working directory first, then from the config file's folder.
fn pem_file(base: &Path, name: &str, path: &str, kind: &str, p: &mut Problems) -> Option<PathBuf> {
    let direct = PathBuf::from(name);
    let file = if direct.is_relative() && !direct.exists() {
        base.join(&direct)
    } else {
        direct
    };
    match std::fs::read_to_string(&file) {
        Ok(text) if text.contains(&format!("{kind}-----")) => Some(file),
        Ok(_) => {
            p.add(
                path,
                format!("{} holds no PEM {kind} block", file.display()),
            );
            None
        }
        Err(e) => {
            p.add(path, format!("cannot read {}: {e}", file.display()));
            None
        }
    }
}
