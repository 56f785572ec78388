//! What a filter hook sees besides the request: the listener, route, pool and client,
//! a typed per-request state slot, and the [`Response`] a filter can answer with.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use std::net::{IpAddr, SocketAddr};

/// Per-request (or per-connection) context handed to every hook.
pub struct Context<'a> {
    listener: &'a str,
    route: Option<&'a str>,
    pool: &'a str,
    client: Option<SocketAddr>,
    tls: bool,
    tls_client: Option<&'a str>,
    state: &'a mut http::Extensions,
}

impl<'a> Context<'a> {
    /// A context; Tioga builds these, tests of user filters may too.
    pub fn new(
        listener: &'a str,
        route: Option<&'a str>,
        pool: &'a str,
        client: Option<SocketAddr>,
        tls: bool,
        state: &'a mut http::Extensions,
    ) -> Self {
        Self {
            listener,
            route,
            pool,
            client,
            tls,
            tls_client: None,
            state,
        }
    }

    /// The same context, for a client that presented a verified TLS certificate with
    /// this subject (`None`: no certificate).
    pub fn with_tls_client(mut self, subject: Option<&'a str>) -> Self {
        self.tls_client = subject;
        self
    }

    /// The listener's name.
    pub fn listener(&self) -> &str {
        self.listener
    }

    /// The matched route (`LISTENER[i]`); `None` on a TCP listener.
    pub fn route(&self) -> Option<&str> {
        self.route
    }

    /// The pool that will serve the request.
    pub fn pool(&self) -> &str {
        self.pool
    }

    /// The client's address.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client
    }

    /// The client's IP, with IPv4-mapped IPv6 addresses given as IPv4.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client.map(|a| a.ip().to_canonical())
    }

    /// Whether the client connected over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The subject of the client's TLS certificate, verified against the listener's
    /// `client_ca` (RFC 4514 text such as `CN=client,O=Example`); `None` without mTLS.
    pub fn tls_client_subject(&self) -> Option<&str> {
        self.tls_client
    }

    /// This request's state of type `T`, if a filter stored one.
    pub fn state<T: Send + Sync + Clone + 'static>(&self) -> Option<&T> {
        self.state.get::<T>()
    }

    /// This request's state of type `T`, mutable.
    pub fn state_mut<T: Send + Sync + Clone + 'static>(&mut self) -> Option<&mut T> {
        self.state.get_mut::<T>()
    }

    /// Stores `value` as this request's state of type `T`, returning the previous one.
    /// Use a type private to your filter so filters never clash.
    pub fn insert_state<T: Send + Sync + Clone + 'static>(&mut self, value: T) -> Option<T> {
        self.state.insert(value)
    }
}

/// A response a filter answers with instead of the backend.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Headers, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// A response with `status`, no headers and an empty body.
    ///
    /// # Panics
    /// When `status` is not in 100..=999.
    pub fn new(status: u16) -> Self {
        Self {
            status: StatusCode::from_u16(status).expect("a status code from 100 to 999"),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header. Invalid names or values are skipped with a warning in the log.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => self.headers.push((n, v)),
            _ => log::warn!("filter response: skipped invalid header {name:?}: {value:?}"),
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}
