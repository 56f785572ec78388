//! The route table with random request heads: the request-head checks, the path
//! normaliser and every matcher kind, as an HTTP listener runs them. Never panics;
//! a request the checks let through is routed by its normal path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tioga::fuzzing::Routes;

fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        Routes::compile(&[
            "{host: \"*.example.com\", path_prefix: /api/, method: [GET, POST]}",
            "{path: /exact, headers: {x-canary: \"1\"}}",
            "{path_regex: \"^/v[0-9]+/\", query: {version: \"2\"}}",
            "{cookie: {beta: \"yes\"}, host: a.example.com}",
            "{path_prefix: /public}",
        ])
        .expect("the routes compile")
    })
}

fuzz_target!(|data: &[u8]| {
    // Line 1: METHOD TARGET; then `name: value` lines.
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let Ok(mut req) = pingora_http::RequestHeader::build(method, target.as_bytes(), None) else {
        return;
    };
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let _ = req.append_header(name.trim().to_string(), value.trim());
        }
    }
    if let Ok(Some(4)) = routes().find(&mut req) {
        let path = req.uri.path();
        assert!(path.starts_with("/public"), "routed {path:?} to /public");
    }
});
