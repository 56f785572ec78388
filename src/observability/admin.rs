//! The admin endpoint (`admin.bind`): `GET /metrics` (Prometheus text format),
//! `GET /status` (JSON), `GET /explain?url=…` (which route a request would take, as
//! `tioga explain --json`), `GET /` (the HTML status page, self-contained, polling
//! `/status`). Anything else is 404; methods other than GET and HEAD are 405.

use super::metrics::Metrics;
use super::status::Status;
use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::Arc;

/// The status page, embedded in the binary.
const PAGE: &str = include_str!("status_page.html");

/// The admin HTTP application.
pub(crate) struct Admin {
    /// Every metric.
    pub(crate) metrics: Arc<Metrics>,
    /// The status model.
    pub(crate) status: Arc<Status>,
    /// Answers `GET /explain` from the running route tables.
    pub(crate) explain: Arc<dyn super::explain::Explain>,
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

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"use GET\n".to_vec(),
            );
        }
        match req.uri.path() {
            "/metrics" => {
                self.metrics.sync_pools(&self.status.pools);
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            "/status" => {
                let body = serde_json::to_vec_pretty(&self.status.render()).unwrap_or_default();
                reply(StatusCode::OK, "application/json", body)
            }
            "/explain" => {
                let query = super::explain::ExplainQuery::from_query(req.uri.query().unwrap_or(""));
                let answer = match query {
                    Ok(q) => self.explain.explain(q).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(v) => reply(
                        StatusCode::OK,
                        "application/json",
                        serde_json::to_vec_pretty(&v).unwrap_or_default(),
                    ),
                    Err(e) => reply(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        format!("explain: {e}\n").into_bytes(),
                    ),
                }
            }
            "/" => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                PAGE.as_bytes().to_vec(),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found: try /, /status, /metrics or /explain?url=...\n".to_vec(),
            ),
        }
    }
}
