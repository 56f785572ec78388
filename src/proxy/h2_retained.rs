//! What an idle HTTP/2 connection keeps of the answers it sent.
//!
//! An answer from an HTTP/1 backend arrives as slices of the backend connection's read
//! buffer (4 KiB or more): its header values and, for a small answer, its body. The
//! `h2` crate keeps some of them after the answer is sent: header values its HPACK
//! encoder indexed, for as long as they stay in the table, and the last DATA frame,
//! until the connection sends another. Each slice keeps the whole buffer alive, so an
//! idle HTTP/2 connection would hold a read buffer of its last answer. Copying what
//! `h2` may keep into allocations of their own costs one small copy per answer.

use bytes::{Bytes, BytesMut};
use http::response::Parts;
use http::{HeaderMap, HeaderValue};
use pingora_http::ResponseHeader;

/// The largest body chunk sent as a copy of its own; a larger one is sent as it is.
const BODY_AT_MOST: usize = 1024;

/// Moves the answer's header values into one allocation of their own. The head leaves
/// without the header names' case and the reason phrase, which HTTP/2 does not carry.
pub(super) fn detach_head(resp: &mut ResponseHeader) {
    // Pingora gives no mutable access to the header map but through the parts.
    let none = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = Parts::from(std::mem::replace(resp, none));
    detach_values(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
}

fn detach_values(headers: &mut HeaderMap) {
    let total: usize = headers.values().map(HeaderValue::len).sum();
    if total == 0 {
        return;
    }
    let mut all = BytesMut::with_capacity(total);
    for value in headers.values() {
        all.extend_from_slice(value.as_bytes());
    }
    let all = all.freeze();
    let mut at = 0;
    for value in headers.values_mut() {
        let end = at + value.len();
        // SAFETY: the bytes are those of a valid header value (checked again in
        // debug builds); checking them anew here was most of this copy's cost.
        #[allow(unsafe_code)]
        let mut copy = unsafe { HeaderValue::from_maybe_shared_unchecked(all.slice(at..end)) };
        copy.set_sensitive(value.is_sensitive());
        *value = copy;
        at = end;
    }
}

/// Copies a small body chunk out of the buffer it shares.
pub(super) fn detach_body(body: &mut Option<Bytes>) {
    if let Some(chunk) = body
        .as_mut()
        .filter(|b| !b.is_empty() && b.len() <= BODY_AT_MOST)
    {
        *chunk = Bytes::copy_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_let_go_of_the_buffer_they_were_cut_from() {
        let buffer = Bytes::copy_from_slice(b"nginx text/plain");
        let mut headers = HeaderMap::new();
        let server = HeaderValue::from_maybe_shared(buffer.slice(0..5)).unwrap();
        let mut kind = HeaderValue::from_maybe_shared(buffer.slice(6..16)).unwrap();
        kind.set_sensitive(true);
        headers.insert("server", server);
        headers.append("content-type", kind);
        headers.append("x-empty", HeaderValue::from_static(""));
        assert!(!buffer.is_unique());
        detach_values(&mut headers);
        assert!(
            buffer.is_unique(),
            "no value shares the read buffer any more"
        );
        assert_eq!(headers["server"], "nginx");
        assert_eq!(headers["content-type"], "text/plain");
        assert!(headers["content-type"].is_sensitive());
        assert_eq!(headers["x-empty"], "");
    }

    #[test]
    fn an_answer_keeps_its_status_and_headers_in_order() {
        let mut resp = ResponseHeader::build(404, None).unwrap();
        resp.append_header("set-cookie", "a=1").unwrap();
        resp.append_header("set-cookie", "b=2").unwrap();
        resp.append_header("server", "nginx").unwrap();
        detach_head(&mut resp);
        assert_eq!(resp.status, 404);
        let cookies: Vec<_> = resp.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(resp.headers["server"], "nginx");
    }

    #[test]
    fn a_small_chunk_lets_go_of_its_buffer_and_a_large_one_is_sent_as_it_is() {
        let buffer = Bytes::from(vec![7u8; 4096]);
        let mut small = Some(buffer.slice(10..20));
        detach_body(&mut small);
        assert!(
            buffer.is_unique(),
            "the copy no longer shares the read buffer"
        );
        assert_eq!(small.as_deref(), Some(&[7u8; 10][..]));

        let mut large = Some(buffer.slice(..BODY_AT_MOST + 1));
        detach_body(&mut large);
        assert!(!buffer.is_unique(), "a large chunk is sent as it is");
    }
}
