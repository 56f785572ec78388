//! `tioga explain`, `GET /explain` and config `tests:`: which route, pool, filters and
//! (for `consistent_hash`) backend a request would get, and why every route before it
//! did not match. Connections to TCP listeners (`tcp://HOST:PORT`) are explained in
//! [`tcp`].
//!
//! Nothing here re-implements routing: the request head goes through the listener's
//! own head checks and path normalisation (`proxy::head::check`), the route table is
//! built from the same compiled matchers as the proxy's and walked by
//! `RouteTable::explain`, whose conditions are `Matcher::matches`'s own walk; the
//! route's request filters run as in the proxy (except `rate_limit`, so an explanation
//! never spends a client's budget), and the backend is picked by the pool's own
//! selection, with the pool's live health when asked through the admin endpoint.

use crate::config::{FilterSpec, ListenerKind, ListenerSpec};
use crate::filter::{Context, Decision, Hooks};
use crate::observability::explain::{Explain, ExplainQuery};
use crate::proxy::head;
use crate::routing::key::request_key;
use crate::routing::RouteTable;
use crate::upstream::Pool;
use crate::vocab::{Balance, HeadRules};
use async_trait::async_trait;
use pingora_http::RequestHeader;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

mod tcp;

/// The HTTP and TCP listeners' route tables, for explanations.
pub(crate) struct Explainer {
    listeners: Vec<Listener>,
    tcp: Vec<tcp::TcpListener>,
}

struct Listener {
    name: String,
    ports: Vec<u16>,
    tls: bool,
    head: HeadRules,
    routes: RouteTable<Route>,
}

struct Route {
    name: String,
    pool: Option<Arc<Pool>>,
    filters: Vec<FilterSpec>,
}

/// What a request would get: the JSON of `tioga explain --json` and `GET /explain`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Explanation {
    /// The listener that was asked (Tioga's extension to the contract's object).
    pub(crate) listener: String,
    /// The chosen route, `LISTENER[i]`.
    pub(crate) route: Option<String>,
    /// Its pool.
    pub(crate) pool: Option<String>,
    /// The answer made without a backend: 404 (no route), a filter's (such as a
    /// redirect's 301), a head check's (400, 414, 431), or 503 (no eligible backend).
    pub(crate) status: Option<u16>,
    /// The route's filters, in order.
    pub(crate) filters: Vec<String>,
    /// For `consistent_hash`: the backend the request's key maps to now.
    pub(crate) backend: Option<String>,
    /// Every route tried, in order.
    pub(crate) routes: Vec<RouteTried>,
}

/// One route tried.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct RouteTried {
    /// `LISTENER[i]`.
    pub(crate) route: String,
    /// Whether it matched (the last one tried, if any did).
    pub(crate) matched: bool,
    /// The first condition that did not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failed: Option<&'static str>,
}

/// The client address an explanation assumes without `--from`.
const DEFAULT_FROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

impl Explainer {
    /// From the config's listeners and the pools by name (the running ones, or ones
    /// built for the occasion).
    pub(crate) fn new(listeners: &[ListenerSpec], pools: &BTreeMap<String, Arc<Pool>>) -> Self {
        let tcp = listeners
            .iter()
            .filter_map(|l| match &l.kind {
                ListenerKind::Tcp {
                    routes, filters, ..
                } => Some(tcp::TcpListener::new(
                    &l.name, &l.binds, routes, filters, pools,
                )),
                _ => None,
            })
            .collect();
        let listeners = listeners
            .iter()
            .filter_map(|l| {
                let ListenerKind::Http {
                    tls, routes, head, ..
                } = &l.kind
                else {
                    return None;
                };
                let routes = routes
                    .iter()
                    .map(|r| {
                        let route = Route {
                            name: r.name.clone(),
                            pool: r.pool.as_ref().and_then(|p| pools.get(p).cloned()),
                            filters: r.filters.clone(),
                        };
                        (r.matcher.clone(), route)
                    })
                    .collect();
                Some(Listener {
                    name: l.name.clone(),
                    ports: l.binds.iter().map(SocketAddr::port).collect(),
                    tls: tls.is_some(),
                    head: *head,
                    routes: RouteTable::new(routes),
                })
            })
            .collect();
        Self { listeners, tcp }
    }

    /// Builds pools from specs (no health checks run: every backend counts as up),
    /// for `tioga explain` and config tests.
    pub(crate) fn offline(config: &crate::config::Config) -> Self {
        let pools = config
            .pools
            .iter()
            .map(|spec| (spec.name.clone(), Pool::build(spec.clone()).0))
            .collect();
        Self::new(&config.listeners, &pools)
    }

    /// Explains `q`, or says why it cannot (bad method, URL, header or address; no
    /// listener for the URL).
    pub(crate) async fn explain(&self, q: &ExplainQuery) -> Result<Explanation, String> {
        let from = match q.from.as_deref() {
            None | Some("") => DEFAULT_FROM,
            Some(ip) => ip
                .parse::<IpAddr>()
                .map_err(|_| format!("`{ip}` is not an IP address"))?,
        };
        if tcp::is_tcp(&q.url) {
            let http = |port| {
                let l = self.listeners.iter().find(|l| l.ports.contains(&port))?;
                Some(l.name.clone())
            };
            return tcp::explain(&self.tcp, http, q, from).await;
        }
        if q.sni.is_some() {
            return Err("`sni` applies to a connection to a tcp listener (tcp://HOST:PORT)".into());
        }
        let uri: http::Uri = q
            .url
            .parse()
            .map_err(|e| format!("`{}` is not a URL: {e}", q.url))?;
        let listener = self.listener_for(&uri)?;
        let mut req = request(q, &uri)?;
        let mut out = Explanation {
            listener: listener.name.clone(),
            route: None,
            pool: None,
            status: None,
            filters: Vec::new(),
            backend: None,
            routes: Vec::new(),
        };
        if let Err(refusal) = head::check(&mut req, &listener.head) {
            out.status = Some(refusal.status);
            return Ok(out);
        }
        let tried = listener.routes.explain(&req);
        out.routes = tried
            .iter()
            .filter_map(|t| {
                Some(RouteTried {
                    route: listener.routes.get(t.index)?.name.clone(),
                    matched: t.failed.is_none(),
                    failed: t.failed,
                })
            })
            .collect();
        let chosen = tried.last().filter(|t| t.failed.is_none());
        let Some(route) = chosen.and_then(|t| listener.routes.get(t.index)) else {
            out.status = Some(404);
            return Ok(out);
        };
        out.route = Some(route.name.clone());
        out.pool = route.pool.as_ref().map(|p| p.name().to_string());
        out.filters = route.filters.iter().map(|f| f.name.clone()).collect();
        out.status = run_filters(listener, route, &mut req, from).await;
        if out.status.is_none() {
            match &route.pool {
                Some(pool) => out.backend_or_503(pool, &req, from),
                None => out.status = Some(503),
            }
        }
        Ok(out)
    }

    /// The listener a URL reaches: the one bound on its port if it names one, else
    /// the first (by name) with TLS for `https` and without for `http`, else the first.
    fn listener_for(&self, uri: &http::Uri) -> Result<&Listener, String> {
        if let Some(port) = uri.port_u16() {
            return self
                .listeners
                .iter()
                .find(|l| l.ports.contains(&port))
                .ok_or_else(|| match self.tcp.iter().find(|l| l.on_port(port)) {
                    Some(l) => format!(
                        "port {port} is the tcp listener {}'s: ask with tcp://HOST:{port}",
                        l.name()
                    ),
                    None => format!("no http listener is bound on port {port}"),
                });
        }
        let tls = uri.scheme_str() == Some("https");
        self.listeners
            .iter()
            .find(|l| l.tls == tls)
            .or_else(|| self.listeners.first())
            .ok_or_else(|| "the config has no http listener".to_string())
    }
}

impl Explanation {
    /// For `consistent_hash`, the backend the key maps to; 503 when the pool has no
    /// eligible backend for it.
    fn backend_or_503(&mut self, pool: &Arc<Pool>, req: &RequestHeader, from: IpAddr) {
        let Balance::ConsistentHash(key) = &pool.spec.balance else {
            return;
        };
        match pool.attempt().next(&request_key(key, req, Some(from))) {
            Ok(addr) => self.backend = Some(addr.to_string()),
            Err(give_up) => self.status = Some(give_up.status()),
        }
    }
}

/// Runs the route's request filters in order, as the proxy does (but not
/// `rate_limit`); the status of the first that answers.
async fn run_filters(
    listener: &Listener,
    route: &Route,
    req: &mut RequestHeader,
    from: IpAddr,
) -> Option<u16> {
    let pool = route.pool.as_ref().map_or("", |p| p.name());
    let mut state = http::Extensions::new();
    for f in &route.filters {
        if f.name == "rate_limit" || !f.filter.hooks().contains(Hooks::REQUEST) {
            continue;
        }
        let mut ctx = Context::new(
            &listener.name,
            Some(&route.name),
            pool,
            Some(SocketAddr::new(from, 0)),
            listener.tls,
            &mut state,
        );
        match f.filter.request(req, &mut ctx).await {
            Ok(Decision::Continue) => {}
            Ok(Decision::Respond(resp)) => return Some(resp.status.as_u16()),
            Err(e) => {
                return Some(match e.etype() {
                    pingora_error::ErrorType::HTTPStatus(s) => *s,
                    _ => 500,
                })
            }
        }
    }
    None
}

/// The request head of `q`: the URL's path and query, `Host` from the URL unless a
/// header gives it, then the headers.
fn request(q: &ExplainQuery, uri: &http::Uri) -> Result<RequestHeader, String> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let method = q.method.to_ascii_uppercase();
    let mut req = RequestHeader::build(method.as_str(), target.as_bytes(), None)
        .map_err(|_| format!("`{}` is not an HTTP method", q.method))?;
    let gives_host = q
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"));
    if let (Some(authority), false) = (uri.authority(), gives_host) {
        let host = authority.as_str().rsplit('@').next().unwrap_or_default();
        req.insert_header(http::header::HOST, host)
            .map_err(|_| format!("`{host}` is not a valid host"))?;
    }
    for (name, value) in &q.headers {
        req.append_header(name.clone(), value.as_str())
            .map_err(|_| format!("`{name}: {value}` is not a valid header"))?;
    }
    Ok(req)
}

#[async_trait]
impl Explain for Explainer {
    async fn explain(&self, q: ExplainQuery) -> Result<serde_json::Value, String> {
        let explanation = Explainer::explain(self, &q).await?;
        serde_json::to_value(explanation).map_err(|e| e.to_string())
    }
}
