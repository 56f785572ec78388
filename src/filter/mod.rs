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
//! Filters are built once, at config load, from their YAML settings deserialized into
//! the filter's own settings type (see [`Registry::register`]), so bad settings are
//! config errors with key path and line. One filter value serves every request of its
//! route, concurrently: keep per-request data in the [`Context`]'s typed state.

pub mod builtin;
mod context;
mod registry;
pub mod settings;

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

/// A route filter. See the [module docs](self) for when each hook runs.
#[async_trait]
pub trait Filter: Send + Sync + 'static {
    /// Where this filter can be used. Override to return [`Scope::HttpAndTcp`] when
    /// [`Filter::connection`] is implemented.
    fn scope(&self) -> Scope {
        Scope::Http
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

    /// Runs on the backend's response head before it is sent to the client.
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
