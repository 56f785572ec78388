//! The admin endpoint (`admin.bind`).
//!
//! Reading, open to anyone who reaches the address: `GET /metrics` (Prometheus text
//! format), `GET /status` (JSON), `GET /explain?url=…` (which route a request would
//! take, as `tioga explain --json`), `GET /` (the HTML status page, self-contained,
//! polling `/status`).
//!
//! Changing, only with `Authorization: Bearer TOKEN` matching `admin.token_file`
//! (compared in constant time; without a `token_file` no change is accepted):
//! `POST /reload` (as SIGHUP) and `POST /pools/NAME/backends/ADDRESS` with
//! `{"state": "ready" | "drain" | "maint", "weight": N}`. A refused request changes
//! nothing. Every change is logged with who asked and shown on the status page.

use super::metrics::Metrics;
use super::reload::Reload;
use super::status::Status;
use crate::upstream::state::AdminState;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{header, Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

/// The status page, embedded in the binary: the markup and style, then its two scripts
/// (the poller and the explain form), each kept in a file of its own.
const PAGE: &str = concat!(
    include_str!("status_page.html"),
    "<script>\n",
    include_str!("status_page.js"),
    "</script>\n<script>\n",
    include_str!("status_page_explain.js"),
    "</script>\n</body>\n</html>\n",
);

/// The largest request body the admin endpoint reads.
const MAX_BODY: usize = 16 * 1024;

/// The admin HTTP application.
pub(crate) struct Admin {
    /// Every metric.
    pub(crate) metrics: Arc<Metrics>,
    /// What the running config shows; a reload replaces it.
    pub(crate) view: Arc<ArcSwap<AdminView>>,
    /// Reloads the config in place.
    pub(crate) reload: Arc<dyn Reload>,
}

/// The parts of the admin endpoint that follow the running config.
pub(crate) struct AdminView {
    /// The status model.
    pub(crate) status: Status,
    /// Answers `GET /explain` from the running route tables.
    pub(crate) explain: Arc<dyn super::explain::Explain>,
    /// The token changes must carry (`admin.token_file`); `None`: no changes.
    pub(crate) token: Option<String>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("a valid response")
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Vec<u8>> {
    reply(status, "text/plain", body.into().into_bytes())
}

fn json_reply(status: StatusCode, v: &Value) -> Response<Vec<u8>> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    reply(status, "application/json", body)
}

/// Whether `given` equals `want`, in time that depends on neither: both are hashed
/// first, so neither their contents nor their lengths show in the timing.
fn same_token(given: &[u8], want: &[u8]) -> bool {
    use ring::digest::{digest, SHA256};
    let (a, b) = (digest(&SHA256, given), digest(&SHA256, want));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Percent-decodes one path segment.
fn decode(segment: &str) -> String {
    form_urlencoded::parse(format!("s={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Admin {
    /// Why a change request may not proceed, as the answer to send; `None`: it may.
    fn refuse(&self, view: &AdminView, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let Some(want) = &view.token else {
            return Some(text(
                StatusCode::UNAUTHORIZED,
                "changes need admin.token_file in the config, and its token as \
                 `Authorization: Bearer TOKEN`\n",
            ));
        };
        let given = session
            .req_header()
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match given {
            Some(t) if same_token(t, want.as_bytes()) => None,
            _ => Some(text(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send `Authorization: Bearer TOKEN`\n",
            )),
        }
    }

    /// `POST` requests, once authorised.
    async fn change(&self, session: &mut ServerSession, who: &str) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            ["reload"] => {
                let answer = self.reload.reload(who).await;
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
                json_reply(status, &answer.body)
            }
            ["pools", pool, "backends", addr] => {
                let (pool, addr) = (decode(pool), decode(addr));
                let body = match read_body(session).await {
                    Ok(body) => body,
                    Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
                };
                self.set_backend(&pool, &addr, &body, who)
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: POST /reload or /pools/NAME/backends/ADDRESS\n",
            ),
        }
    }

    /// `POST /pools/NAME/backends/ADDRESS`.
    fn set_backend(&self, pool: &str, addr: &str, body: &[u8], who: &str) -> Response<Vec<u8>> {
        let change = match BackendChange::parse(body) {
            Ok(c) => c,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{addr:?} is not a backend address (HOST:PORT)\n"),
            );
        };
        let view = self.view.load();
        let Some(p) = view.status.pools.iter().find(|p| p.name() == pool) else {
            return text(StatusCode::NOT_FOUND, format!("no pool {pool:?}\n"));
        };
        if let Err(e) = p.set_by_operator(addr, change.state, change.weight) {
            let code = if e.starts_with("weight") {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::NOT_FOUND
            };
            return text(code, format!("{e}\n"));
        }
        let b = p.table();
        let state = b.iter().find(|b| b.addr == addr);
        let answer = json!({
            "pool": pool,
            "backend": addr.to_string(),
            "state": state.map(|s| s.admin_state().as_str()),
            "weight": state.map(|s| s.weight()),
        });
        log::warn!(
            "admin: {who} set backend {addr} of pool {pool}: {}",
            change.describe()
        );
        view.status.config.operator_change(json!({
            "who": who, "pool": pool, "backend": addr.to_string(), "change": change.describe(),
        }));
        json_reply(StatusCode::OK, &answer)
    }
}

/// A backend change's JSON body.
struct BackendChange {
    state: Option<AdminState>,
    weight: Option<usize>,
}

impl BackendChange {
    fn parse(body: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: not JSON: {e}"))?;
        let map = v.as_object().ok_or("body: expected a JSON object")?;
        if let Some(k) = map.keys().find(|k| *k != "state" && *k != "weight") {
            return Err(format!("body: unknown key {k:?} (expected state, weight)"));
        }
        let state = match map.get("state") {
            None => None,
            Some(Value::String(s)) => Some(match s.as_str() {
                "ready" => AdminState::Ready,
                "drain" => AdminState::Drain,
                "maint" => AdminState::Maint,
                other => return Err(format!("state: {other:?} (expected ready, drain, maint)")),
            }),
            Some(other) => return Err(format!("state: expected a string, got {other}")),
        };
        let weight = match map.get("weight") {
            None => None,
            Some(w) => Some(
                w.as_u64()
                    .and_then(|w| usize::try_from(w).ok())
                    .ok_or_else(|| format!("weight: expected a whole number, got {w}"))?,
            ),
        };
        if state.is_none() && weight.is_none() {
            return Err("body: give state, weight or both".into());
        }
        Ok(BackendChange { state, weight })
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.state {
            parts.push(format!("state {}", s.as_str()));
        }
        if let Some(w) = self.weight {
            parts.push(format!("weight {w}"));
        }
        parts.join(", ")
    }
}

/// The request body, up to [`MAX_BODY`].
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        if method == Method::POST {
            let view = self.view.load_full();
            if let Some(refused) = self.refuse(&view, session) {
                return refused;
            }
            let who = session.client_addr().map_or_else(
                || "admin client".to_string(),
                |a| format!("admin client {a}"),
            );
            return self.change(session, &who).await;
        }
        if method != Method::GET && method != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET, or POST for changes\n",
            );
        }
        let view = self.view.load();
        let req = session.req_header();
        match req.uri.path() {
            "/metrics" => {
                self.metrics.sync_pools(&view.status.pools);
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            "/status" => json_reply(StatusCode::OK, &view.status.render()),
            "/explain" => {
                let query = super::explain::ExplainQuery::from_query(req.uri.query().unwrap_or(""));
                let answer = match query {
                    Ok(q) => view.explain.explain(q).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(v) => json_reply(StatusCode::OK, &v),
                    Err(e) => text(StatusCode::BAD_REQUEST, format!("explain: {e}\n")),
                }
            }
            "/" => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                PAGE.as_bytes().to_vec(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /, /status, /metrics or /explain?url=...\n",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"s3cret", b"s3cret"));
        assert!(!same_token(b"s3cre", b"s3cret"));
        assert!(!same_token(b"", b"s3cret"));
        assert!(!same_token(b"s3cret ", b"s3cret"));
    }

    #[test]
    fn backend_changes_are_checked() {
        assert!(BackendChange::parse(br#"{"state":"drain"}"#).is_ok());
        assert!(BackendChange::parse(br#"{"weight":5}"#).is_ok());
        assert!(BackendChange::parse(br#"{"state":"off"}"#).is_err());
        assert!(BackendChange::parse(br#"{"weight":-1}"#).is_err());
        assert!(BackendChange::parse(br#"{"colour":"red"}"#).is_err());
        assert!(BackendChange::parse(br#"{}"#).is_err());
        assert!(BackendChange::parse(b"nope").is_err());
    }

    #[test]
    fn segments_are_decoded() {
        assert_eq!(decode("%5B%3A%3A1%5D%3A80"), "[::1]:80");
        assert_eq!(decode("127.0.0.1:8080"), "127.0.0.1:8080");
    }
}
