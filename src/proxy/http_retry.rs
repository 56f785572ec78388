//! When an HTTP request is tried again on another backend, beyond a failed connect.
//!
//! A backend's answer of 502, 503 or 504, or a connection that broke or timed out
//! before any answer, is retried when the pool's `retry_on` lists it and the request
//! can be sent again as it was: an idempotent method, no byte of the answer sent to
//! the client yet, and a body that was buffered whole. Pingora keeps the first
//! 64 KiB of a request body for this; a longer body that already went upstream is
//! never replayed. The decision itself (retries left, budget, another backend) is
//! the pool's, in `Attempt::retry`.

use crate::upstream::policy::Condition;
use crate::upstream::Attempt;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_proxy::Session;

/// Whether the request could be sent again as it was.
fn replayable(session: &Session) -> bool {
    session.req_header().method.is_idempotent()
        && !session.as_ref().retry_buffer_truncated()
        && session.response_written().is_none()
}

/// The backend's answer head arrived with `status`: records it, and returns an error
/// marked for retry when the request goes to another backend instead.
pub(super) fn on_answer(
    session: &Session,
    attempt: &mut Attempt,
    status: u16,
) -> Result<(), Box<Error>> {
    if status < 200 || !attempt.in_progress() {
        return Ok(());
    }
    let Some(condition) = Condition::of_status(status) else {
        attempt.answered(status);
        return Ok(());
    };
    if !attempt.pool().spec.resilience.retry_on.contains(condition) {
        attempt.answered(status);
        return Ok(());
    }
    match attempt.retry(condition, replayable(session)) {
        Ok(()) => {
            let mut e = Error::explain(
                ErrorType::HTTPStatus(status),
                format!("backend answered {status}: retrying on another backend"),
            );
            e.set_retry(true);
            Err(e.into_up())
        }
        // The failure is recorded; the backend's answer goes to the client.
        Err(_) => Ok(()),
    }
}

/// Proxying failed after connecting (`client_reused`: on a pooled connection):
/// records the failure and decides whether to retry.
pub(super) fn on_error(
    session: &Session,
    attempt: &mut Attempt,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    let replay = replayable(session);
    if !attempt.in_progress() || *e.esource() != ErrorSource::Upstream {
        // Decided already (a retried answer), or not the backend's doing: Pingora's
        // own rule (retry an idempotent request that found a pooled connection dead).
        if !replay {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        return e;
    }
    let condition = match e.etype() {
        ErrorType::ReadTimedout => Condition::Status504,
        _ => Condition::Reset,
    };
    if client_reused && condition == Condition::Reset && replay {
        // A pooled connection the backend had closed: not the backend failing.
        e.set_retry(true);
        return e;
    }
    let retry = attempt.retry(condition, replay).is_ok();
    e.set_retry(retry);
    e
}
