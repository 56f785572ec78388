//! A complete Tioga program with a custom filter: `api_key` answers 401 unless the
//! request's `x-api-key` header is one of the configured keys.
//!
//! ```sh
//! cargo run --release --example api_key -- -c conf/api_key.yaml
//! curl -i http://127.0.0.1:8090/               # 401
//! curl -i -H 'x-api-key: k1' http://127.0.0.1:8090/   # proxied
//! ```
//!
//! In YAML the filter is used like any built-in one:
//! `filters: [{api_key: {keys: [k1, k2]}}]`; `header` optionally names another header.

use serde::Deserialize;
use std::collections::HashSet;
use std::process::ExitCode;
use tioga::prelude::*;

/// The filter's settings, deserialized from YAML: unknown keys and wrong types are
/// config errors that `tioga -t` reports with their key path and line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeySettings {
    /// Accepted keys.
    keys: Vec<String>,
    /// Header carrying the key.
    #[serde(default = "default_header")]
    header: String,
}

fn default_header() -> String {
    "x-api-key".into()
}

/// The filter: built once from its settings, shared by every request of its route.
struct ApiKey {
    keys: HashSet<String>,
    header: http::HeaderName,
}

impl ApiKey {
    /// Checks the settings beyond their types; an `Err` is reported at the filter's key.
    fn new(settings: ApiKeySettings) -> Result<Self, String> {
        if settings.keys.is_empty() {
            return Err("`keys` is empty: no request could pass".into());
        }
        let header = http::HeaderName::from_bytes(settings.header.as_bytes())
            .map_err(|_| format!("`{}` is not a valid header name", settings.header))?;
        Ok(Self {
            keys: settings.keys.into_iter().collect(),
            header,
        })
    }
}

#[async_trait]
impl Filter for ApiKey {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    /// Runs once the route is chosen: pass requests with a known key, answer the rest.
    async fn request(&self, req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<Decision> {
        let presented = req.headers.get(&self.header).and_then(|v| v.to_str().ok());
        if presented.is_some_and(|k| self.keys.contains(k)) {
            return Ok(Decision::Continue);
        }
        Ok(Decision::Respond(
            Response::new(401)
                .header("www-authenticate", "ApiKey")
                .header("content-type", "text/plain")
                .body("a valid x-api-key header is required\n"),
        ))
    }
}

/// The allocator the `tioga` binary uses; a program built on the library picks its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    Tioga::builder()
        .filter("api_key", ApiKey::new)
        .run_from_args()
}
