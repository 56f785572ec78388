//! Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature only; not part
//! of Tioga's API). Each runs the same code Tioga runs on untrusted input.

use std::path::Path;

/// Validates `text` as a config file, as `tioga -t` does (filters included).
pub fn check_config(text: &str) {
    let registry = crate::filter::Registry::with_builtins();
    let _ = crate::config::validate::validate(Path::new("fuzz.yaml"), text, &registry);
}

/// The normal form of `path`, or `None` when it is refused.
pub fn normalize_path(path: &str) -> Option<String> {
    crate::routing::normalize_path(path)
        .ok()
        .map(|p| p.into_owned())
}

/// A route table with every kind of condition, compiled once.
pub struct Routes(crate::routing::RouteTable<usize>);

impl Routes {
    /// Routes from a list of `match:` blocks in YAML; `None` when one does not compile.
    pub fn compile(blocks: &[&str]) -> Option<Routes> {
        let mut routes = Vec::new();
        for (i, yaml) in blocks.iter().enumerate() {
            let spec: crate::routing::MatchSpec = serde_yaml::from_str(yaml).ok()?;
            routes.push((crate::routing::Matcher::compile(&spec).ok()?, i));
        }
        Some(Routes(crate::routing::RouteTable::new(routes)))
    }

    /// The index of the route that serves `req`, after the request-head checks and
    /// path normalisation an HTTP listener applies; `Err(status)` when those refuse it.
    pub fn find(&self, req: &mut pingora_http::RequestHeader) -> Result<Option<usize>, u16> {
        crate::proxy::check_head(req, &crate::vocab::HeadRules::default()).map_err(|r| r.status)?;
        Ok(self.0.find(req).map(|(_, i)| *i))
    }
}

/// The server name of a ClientHello at the start of `bytes`, as a TCP listener with
/// `sni` routes reads it; `Err(())` while more bytes could still complete it.
pub fn server_name(bytes: &[u8]) -> Result<Option<String>, ()> {
    match crate::proxy::sni::server_name(bytes) {
        crate::proxy::sni::Hello::Partial => Err(()),
        crate::proxy::sni::Hello::Done(name) => Ok(name),
    }
}

/// A PROXY header at the start of `bytes`, as a listener with `proxy_protocol` reads
/// it: `Ok(Some((source, length)))` when whole, `Ok(None)` while incomplete, `Err(())`
/// when refused.
pub fn proxy_header(bytes: &[u8]) -> Result<Option<(Option<std::net::SocketAddr>, usize)>, ()> {
    crate::proxy::accept::parse_proxy_header(bytes).map_err(drop)
}
