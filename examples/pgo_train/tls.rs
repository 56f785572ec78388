//! The trainer's TLS load: HTTP/2 chosen by ALPN over TLS 1.3 with an ECDSA P-256
//! certificate, as browsers and gRPC clients reach an edge. A few connections carry
//! many streams at once, and new connections each send one request (handshakes).
//! Without it the profile would call the TLS and h2 paths cold, and the compiler would
//! lay them out for size.

use super::{Result, Shape, IO_TIMEOUT, MIX};
use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// Long-lived h2 connections per run, streams in flight on each, requests per stream.
const CONNECTIONS: usize = 8;
const STREAMS: usize = 10;
const REQUESTS: usize = 250;
/// New TLS connections per run, one request each.
const HANDSHAKES: usize = 200;
/// The name the listener's certificate is for, sent as SNI.
pub(crate) const SERVER_NAME: &str = "localhost";

/// Runs the TLS load against the listener at `addr`; the first failure is the result.
pub(crate) fn drive(addr: SocketAddr, mut tls: ClientConfig) -> Result<()> {
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = TlsConnector::from(Arc::new(tls));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut load = JoinSet::new();
        for c in 0..CONNECTIONS {
            load.spawn(connection(addr, tls.clone(), c));
        }
        load.spawn(handshakes(addr, tls));
        while let Some(done) = load.join_next().await {
            done.map_err(|_| "an h2 load task panicked")??;
        }
        Ok(())
    })
}

/// One connection: [`STREAMS`] request loops sharing it.
async fn connection(addr: SocketAddr, tls: TlsConnector, offset: usize) -> Result<()> {
    let send = open(addr, &tls).await?;
    let mut streams = JoinSet::new();
    for s in 0..STREAMS {
        let send = send.clone();
        streams.spawn(async move {
            for n in 0..REQUESTS {
                exchange(send.clone(), &MIX[(offset + s + n) % MIX.len()]).await?;
            }
            Ok::<_, super::Error>(())
        });
    }
    while let Some(done) = streams.join_next().await {
        done.map_err(|_| "an h2 stream task panicked")??;
    }
    Ok(())
}

/// New connections one after the other, one request on each.
async fn handshakes(addr: SocketAddr, tls: TlsConnector) -> Result<()> {
    for n in 0..HANDSHAKES {
        let send = open(addr, &tls).await?;
        exchange(send, &MIX[n % MIX.len()]).await?;
    }
    Ok(())
}

/// A TLS connection that negotiated h2, ready for requests; its connection task runs
/// until the last handle is dropped.
async fn open(addr: SocketAddr, tls: &TlsConnector) -> Result<SendRequest<Bytes>> {
    let name = ServerName::try_from(SERVER_NAME)?;
    let tcp = timeout(IO_TIMEOUT, TcpStream::connect(addr)).await??;
    let stream = timeout(IO_TIMEOUT, tls.connect(name, tcp)).await??;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(format!("{addr}: TLS did not negotiate h2").into());
    }
    let (send, conn) = timeout(IO_TIMEOUT, h2::client::handshake(stream)).await??;
    tokio::spawn(async move {
        // Ends with an error when Tioga closes first; the requests report failures.
        let _ = conn.await;
    });
    Ok(send)
}

/// One request of `shape` and its whole answer, whose status is checked.
async fn exchange(send: SendRequest<Bytes>, shape: &Shape) -> Result<()> {
    let mut send = timeout(IO_TIMEOUT, send.ready()).await??;
    let mut authority = SERVER_NAME;
    let mut req = http::Request::builder().method(shape.method);
    for (name, value) in shape.headers {
        // h2 carries the host as the request's authority.
        match *name {
            "host" => authority = value,
            _ => req = req.header(*name, *value),
        }
    }
    let req = req
        .uri(format!("https://{authority}{}", shape.path))
        .body(())?;
    let (answer, mut body) = send.send_request(req, shape.body.is_empty())?;
    if !shape.body.is_empty() {
        body.send_data(Bytes::from_static(shape.body.as_bytes()), true)?;
    }
    let answer = timeout(IO_TIMEOUT, answer).await??;
    shape.check(answer.status().as_u16())?;
    let mut body = answer.into_body();
    while let Some(chunk) = timeout(IO_TIMEOUT, body.data()).await? {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok(())
}
