//! Validation of a TCP listener's target: one `pool`, or `routes` that choose a pool
//! by TLS server name (`sni`) and client address (`source`). Split from
//! `validate_listener` to keep each file to one concern.

use super::file::{ListenerSection, TcpRouteSection};
use super::problems::{join, Problems};
use super::values::check_pool;
use super::TcpRouteSpec;
use crate::routing::tcp::TcpMatcher;

/// The listener's routes; a listener with `pool` gets one route that matches all.
pub(super) fn routes(
    known: &[&str],
    path: &str,
    s: &ListenerSection,
    p: &mut Problems,
) -> Option<Vec<TcpRouteSpec>> {
    match (&s.pool, &s.routes) {
        (Some(_), Some(_)) => {
            p.add(
                join(path, "routes"),
                "give either `pool` or `routes`, not both",
            );
            None
        }
        (None, None) => {
            p.add(
                join(path, "pool"),
                "missing: a tcp listener needs `pool` (or `routes`)",
            );
            None
        }
        (Some(pool), None) => {
            check_pool(pool, join(path, "pool"), known, p);
            Some(vec![TcpRouteSpec {
                matcher: TcpMatcher::default(),
                pool: pool.clone(),
            }])
        }
        (None, Some(raw)) => {
            let routes_path = join(path, "routes");
            if raw.is_empty() {
                p.add(&routes_path, "at least one route is required");
            }
            let routes: Vec<_> = raw
                .iter()
                .enumerate()
                .filter_map(|(i, value)| {
                    let at = format!("{routes_path}[{i}]");
                    let r: TcpRouteSection = p.parse(&at, value)?;
                    check_pool(&r.pool, join(&at, "pool"), known, p);
                    match TcpMatcher::compile(&r.matches) {
                        Ok(matcher) => Some(TcpRouteSpec {
                            matcher,
                            pool: r.pool,
                        }),
                        Err(errors) => {
                            for e in errors {
                                p.add(join(&join(&at, "match"), &e.key), e.message);
                            }
                            None
                        }
                    }
                })
                .collect();
            (routes.len() == raw.len()).then_some(routes)
        }
    }
}

#[cfg(test)]
mod tests;
