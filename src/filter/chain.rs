//! A route's (or TCP listener's) filters in order, with the hooks each implements,
//! asked once at load so the request path skips the rest.

use super::{Filter, Hooks};
use std::sync::Arc;

/// Filters in config order, each with its [`Hooks`].
pub(crate) struct FilterChain {
    filters: Box<[(Hooks, Arc<dyn Filter>)]>,
    /// Every hook some filter implements.
    any: Hooks,
}

impl FilterChain {
    /// Asks each filter for its hooks.
    pub(crate) fn new(filters: impl IntoIterator<Item = Arc<dyn Filter>>) -> Self {
        let filters: Box<[_]> = filters.into_iter().map(|f| (f.hooks(), f)).collect();
        let any = filters.iter().fold(Hooks::NONE, |any, (h, _)| any | *h);
        Self { filters, any }
    }

    /// The filters implementing `hook`, in order.
    pub(crate) fn with(&self, hook: Hooks) -> impl Iterator<Item = &dyn Filter> {
        let filters = if self.any.contains(hook) {
            &self.filters[..]
        } else {
            &[]
        };
        filters
            .iter()
            .filter(move |(h, _)| h.contains(hook))
            .map(|(_, f)| f.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Context;
    use async_trait::async_trait;
    use pingora_http::RequestHeader;

    struct Only(Hooks);

    #[async_trait]
    impl Filter for Only {
        fn hooks(&self) -> Hooks {
            self.0
        }
    }

    struct Default;

    #[async_trait]
    impl Filter for Default {
        fn upstream_request(
            &self,
            _: &mut RequestHeader,
            _: &mut Context<'_>,
        ) -> pingora_error::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_the_filters_with_a_hook_are_walked_in_order() {
        let a: Arc<dyn Filter> = Arc::new(Only(Hooks::REQUEST | Hooks::CONNECTION));
        let b: Arc<dyn Filter> = Arc::new(Only(Hooks::RESPONSE));
        let c: Arc<dyn Filter> = Arc::new(Default);
        let chain = FilterChain::new([a.clone(), b.clone(), c.clone()]);
        let ptrs = |hook| {
            chain
                .with(hook)
                .map(|f| f as *const dyn Filter as *const ())
                .collect::<Vec<_>>()
        };
        let ptr = |f: &Arc<dyn Filter>| Arc::as_ptr(f) as *const ();
        assert_eq!(ptrs(Hooks::REQUEST), [ptr(&a), ptr(&c)]);
        assert_eq!(ptrs(Hooks::RESPONSE), [ptr(&b), ptr(&c)]);
        assert_eq!(ptrs(Hooks::UPSTREAM_REQUEST), [ptr(&c)]);
        assert_eq!(ptrs(Hooks::CONNECTION), [ptr(&a), ptr(&c)]);
        let none = FilterChain::new([b]);
        assert_eq!(none.with(Hooks::REQUEST).count(), 0);
    }
}
