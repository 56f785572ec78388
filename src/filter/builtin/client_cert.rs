//! `client_cert_header: NAME` (Tioga's extension): tells the backend who the client is
//! on a listener with `client_ca` (mTLS). The request to the backend carries header
//! NAME with the verified certificate's subject (`CN=client,O=Example`); a value the
//! client sent itself under that name is always removed, so a backend can trust it.

use crate::filter::{Context, Filter, Hooks};
use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora_error::Result;
use pingora_http::RequestHeader;

/// `client_cert_header: NAME`.
pub(crate) struct ClientCertHeader(HeaderName);

impl ClientCertHeader {
    /// Builds from the header name.
    pub(crate) fn new(name: String) -> Result<Self, String> {
        HeaderName::from_bytes(name.as_bytes())
            .map(Self)
            .map_err(|_| format!("`{name}` is not a valid header name"))
    }
}

#[async_trait]
impl Filter for ClientCertHeader {
    fn hooks(&self) -> Hooks {
        Hooks::UPSTREAM_REQUEST
    }

    fn upstream_request(&self, req: &mut RequestHeader, ctx: &mut Context<'_>) -> Result<()> {
        req.remove_header(&self.0);
        // A subject that is no header value (control characters) is not forwarded.
        if let Some(v) = ctx
            .tls_client_subject()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            req.insert_header(self.0.clone(), v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::builtin::test_support::{build, request};

    fn run(subject: Option<&str>) -> Option<String> {
        let f = build("client_cert_header", "x-client-cert").unwrap();
        let mut req = request("GET", "/", &[("x-client-cert", "CN=forged")]);
        let mut state = http::Extensions::new();
        let mut ctx =
            Context::new("l", Some("l[0]"), "p", None, true, &mut state).with_tls_client(subject);
        f.upstream_request(&mut req, &mut ctx).unwrap();
        req.headers
            .get("x-client-cert")
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn the_verified_subject_replaces_what_the_client_sent() {
        assert_eq!(
            run(Some("CN=client,O=Example")).as_deref(),
            Some("CN=client,O=Example")
        );
        assert_eq!(
            run(None),
            None,
            "no certificate: the forged value is removed"
        );
    }
}
