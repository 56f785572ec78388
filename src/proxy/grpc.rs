//! gRPC's status, read from a response's trailers (or its head, for a trailers-only
//! answer) for the access log: a call that fails says so there although its HTTP
//! status is 200.

use http::header::HeaderName;
use http::HeaderMap;

/// A constant, so a lookup does not parse the name (this runs for every HTTP/2 answer).
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The `grpc-status` of `headers` when it is there and not 0 (OK).
pub(crate) fn failed_status(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get(GRPC_STATUS)?.to_str().ok()?;
    value.trim().parse().ok().filter(|&s| s != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_zero_status_counts() {
        let mut h = HeaderMap::new();
        assert_eq!(failed_status(&h), None);
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(failed_status(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(failed_status(&h), Some(5));
        h.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(failed_status(&h), None);
    }
}
