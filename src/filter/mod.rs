//! Route filters: the public extension API, the registry that builds filters from YAML,
//! and the built-in filters (written on the same API).
//!
//! A filter is one value implementing [`Filter`]. Each hook has a default that does
//! nothing, so a filter implements only the hooks it needs:
//!
//! | hook | runs | may |
//! |---|---|---|
//! | [`Filter::request`] | once the route is chosen, before a backend is picked | change the request; answer it ([`Decision::Respond`]) |
//! | [`Filter::upstream_request`] | on the copy of the request sent to the backend | change headers |
//! | [`Filter::response`] | on the backend's response head, before the client sees it | change status and headers |
//! | [`Filter::response_body`] | on each response body chunk | change or drop the chunk |
//! | [`Filter::connection`] | when a TCP listener accepts a connection | refuse it |
//!
//! A filter that implements only some hooks can say so in [`Filter::hooks`]; Tioga
//! then skips the others on the request path.
//!
//! Filters are built once, at config load, from their YAML settings deserialized into
//! the filter's own settings type (see [`Registry::register`]), so bad settings are
//! config errors with key path and line. One filter value serves every request of its
//! route, concurrently: keep per-request data in the [`Context`]'s typed state.

pub(crate) mod builtin;
mod chain;
mod context;
mod registry;
pub mod settings;

pub(crate) use chain::FilterChain;
pub use context::{Context, Response};
pub use registry::{FilterError, Registry};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};

/// What a request or connection hook decided.
#[derive(Debug)]
#[must_use]
pub enum Decision {
    /// Go on: the next filter, then the backend.
    Continue,
    /// Answer now with this response; no later filter and no backend sees the request.
    /// On a TCP listener the connection is closed (the status is only logged).
    Respond(Response),
}

/// Where a filter can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Routes of HTTP listeners only.
    Http,
    /// HTTP routes and TCP listeners (the filter implements [`Filter::connection`]).
    HttpAndTcp,
}

/// The hooks a filter implements ([`Filter::hooks`]), combined with `|`:
/// `Hooks::REQUEST | Hooks::RESPONSE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks(u8);

impl Hooks {
    /// None.
    pub const NONE: Hooks = Hooks(0);
    /// [`Filter::request`].
    pub const REQUEST: Hooks = Hooks(1);
    /// [`Filter::upstream_request`].
    pub const UPSTREAM_REQUEST: Hooks = Hooks(1 << 1);
    /// [`Filter::response`].
    pub const RESPONSE: Hooks = Hooks(1 << 2);
    /// [`Filter::response_body`].
    pub const RESPONSE_BODY: Hooks = Hooks(1 << 3);
    /// [`Filter::connection`].
    pub const CONNECTION: Hooks = Hooks(1 << 4);
    /// Every hook (the default).
    pub const ALL: Hooks = Hooks(0b1_1111);

    /// Whether every hook of `other` is in `self`.
    pub const fn contains(self, other: Hooks) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Hooks {
    type Output = Hooks;
    fn bitor(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }
}

/// A route filter. See the [module docs](self) for when each hook runs.
///
/// # The Pingora types it exposes
///
/// The hooks take Pingora's [`RequestHeader`] and [`ResponseHeader`] and return
/// Pingora's [`Result`] (of [`pingora_error::Error`]), and nothing else of Pingora's.
/// These are deliberate: both headers are thin wrappers over the `http` crate's
/// request and response parts (with `Deref` to them), which is what the proxy holds
/// anyway, so a filter edits the very head Tioga forwards, with no copy per request;
/// and Pingora's error carries the status a failing filter's request ends with. The
/// session, peers and connectors stay hidden, so Tioga may change how it drives
/// Pingora without breaking a filter. All of them come with `tioga::prelude`.
#[async_trait]
pub trait Filter: Send + Sync + 'static {
    /// Where this filter can be used. Override to return [`Scope::HttpAndTcp`] when
    /// [`Filter::connection`] is implemented.
    fn scope(&self) -> Scope {
        Scope::Http
    }

    /// Which hooks Tioga calls, asked once when the config is loaded. The default,
    /// [`Hooks::ALL`], is always right; naming only the hooks you implement saves a
    /// call per request for each one left out (and, for the async ones, a boxed
    /// future). A hook left out here is never called, even if implemented.
    fn hooks(&self) -> Hooks {
        Hooks::ALL
    }

    /// Runs once the route is chosen, in route order, before a backend is picked.
    /// Return [`Decision::Respond`] to answer without a backend.
    async fn request(&self, _req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<Decision> {
        Ok(Decision::Continue)
    }

    /// Runs on the request head about to be sent to the backend (after Tioga has added
    /// its `X-Forwarded-*` headers).
    fn upstream_request(&self, _req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<()> {
        Ok(())
    }

    /// Runs on the response head before it is sent to the client: the backend's, or an
    /// answer made on the route (a filter's [`Decision::Respond`], a 502/503/504).
    fn response(&self, _resp: &mut ResponseHeader, _ctx: &mut Context<'_>) -> Result<()> {
        Ok(())
    }

    /// Runs on each chunk of the backend's response body; `end_of_stream` marks the
    /// last call. Set `*chunk = None` to drop a chunk.
    fn response_body(
        &self,
        _chunk: &mut Option<Bytes>,
        _end_of_stream: bool,
        _ctx: &mut Context<'_>,
    ) -> Result<()> {
        Ok(())
    }

    /// Runs when a TCP listener accepts a connection, before a backend is picked.
    /// [`Decision::Respond`] closes the connection. Only called when [`Filter::scope`]
    /// is [`Scope::HttpAndTcp`].
    async fn connection(&self, _ctx: &mut Context<'_>) -> Result<Decision> {
        Ok(Decision::Continue)
    }
}
