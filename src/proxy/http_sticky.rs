//! Sticky sessions on the HTTP path: the pool's cookie is read from the request to
//! prefer the backend it names, and (re)set on the answer whenever the backend that
//! served is not the one the request named (first visit, or its backend left).

use crate::routing::cookie_value;
use crate::upstream::{Attempt, Pool};
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};

/// The sticky id the request carries, if its pool has sticky sessions.
pub(super) fn requested(pool: &Pool, req: &RequestHeader) -> Option<Vec<u8>> {
    let spec = pool.sticky()?;
    cookie_value(&req.headers, &spec.cookie).map(<[u8]>::to_vec)
}

/// Sets the cookie on `resp` when the serving backend is not the one `sent` named.
pub(super) fn set_cookie(
    attempt: &Attempt,
    sent: Option<&[u8]>,
    resp: &mut ResponseHeader,
    tls: bool,
) -> Result<()> {
    let pool = attempt.pool();
    let (Some(spec), Some(addr)) = (pool.sticky(), attempt.backend()) else {
        return Ok(());
    };
    let Some(id) = pool.sticky_id(addr) else {
        return Ok(());
    };
    if sent == Some(id.as_bytes()) {
        return Ok(());
    }
    let mut cookie = format!("{}={id}; Path=/; HttpOnly; SameSite=Lax", spec.cookie);
    if let Some(age) = spec.max_age {
        cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if tls {
        cookie.push_str("; Secure");
    }
    resp.append_header(http::header::SET_COOKIE, cookie)?;
    Ok(())
}
