//! `allow` and `deny`: lists of IPs or CIDR blocks checked against the client address.
//! `allow` lets only listed clients through; `deny` turns listed clients away. Refused
//! HTTP clients get 403; refused TCP connections are closed.

use crate::filter::settings::Cidr;
use crate::filter::{Context, Decision, Filter, Hooks, Response, Scope};
use async_trait::async_trait;
use pingora_error::Result;
use pingora_http::RequestHeader;

/// The `allow` / `deny` filter.
pub(crate) struct Access {
    list: Vec<Cidr>,
    /// true for `allow`, false for `deny`.
    allow: bool,
}

impl Access {
    /// `allow: [CIDR, …]`.
    pub(crate) fn allow(list: Vec<Cidr>) -> Result<Self, String> {
        Self::new(list, true)
    }

    /// `deny: [CIDR, …]`.
    pub(crate) fn deny(list: Vec<Cidr>) -> Result<Self, String> {
        Self::new(list, false)
    }

    fn new(list: Vec<Cidr>, allow: bool) -> Result<Self, String> {
        if list.is_empty() {
            return Err("the list is empty: give IP addresses or CIDR blocks".into());
        }
        Ok(Self { list, allow })
    }

    fn permits(&self, ctx: &Context<'_>) -> bool {
        let listed = ctx
            .client_ip()
            .is_some_and(|ip| self.list.iter().any(|c| c.contains(ip)));
        listed == self.allow
    }

    fn decide(&self, ctx: &Context<'_>) -> Decision {
        if self.permits(ctx) {
            Decision::Continue
        } else {
            Decision::Respond(
                Response::new(403)
                    .header("content-type", "text/plain")
                    .body("forbidden\n"),
            )
        }
    }
}

#[async_trait]
impl Filter for Access {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::CONNECTION
    }

    fn scope(&self) -> Scope {
        Scope::HttpAndTcp
    }

    async fn request(&self, _req: &mut RequestHeader, ctx: &mut Context<'_>) -> Result<Decision> {
        Ok(self.decide(ctx))
    }

    async fn connection(&self, ctx: &mut Context<'_>) -> Result<Decision> {
        Ok(self.decide(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    fn verdict(name: &str, list: &str, client: &str) -> u16 {
        let f = build(name, list).unwrap();
        let mut req = request("GET", "/", &[]);
        status(&run_request(f.as_ref(), &mut req, client))
    }

    #[test]
    fn allow_and_deny_with_cidrs() {
        assert_eq!(verdict("allow", "[10.0.0.0/8, 127.0.0.1]", "10.1.2.3:5"), 0);
        assert_eq!(
            verdict("allow", "[10.0.0.0/8, 127.0.0.1]", "127.0.0.1:5"),
            0
        );
        assert_eq!(verdict("allow", "[10.0.0.0/8]", "192.168.0.1:5"), 403);
        assert_eq!(verdict("deny", "[192.168.0.0/16]", "192.168.3.4:5"), 403);
        assert_eq!(verdict("deny", "[192.168.0.0/16]", "127.0.0.1:5"), 0);
        assert_eq!(verdict("deny", "['::1']", "[::1]:5"), 403);
        assert_eq!(
            verdict("deny", "[127.0.0.0/8]", "[::ffff:127.0.0.1]:5"),
            403
        );
    }

    #[test]
    fn bad_entries_name_their_index() {
        let err = build("allow", "[10.0.0.0/8, nope]").err().unwrap();
        assert_eq!(err.path, "[1]");
        assert!(err.message.contains("not an IP address"), "{err:?}");
        assert!(build("deny", "[]").is_err());
    }
}
