//! Sticky sessions (`sticky: {cookie, max_age}`): each backend has an opaque id, the
//! first 16 hex digits of HMAC-SHA256(key, "IP:PORT") where the key is SHA-256 of the
//! pool's name and the cookie's name. The id never shows the address, and every
//! Tioga with the same pool computes the same ids, so a client keeps its backend
//! whichever instance it reaches; it does not depend on the other backends, so adding
//! or removing one moves no one else's sessions.

use super::policy::StickySpec;
use ring::{digest, hmac};
use std::net::SocketAddr;

/// The ids of a pool's backends, in table order.
#[derive(Debug)]
pub(crate) struct StickyIds {
    ids: Vec<String>,
}

impl StickyIds {
    /// The ids of `backends` of pool `pool` with `spec`.
    pub(crate) fn new(pool: &str, spec: &StickySpec, backends: &[SocketAddr]) -> Self {
        let seed = format!("tioga sticky\0{pool}\0{}", spec.cookie);
        let key = hmac::Key::new(
            hmac::HMAC_SHA256,
            digest::digest(&digest::SHA256, seed.as_bytes()).as_ref(),
        );
        let ids = backends
            .iter()
            .map(|addr| {
                let tag = hmac::sign(&key, addr.to_string().as_bytes());
                tag.as_ref()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        Self { ids }
    }

    /// Backend `i`'s id.
    pub(crate) fn id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// The backend whose id is `id`.
    pub(crate) fn find(&self, id: &[u8]) -> Option<usize> {
        self.ids.iter().position(|x| x.as_bytes() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> StickySpec {
        StickySpec {
            cookie: "srv".into(),
            max_age: Some(Duration::from_secs(3600)),
        }
    }

    #[test]
    fn ids_are_opaque_stable_and_independent_of_the_other_backends() {
        let a: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let one = StickyIds::new("web", &spec(), &[a, b]);
        let two = StickyIds::new("web", &spec(), &[b]);
        assert_eq!(one.id(1), two.id(0), "same id without the other backend");
        assert_ne!(one.id(0), one.id(1));
        assert_eq!(one.id(0).len(), 16);
        assert!(!one.id(0).contains("10.0.0.1") && !one.id(0).contains("8080"));
        assert_eq!(one.find(one.id(1).as_bytes()), Some(1));
        assert_eq!(one.find(b"nope"), None);
        let other_pool = StickyIds::new("api", &spec(), &[a]);
        assert_ne!(other_pool.id(0), one.id(0), "keyed by the pool");
    }
}
