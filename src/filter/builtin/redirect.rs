//! `redirect: {to: URL, status: 301|302|307|308}` — answers with a redirect and no
//! backend. `$path` and `$query` in `to` expand to the request's path and query
//! string (without `?`); a `?` left dangling by an empty query is dropped.

use crate::filter::{Context, Decision, Filter, Hooks, Response};
use async_trait::async_trait;
use pingora_error::Result;
use pingora_http::RequestHeader;
use serde::Deserialize;

/// Settings of `redirect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedirectSettings {
    /// Target URL template.
    to: String,
    /// 301, 302 (default), 307 or 308.
    #[serde(default = "default_status")]
    status: u16,
}

fn default_status() -> u16 {
    302
}

/// The `redirect` filter.
pub(crate) struct Redirect(RedirectSettings);

impl Redirect {
    /// Builds from the settings.
    pub(crate) fn new(s: RedirectSettings) -> Result<Self, String> {
        if ![301, 302, 303, 307, 308].contains(&s.status) {
            return Err(format!(
                "status {} is not a redirect (use 301, 302, 303, 307 or 308)",
                s.status
            ));
        }
        if s.to.is_empty() {
            return Err("`to` is empty".into());
        }
        Ok(Self(s))
    }

    fn location(&self, req: &RequestHeader) -> String {
        let query = req.uri.query().unwrap_or("");
        let mut to = self
            .0
            .to
            .replace("$path", req.uri.path())
            .replace("$query", query);
        if query.is_empty() && to.ends_with('?') {
            to.pop();
        }
        to
    }
}

#[async_trait]
impl Filter for Redirect {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<Decision> {
        let location = self.location(req);
        Ok(Decision::Respond(
            Response::new(self.0.status)
                .header("location", &location)
                .header("content-type", "text/plain; charset=utf-8")
                .body(format!("redirecting to {location}\n")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::filter::Decision;

    fn redirect(settings: &str, uri: &str) -> (u16, String) {
        let f = build("redirect", settings).unwrap();
        let mut req = request("GET", uri, &[]);
        match run_request(f.as_ref(), &mut req, "127.0.0.1:1") {
            Decision::Respond(r) => {
                let loc = r
                    .headers
                    .iter()
                    .find(|(k, _)| k == "location")
                    .unwrap()
                    .1
                    .to_str()
                    .unwrap()
                    .to_string();
                (r.status.as_u16(), loc)
            }
            Decision::Continue => panic!("redirect must answer"),
        }
    }

    #[test]
    fn expands_path_and_query() {
        let s = "{to: 'https://new.example.com$path?$query', status: 301}";
        assert_eq!(
            redirect(s, "/a/b?x=1"),
            (301, "https://new.example.com/a/b?x=1".into())
        );
        assert_eq!(redirect(s, "/a"), (301, "https://new.example.com/a".into()));
        assert_eq!(redirect("{to: /elsewhere}", "/x").0, 302);
    }

    #[test]
    fn rejects_non_redirect_status() {
        assert!(build("redirect", "{to: /x, status: 200}").is_err());
        assert!(build("redirect", "{status: 301}").is_err());
    }
}
