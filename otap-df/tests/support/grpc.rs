//! A scripted OTLP/gRPC server for the exporter's tests: real HTTP/2 (hyper) on loopback,
//! each call's metadata and records kept, each answered with the next status of its script
//! (the last one repeats).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use otap_df_core::data::{Encoding, Signal};
use otap_df_nodes::otlp_grpc::{UnaryBody, frame, service_path, status_with_retry, unframe};

/// How the server answers one call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `OK`, with an empty response.
    Ok,
    /// `OK`, with a partial success rejecting this many records.
    Partial(i64),
    /// This status, with a `RetryInfo` of the delay when one is given.
    Status(i32, Option<Duration>),
}

/// One call, as the server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method's path.
    pub path: String,
    /// Its metadata.
    pub headers: HeaderMap,
    /// The records its message held (0 when it did not decode).
    pub records: usize,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// The server, on its own thread; stops when dropped.
pub struct GrpcUpstream {
    /// Its port on 127.0.0.1.
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    _runtime: tokio::runtime::Runtime,
}

impl GrpcUpstream {
    /// Serves `script` (at least one reply).
    pub fn start(script: Vec<Reply>) -> Self {
        Self::serve(script, None)
    }

    /// [`start`](Self::start) over TLS (ALPN `h2`) with this certificate and key.
    pub fn start_tls(script: Vec<Reply>, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let mut config = otap_df_nodes::tls::server_config(cert, key).expect("a server config");
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::serve(
            script,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
    }

    fn serve(script: Vec<Reply>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let seen = calls.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, script) = (seen.clone(), script.clone());
                let service = hyper::service::service_fn(move |request| {
                    answer(request, seen.clone(), script.clone())
                });
                let http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match tls.clone() {
                    None => {
                        tokio::spawn(http.serve_connection(TokioIo::new(stream), service));
                    }
                    Some(tls) => {
                        tokio::spawn(async move {
                            // A client that does not trust the certificate fails the
                            // handshake: nothing to serve.
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        });
                    }
                }
            }
        });
        Self {
            port,
            calls,
            _runtime: runtime,
        }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("not poisoned").clone()
    }

    /// The records of every call to `signal`'s method, whatever it was answered.
    pub fn records(&self, signal: Signal) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.path == service_path(signal))
            .map(|c| c.records)
            .sum()
    }
}

async fn answer(
    request: Request<Incoming>,
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<Vec<Reply>>,
) -> Result<Response<UnaryBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let signal = [Signal::Logs, Signal::Metrics, Signal::Traces]
        .into_iter()
        .find(|s| service_path(*s) == path);
    let records = match (signal, unframe(&body)) {
        (Some(signal), Ok((compressed, message))) => {
            let coding = parts.headers.get("grpc-encoding").map(|v| v.as_bytes());
            let plain = match (compressed, coding) {
                (false, _) => message.to_vec(),
                (true, Some(b"zstd")) => zstd::decode_all(message).unwrap_or_default(),
                (true, _) => {
                    let mut out = Vec::new();
                    let mut gzip = flate2::read::GzDecoder::new(message);
                    std::io::Read::read_to_end(&mut gzip, &mut out)
                        .map(|_| out)
                        .unwrap_or_default()
                }
            };
            otap_df_nodes::otlp::decode_shape(signal, Encoding::Protobuf, &plain)
                .map(|shape| shape.records)
                .unwrap_or(0)
        }
        _ => 0,
    };
    let index = {
        let mut calls = calls.lock().expect("not poisoned");
        calls.push(Call {
            path,
            headers: parts.headers,
            records,
            at: std::time::Instant::now(),
        });
        calls.len() - 1
    };
    let reply = script
        .get(index)
        .or_else(|| script.last())
        .cloned()
        .unwrap_or(Reply::Ok);
    let mut trailers = HeaderMap::new();
    let message = match reply {
        Reply::Ok => Bytes::new(),
        Reply::Partial(rejected) => partial_success(rejected),
        Reply::Status(code, delay) => {
            trailers.insert("grpc-status", HeaderValue::from(code));
            trailers.insert(
                "grpc-message",
                HeaderValue::from_static("scripted%20refusal"),
            );
            if let Some(delay) = delay {
                let details = status_with_retry(code, "scripted refusal", delay);
                let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(details);
                trailers.insert(
                    "grpc-status-details-bin",
                    HeaderValue::from_str(&encoded).expect("base64"),
                );
            }
            let response = Response::builder()
                .header("content-type", "application/grpc")
                .body(UnaryBody::new(None, Some(trailers)))
                .expect("a response");
            return Ok(response);
        }
    };
    trailers.insert("grpc-status", HeaderValue::from(0));
    let response = Response::builder()
        .header("content-type", "application/grpc")
        .body(UnaryBody::new(Some(frame(&message, false)), Some(trailers)))
        .expect("a response");
    Ok(response)
}

/// A logs export response whose partial success rejects `rejected` records.
fn partial_success(rejected: i64) -> Bytes {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    use prost::Message;
    ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: "some records are too old".to_owned(),
        }),
    }
    .encode_to_vec()
    .into()
}

/// What one raw call got back.
#[derive(Debug)]
pub struct CallAnswer {
    /// The HTTP status.
    pub http: http::StatusCode,
    /// `grpc-status`, from the trailers or (trailers-only) the headers.
    pub code: Option<i32>,
    /// `grpc-message`, as sent (percent-encoded).
    pub message: String,
    /// Whether a `grpc-status-details-bin` (a `RetryInfo`) came with it.
    pub details: bool,
}

/// One raw unary call to `127.0.0.1:port` over h2c, on a connection of its own: `method` on
/// `path` with `headers` and `body` as given.
pub fn call(
    port: u16,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> CallAnswer {
    Connection::open(port).call(method, path, headers, body)
}

/// An h2c connection to `127.0.0.1:port`, for raw calls one after the other.
pub struct Connection {
    port: u16,
    runtime: tokio::runtime::Runtime,
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>>,
    /// Ends when the connection does.
    ended: tokio::task::JoinHandle<()>,
}

/// An h2c connection to `127.0.0.1:port` sending request bodies of type `B`, and the task
/// that ends when the connection does.
async fn connect<B>(
    port: u16,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<()>,
)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    // As gRPC clients do: a call's frames go out at once, not held for an ACK.
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("an HTTP/2 handshake");
    let ended = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, ended)
}

/// `method` on `path` of `127.0.0.1:port` with `headers` and `body` as given.
fn request<B>(
    port: u16,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: B,
) -> Request<B> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body).expect("a request")
}

/// What a call's response says (its body and trailers read to the end).
async fn answer_of(response: Response<Incoming>) -> CallAnswer {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("the body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let get = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .map(|v| v.to_str().unwrap_or("").to_owned())
    };
    CallAnswer {
        http: parts.status,
        code: get("grpc-status").and_then(|c| c.parse().ok()),
        message: get("grpc-message").unwrap_or_default(),
        details: get("grpc-status-details-bin").is_some(),
    }
}

/// A request body that sends its first bytes, then nothing more and never ends: a sender
/// that stalls in the middle of a message.
struct Stalled(Option<Bytes>);

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(first) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(first)))),
            None => std::task::Poll::Pending,
        }
    }
}

/// A call to `127.0.0.1:port` on a connection of its own whose body is `first` and then
/// stalls, never ending: the server's answer, waited for up to `bound` (`None` past it).
pub fn call_stalled(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    first: Bytes,
    bound: Duration,
) -> Option<CallAnswer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (mut sender, _ended) = connect::<Stalled>(port).await;
        let call = request(
            port,
            http::Method::POST,
            path,
            headers,
            Stalled(Some(first)),
        );
        let answered = async {
            let response = sender.send_request(call).await.expect("an answer");
            answer_of(response).await
        };
        tokio::time::timeout(bound, answered).await.ok()
    })
}

impl Connection {
    pub fn open(port: u16) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (sender, ended) = runtime.block_on(connect(port));
        Self {
            port,
            runtime,
            sender,
            ended,
        }
    }

    /// `method` on `path` with `headers` and `body` as given, and its answer.
    pub fn call(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> CallAnswer {
        let port = self.port;
        let sender = &mut self.sender;
        self.runtime.block_on(async {
            let call = request(port, method, path, headers, http_body_util::Full::new(body));
            let response = sender.send_request(call).await.expect("an answer");
            answer_of(response).await
        })
    }

    /// Whether the server closed the connection within `bound` (waited for, not slept).
    pub fn closed_within(&mut self, bound: std::time::Duration) -> bool {
        let ended = &mut self.ended;
        self.runtime
            .block_on(async { tokio::time::timeout(bound, ended).await.is_ok() })
    }
}
