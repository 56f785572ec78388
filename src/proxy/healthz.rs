//! `healthz: /healthz` on an HTTP listener: Tioga itself answers `GET` and `HEAD` of
//! that exact path with `200 ok`, before any route or filter, so a network load
//! balancer in front of a fleet can health-check each instance on its traffic port
//! whatever the routes are. Other methods on the path are routed as usual.

use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

/// Whether `req` is a health check of `path`.
pub(crate) fn asks(path: &str, req: &RequestHeader) -> bool {
    (req.method == http::Method::GET || req.method == http::Method::HEAD) && req.uri.path() == path
}

/// Answers the health check: `200`, `ok\n`, not cached.
pub(crate) async fn answer(session: &mut Session) -> Result<()> {
    const BODY: &[u8] = b"ok\n";
    let mut head = ResponseHeader::build(200, Some(3))?;
    head.insert_header(http::header::CONTENT_TYPE, "text/plain")?;
    head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    head.insert_header(http::header::CONTENT_LENGTH, BODY.len())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(head), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(bytes::Bytes::from_static(BODY)), true)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_get_and_head_of_the_exact_path() {
        let req = |m: &str, uri: &str| {
            pingora_http::RequestHeader::build(m, uri.as_bytes(), None).unwrap()
        };
        assert!(super::asks("/healthz", &req("GET", "/healthz")));
        assert!(super::asks("/healthz", &req("HEAD", "/healthz?x=1")));
        assert!(!super::asks("/healthz", &req("POST", "/healthz")));
        assert!(!super::asks("/healthz", &req("GET", "/healthz/more")));
        assert!(!super::asks("/healthz", &req("GET", "/")));
    }
}
