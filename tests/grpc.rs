//! gRPC end to end through Tioga, with tonic as client and server (messages derived
//! by hand, no protoc). The server speaks h2c; Tioga listens with TLS (h2 by ALPN)
//! and with h2c, and its pool says `protocol: h2c`. Over both listeners:
//! - a unary call;
//! - a server stream of 10,000 messages, in order;
//! - a client stream of 1,000 messages, summed;
//! - a bidirectional stream, each message answered in turn;
//! - a call the server ends with `grpc-status: 5`, a message and a trailer of its own,
//!   both as a trailers-only answer and after streamed messages: all arrive intact,
//!   and the access log line carries `grpc_status: 5`.
//!
//! An HTTP/2 connection idle longer than `request_header_timeout` is not closed by
//! that HTTP/1 deadline (the channel's next call needs no new connection).

// tonic's services return `Result<_, tonic::Status>`, a large error by its design.
#![allow(clippy::result_large_err)]

mod common;

use common::pki::TestCa;
use common::*;
use futures::{Stream, StreamExt};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codec::ProstCodec;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

/// The one message type: a number and a text.
#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(uint64, tag = "1")]
    n: u64,
    #[prost(string, tag = "2")]
    text: String,
}

fn msg(n: u64) -> Msg {
    Msg {
        n,
        text: format!("m{n}"),
    }
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// The error every failing call ends with.
fn not_found() -> Status {
    let mut meta = tonic::metadata::MetadataMap::new();
    meta.insert("x-detail", MetadataValue::from_static("looked everywhere"));
    Status::with_metadata(tonic::Code::NotFound, "no such thing", meta)
}

/// The test service `t.Test`, written as tonic's generated code would be.
#[derive(Clone)]
struct TestService;

impl tonic::server::NamedService for TestService {
    const NAME: &'static str = "t.Test";
}

struct Unary;
impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let m = req.into_inner();
            Ok(Response::new(Msg {
                n: m.n + 1,
                text: m.text,
            }))
        })
    }
}

struct Missing;
impl tonic::server::UnaryService<Msg> for Missing {
    type Response = Msg;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn call(&mut self, _: Request<Msg>) -> Self::Future {
        Box::pin(async { Err(not_found()) })
    }
}

/// Streams `n` messages, then ends with [`not_found`] when `fail` says so.
struct Count;
impl tonic::server::ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Response<MsgStream>, Status>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let m = req.into_inner();
            let fail = m.text == "fail";
            let items = futures::stream::iter((0..m.n).map(|i| Ok(msg(i))));
            let end = futures::stream::iter(fail.then(|| Err(not_found())));
            Ok(Response::new(Box::pin(items.chain(end)) as MsgStream))
        })
    }
}

struct Sum;
impl tonic::server::ClientStreamingService<Msg> for Sum {
    type Response = Msg;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let mut stream = req.into_inner();
            let (mut sum, mut count) = (0, 0);
            while let Some(m) = stream.message().await? {
                sum += m.n;
                count += 1;
            }
            Ok(Response::new(Msg {
                n: sum,
                text: format!("{count} messages"),
            }))
        })
    }
}

struct Double;
impl tonic::server::StreamingService<Msg> for Double {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Response<MsgStream>, Status>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let stream = req.into_inner().map(|m| m.map(|m| msg(m.n * 2)));
            Ok(Response::new(Box::pin(stream) as MsgStream))
        })
    }
}

impl<B> Service<http::Request<B>> for TestService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            Ok(match path.as_str() {
                "/t.Test/Unary" => grpc.unary(Unary, req).await,
                "/t.Test/Missing" => grpc.unary(Missing, req).await,
                "/t.Test/Count" => grpc.server_streaming(Count, req).await,
                "/t.Test/Sum" => grpc.client_streaming(Sum, req).await,
                "/t.Test/Double" => grpc.streaming(Double, req).await,
                _ => Status::unimplemented(path).into_http(),
            })
        })
    }
}

/// Starts the gRPC server (h2c) on a runtime of its own; returns its address.
fn spawn_grpc_server() -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(TestService)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, rt)
}

fn path(method: &str) -> http::uri::PathAndQuery {
    format!("/t.Test/{method}").parse().unwrap()
}

type Client = tonic::client::Grpc<tonic::transport::Channel>;

fn codec() -> ProstCodec<Msg, Msg> {
    ProstCodec::default()
}

async fn ready(client: &mut Client) {
    client.ready().await.expect("channel ready");
}

async fn unary(client: &mut Client, method: &str, m: Msg) -> Result<Response<Msg>, Status> {
    ready(client).await;
    client.unary(Request::new(m), path(method), codec()).await
}

/// Every call of the module docs through `client`.
async fn every_call(client: &mut Client, via: &str) {
    let answer = unary(client, "Unary", msg(41)).await.unwrap().into_inner();
    assert_eq!(
        answer,
        Msg {
            n: 42,
            text: "m41".into()
        },
        "{via}: unary"
    );

    ready(client).await;
    let mut stream = client
        .server_streaming(Request::new(msg(10_000)), path("Count"), codec())
        .await
        .unwrap()
        .into_inner();
    let mut next = 0;
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m, msg(next), "{via}: server stream in order");
        next += 1;
    }
    assert_eq!(next, 10_000, "{via}: the whole server stream");

    ready(client).await;
    let sent = futures::stream::iter((1..=1000).map(msg));
    let sum = client
        .client_streaming(Request::new(sent), path("Sum"), codec())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        sum,
        Msg {
            n: 500_500,
            text: "1000 messages".into()
        },
        "{via}: client stream"
    );

    ready(client).await;
    let sent = futures::stream::iter((0..1000).map(msg));
    let mut answers = client
        .streaming(Request::new(sent), path("Double"), codec())
        .await
        .unwrap()
        .into_inner();
    for i in 0..1000 {
        let m = answers
            .message()
            .await
            .unwrap()
            .expect("an answer per message");
        assert_eq!(m, msg(i * 2), "{via}: bidirectional stream");
    }
    assert!(answers.message().await.unwrap().is_none());

    let status = unary(client, "Missing", msg(1)).await.unwrap_err();
    assert_not_found(&status, via);

    ready(client).await;
    let failing = Msg {
        n: 3,
        text: "fail".into(),
    };
    let mut stream = client
        .server_streaming(Request::new(failing), path("Count"), codec())
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        assert_eq!(stream.message().await.unwrap(), Some(msg(i)));
    }
    let status = stream.message().await.unwrap_err();
    assert_not_found(&status, via);
}

fn assert_not_found(status: &Status, via: &str) {
    assert_eq!(status.code(), tonic::Code::NotFound, "{via}: {status:?}");
    assert_eq!(status.message(), "no such thing", "{via}");
    assert_eq!(
        status
            .metadata()
            .get("x-detail")
            .and_then(|v| v.to_str().ok()),
        Some("looked everywhere"),
        "{via}: the server's own trailer"
    );
}

#[test]
fn grpc_calls_pass_intact_over_h2_and_h2c() {
    let (server, _server_rt) = spawn_grpc_server();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "grpc");
    let cert = ca.issue("server", "server", &["localhost"]);
    let (tls, h2c, admin) = (free_addr(), free_addr(), free_addr());
    let tioga = Tioga::start(
        &format!(
            "server: {{threads: 2, pid_file: '@DIR@/tioga.pid', upgrade_sock: '@DIR@/up.sock'}}
admin: {{bind: \"{admin}\"}}
access_log: {{target: '@DIR@/access.log'}}
pools:
  grpc: {{backends: [\"{server}\"], protocol: h2c}}
listeners:
  tls:
    protocol: http
    bind: \"{tls}\"
    tls: {{cert: '{cert}', key: '{key}'}}
    request_header_timeout: 1s
    routes: [{{pool: grpc}}]
  h2c:
    protocol: http
    bind: \"{h2c}\"
    http2: true
    request_header_timeout: 1s
    routes: [{{pool: grpc}}]
",
            cert = cert.cert.display(),
            key = cert.key.display()
        ),
        &[tls, h2c, admin],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls_config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(
                std::fs::read(&ca.pem).unwrap(),
            ))
            .domain_name("localhost");
        let over_tls = tonic::transport::Endpoint::from_shared(format!("https://{tls}"))
            .unwrap()
            .tls_config(tls_config)
            .unwrap()
            .connect()
            .await
            .expect("connect over TLS");
        let over_h2c = tonic::transport::Endpoint::from_shared(format!("http://{h2c}"))
            .unwrap()
            .connect()
            .await
            .expect("connect over h2c");
        for (channel, via) in [(over_tls, "tls"), (over_h2c, "h2c")] {
            let mut client = tonic::client::Grpc::new(channel);
            every_call(&mut client, via).await;
            // Idle past request_header_timeout, then call again on the connection.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let answer = unary(&mut client, "Unary", msg(1)).await.unwrap();
            assert_eq!(answer.into_inner().n, 2, "{via}: after an idle second");
        }
    });
    let metrics = get(admin, "/metrics").unwrap().text();
    for listener in ["tls", "h2c"] {
        let line = format!(
            "tioga_http_timeouts_total{{listener=\"{listener}\",phase=\"request_header\"}} 0"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    let log = tioga.dir().join("access.log");
    let entries = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    wait_until(Duration::from_secs(10), "every call in the log", || {
        entries().len() >= 14
    });
    for e in entries() {
        assert_eq!(e["protocol"], "h2", "{e}");
        let failed = e["path"] == "/t.Test/Missing"
            || (e["path"] == "/t.Test/Count" && e["bytes_out"].as_u64() < Some(1000));
        match failed {
            true => assert_eq!(e["grpc_status"], 5, "{e}"),
            false => assert!(e.get("grpc_status").is_none(), "{e}"),
        }
    }
}
