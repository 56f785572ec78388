//! The stack's composition: which layers each listener gets, and what a plain
//! connection looks like after them.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[test]
fn coalescing_replaces_the_write_buffer_and_nothing_else_does() {
    for coalesce in [true, false] {
        let stack = Stack::http(None, coalesce, HeadTimeouts::unlimited());
        assert!(stack.layers.first_request);
        assert_eq!(stack.layers.coalesce, coalesce);
        let expected = if coalesce {
            Buffering::None
        } else {
            Buffering::WriteOnly
        };
        assert_eq!(stack.buffering, expected, "coalesce: {coalesce}");
    }
    let tcp = Stack::tcp();
    assert_eq!(tcp.buffering, Buffering::None);
    assert!(!tcp.layers.first_request && !tcp.layers.coalesce);
}

/// A plain connection accepted as Pingora would hand it over, and its client, which
/// has sent `sent`.
async fn accepted(sent: &[u8]) -> (Stream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let mut client = client.unwrap();
    client.write_all(sent).await.unwrap();
    (Box::new(L4Stream::from(server.unwrap().0)), client)
}

#[tokio::test]
async fn the_guard_leaves_the_first_bytes_to_read_and_coalescing_wraps_the_stream() {
    for coalesce in [true, false] {
        let (stream, _client) = accepted(b"hello").await;
        let (mut stream, h2) = Stack::http(None, coalesce, HeadTimeouts::unlimited())
            .layers
            .apply(stream)
            .await
            .expect("the client sent something");
        assert!(!h2);
        assert_eq!(stream.as_any().is::<Coalesce>(), coalesce);
        assert_eq!(stream.as_any().is::<L4Stream>(), !coalesce);
        let mut first = [0u8; 5];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"hello", "coalesce: {coalesce}");
    }
}

#[tokio::test]
async fn a_client_that_leaves_without_a_word_is_not_handed_on() {
    let (stream, client) = accepted(b"").await;
    drop(client);
    assert!(Stack::http(None, true, HeadTimeouts::unlimited())
        .layers
        .apply(stream)
        .await
        .is_none());
}

#[tokio::test]
async fn an_h2c_preface_is_recognised_even_in_part() {
    for sent in [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], b"PRI * HT"] {
        let (stream, _client) = accepted(sent).await;
        let (_, h2) = Stack::http(None, true, HeadTimeouts::unlimited())
            .layers
            .apply(stream)
            .await
            .unwrap();
        assert!(h2, "{sent:?}");
    }
    let (stream, _client) = accepted(b"GET / HTTP/1.1\r\n").await;
    let (_, h2) = Stack::http(None, true, HeadTimeouts::unlimited())
        .layers
        .apply(stream)
        .await
        .unwrap();
    assert!(!h2);
}
