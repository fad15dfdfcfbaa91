//! `receiver:otlp_http`: the OTLP/HTTP server side.
//!
//! `POST /v1/logs`, `/v1/metrics`, `/v1/traces` with `application/x-protobuf` or
//! `application/json` bodies, optionally gzip-compressed. A request is answered `200` only
//! once its payload is in the pipeline's queue. With a `bearer_token_authorizer` bound, every
//! request needs an accepted token (`401` otherwise), and an authorizer that cannot decide
//! refuses the request (`503`): it fails closed.
//!
//! **Admission before work.** A request is checked in the order of what each check costs:
//! path, method, credential, headers; then it takes room in the pipeline's queue, waiting up
//! to `admission_timeout` while the queue is full — backpressure through the open request, as
//! the OpenTelemetry Collector's receivers apply it — and only with that room held is its body
//! read, decompressed and counted. A request that still finds no room is answered `429` (and
//! one that arrives while the pipeline stops `503`), with `Retry-After`, before its body is
//! read: refusing costs almost nothing, so an overloaded receiver keeps its core for the
//! requests it accepts. Protobuf bodies are counted by walking the wire format in place
//! ([`crate::otlp::wire`]), never decoded into owned structures.
//!
//! One instance per core. The address is bound once, by the first core, without
//! `SO_REUSEPORT`, and every core accepts from that one socket: a second process (or a
//! second receiver of the same configuration) on the same address fails to start with
//! "address in use", whatever `cores` is.

use std::cell::Cell;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use otap_df_core::capability::{AuthzDecision, BearerTokenAuthorizer, CapabilityId, local};
use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::node::{
    ControlMessage, LocalReceiver, NodeContext, NodeCounters, NodeError, NodeInstance,
    OutputPermit, Outputs, ReceiverContext, ShutdownSignal, TrySendError,
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{code, encoding_of, media_type, signal_path, status_body, success_body};
use crate::otlp::decode_shape;

/// `config:` of `receiver:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpReceiverConfig {
    /// The address to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes, compressed or not (a gzip body is also
    /// held to it once decompressed).
    #[serde(default = "defaults::max_body_size")]
    pub max_body_size: usize,
    /// What `Retry-After` says when the pipeline pushes back.
    #[serde(default = "defaults::retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    /// How long a request waits for room in a full pipeline before it is refused (`429`).
    #[serde(default = "defaults::admission_timeout", with = "humantime_serde")]
    pub admission_timeout: Duration,
    /// How long a client may take to send a request's headers (and a TLS handshake), and how
    /// long a keep-alive connection may stay idle; then the connection is closed.
    #[serde(default = "defaults::header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body once it was admitted (`408`).
    #[serde(default = "defaults::body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Open connections per core; a connection beyond it is closed at once.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Bytes of request bodies being read at once per core (by `Content-Length`, or
    /// `max_body_size` when a body does not declare it); a request beyond it waits like a
    /// request for queue room, then gets `429`.
    #[serde(default = "defaults::max_body_bytes_in_flight")]
    pub max_body_bytes_in_flight: usize,
    /// Serve HTTPS with this certificate and key.
    #[serde(default)]
    pub tls: Option<ServerTls>,
}

/// `tls:` of `receiver:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM file of the server certificate chain.
    pub cert_file: PathBuf,
    /// PEM file of its private key.
    pub key_file: PathBuf,
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4318))
    }

    pub fn max_body_size() -> usize {
        20 * 1024 * 1024
    }

    pub fn retry_after() -> Duration {
        Duration::from_secs(1)
    }

    /// Well inside the OpenTelemetry SDKs' default export timeout (10 s), so that a client
    /// gets its answer, accepted or `429`, before it gives up.
    pub fn admission_timeout() -> Duration {
        Duration::from_secs(5)
    }

    /// hyper's own default, and the Go servers' usual `ReadHeaderTimeout` order of magnitude.
    pub fn header_read_timeout() -> Duration {
        Duration::from_secs(30)
    }

    pub fn body_read_timeout() -> Duration {
        Duration::from_secs(30)
    }

    /// An idle HTTP/1.1 connection costs about 10–15 KiB here: 4096 stay under 64 MiB a core.
    pub fn max_connections() -> usize {
        4096
    }

    /// Six bodies of the default `max_body_size`, thousands of typical OTLP requests.
    pub fn max_body_bytes_in_flight() -> usize {
        128 * 1024 * 1024
    }
}

impl OtlpHttpReceiverConfig {
    /// Decodes and checks ranges (no file is read, no socket bound).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if decoded.max_body_size == 0 {
            return Err(config.invalid("max_body_size", "`max_body_size` must be at least 1"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&decoded.retry_after) {
            return Err(config.invalid(
                "retry_after",
                "`retry_after` must be between 1s and 1h (`Retry-After` counts whole seconds)",
            ));
        }
        for (field, value) in [
            ("header_read_timeout", decoded.header_read_timeout),
            ("body_read_timeout", decoded.body_read_timeout),
        ] {
            if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&value) {
                return Err(config.invalid(field, format!("`{field}` must be between 10ms and 1h")));
            }
        }
        if decoded.max_body_bytes_in_flight < decoded.max_body_size
            || decoded.max_body_bytes_in_flight > MAX_BODY_BYTES_IN_FLIGHT
        {
            return Err(config.invalid(
                "max_body_bytes_in_flight",
                format!(
                    "`max_body_bytes_in_flight` must be at least `max_body_size` ({}) and at \
                     most {MAX_BODY_BYTES_IN_FLIGHT}",
                    decoded.max_body_size
                ),
            ));
        }
        if !(1..=1_000_000).contains(&decoded.max_connections) {
            return Err(config.invalid(
                "max_connections",
                "`max_connections` must be between 1 and 1000000",
            ));
        }
        if decoded.admission_timeout > Duration::from_secs(60) {
            return Err(config.invalid(
                "admission_timeout",
                "`admission_timeout` must be at most 60s (0s refuses at once when the pipeline is full)",
            ));
        }
        Ok(decoded)
    }
}

/// The most `max_body_bytes_in_flight` accepts (1 TiB): it is counted in KiB units.
const MAX_BODY_BYTES_IN_FLIGHT: usize = 1 << 40;

/// `receiver:otlp_http`.
pub static OTLP_HTTP_RECEIVER: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "otlp_http", env!("CARGO_PKG_NAME"))
        .description("OTLP/HTTP server (protobuf, JSON, gzip), optionally behind bearer tokens")
        .accepts(&[CapabilityRequirement::optional(
            CapabilityId::BearerTokenAuthorizer,
        )])
        .validate_config(|config| OtlpHttpReceiverConfig::decode(config).map(drop))
        .listens(|config| {
            let decoded: OtlpHttpReceiverConfig = config.decode().ok()?;
            Some(vec![("listen", decoded.listen)])
        })
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = OtlpHttpReceiverConfig::decode(config)?;
    let authorizer = capabilities
        .optional_local::<BearerTokenAuthorizer>()?
        .map(|authorizer| Authorization::of(context, authorizer))
        .transpose()?;
    let tls = config
        .tls
        .as_ref()
        .map(|tls| crate::tls::server_config(tls.cert_file.as_path(), tls.key_file.as_path()))
        .transpose()
        .map_err(|message| context.error(message))?
        .map(|config| TlsAcceptor::from(Arc::new(config)));
    // Bound now, once for all cores, so that an address in use fails the start, naming the
    // node; each core accepts on its own handle of the one socket.
    let socket = context
        .shared
        .get_or_try_init(|| bind(config.listen))
        .and_then(|listener| listener.try_clone())
        .map_err(|e| context.error(format!("cannot listen on `{}`: {e}", config.listen)))?;
    Ok(NodeInstance::Receiver(Box::new(OtlpHttpReceiver {
        node: context.node_id.clone(),
        socket,
        tls,
        config,
        authorizer,
        counters: Counters::new(&context.counters),
        shutdown: context.shutdown.clone(),
    })))
}

/// A socket bound to `address`: `SO_REUSEADDR` (a restart does not wait for old connections
/// in `TIME_WAIT`), no `SO_REUSEPORT` (nobody else may bind it). It listens only once the
/// receiver runs ([`listen`]), so that nothing connects before the pipeline can answer.
fn bind(address: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// Starts listening on this core's handle of the bound socket, with a backlog of 1024 (a
/// burst of connections waits in the kernel instead of being refused). Every core does it;
/// on one socket the second time changes nothing.
fn listen(socket: socket2::Socket) -> std::io::Result<TcpListener> {
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// The receiver's own counters (requests; refusals by reason).
struct Counters {
    requests: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    auth_missing: Arc<AtomicU64>,
    auth_invalid: Arc<AtomicU64>,
    auth_expired: Arc<AtomicU64>,
    auth_unavailable: Arc<AtomicU64>,
    bad_request: Arc<AtomicU64>,
    unsupported: Arc<AtomicU64>,
    too_large: Arc<AtomicU64>,
    not_found: Arc<AtomicU64>,
    pipeline_full: Arc<AtomicU64>,
    pipeline_closed: Arc<AtomicU64>,
    body_timeout: Arc<AtomicU64>,
    bytes_in_flight: Arc<AtomicU64>,
    connections_rejected: Arc<AtomicU64>,
    accept_errors: Arc<AtomicU64>,
    waited: Arc<AtomicU64>,
    read: Arc<AtomicU64>,
    counters: Arc<NodeCounters>,
}

impl Counters {
    fn new(counters: &Arc<NodeCounters>) -> Self {
        Self {
            requests: counters.named("requests"),
            accepted: counters.named("accepted"),
            auth_missing: counters.named("refused.auth_missing"),
            auth_invalid: counters.named("refused.auth_invalid"),
            auth_expired: counters.named("refused.auth_expired"),
            auth_unavailable: counters.named("refused.auth_unavailable"),
            bad_request: counters.named("refused.bad_request"),
            unsupported: counters.named("refused.unsupported_media_type"),
            too_large: counters.named("refused.too_large"),
            not_found: counters.named("refused.not_found"),
            pipeline_full: counters.named("refused.pipeline_full"),
            pipeline_closed: counters.named("refused.pipeline_closed"),
            body_timeout: counters.named("refused.body_timeout"),
            bytes_in_flight: counters.named("refused.bytes_in_flight"),
            connections_rejected: counters.named("connections.rejected"),
            accept_errors: counters.named("connections.accept_errors"),
            waited: counters.named("admission.waited"),
            read: counters.named("bodies_read"),
            counters: counters.clone(),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct OtlpHttpReceiver {
    node: String,
    socket: socket2::Socket,
    tls: Option<TlsAcceptor>,
    config: OtlpHttpReceiverConfig,
    authorizer: Option<Authorization>,
    counters: Counters,
    shutdown: ShutdownSignal,
}

/// The bound authorizer and the header it reads, parsed once rather than per request.
struct Authorization {
    authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    header: HeaderName,
}

impl Authorization {
    fn of(
        context: &NodeContext,
        authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    ) -> Result<Self, NodeError> {
        let name = authorizer.header().name();
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            context.error(format!(
                "the bound authorizer reads the header `{name}`, which is not a valid HTTP \
                 header name (letters, digits and !#$%&'*+-.^_`|~); configure the extension \
                 with a header such as `authorization` or `x-api-key`"
            ))
        })?;
        Ok(Self { authorizer, header })
    }
}

#[otap_df_core::async_trait(?Send)]
impl LocalReceiver for OtlpHttpReceiver {
    async fn run(self: Box<Self>, mut context: ReceiverContext) -> Result<(), NodeError> {
        let Self {
            node,
            socket,
            tls,
            config,
            authorizer,
            counters,
            shutdown,
        } = *self;
        let error = |message: String| NodeError::Failed {
            node: node.clone(),
            message,
        };
        let listener = listen(socket)
            .map_err(|e| error(format!("cannot listen on `{}`: {e}", config.listen)))?;
        tracing::info!(node = %node, address = %config.listen, tls = tls.is_some(), "OTLP/HTTP receiver listening");
        let handler = Rc::new(Handler {
            outputs: context.outputs,
            shutdown: shutdown.clone(),
            admission_timeout: config.admission_timeout,
            body_read_timeout: config.body_read_timeout,
            body_budget: tokio::sync::Semaphore::new(
                config.max_body_bytes_in_flight.div_ceil(1024),
            ),
            authorizer,
            max_body_size: config.max_body_size,
            retry_after: HeaderValue::from(config.retry_after.as_secs()),
            counters,
        });
        let (drain, draining) = tokio::sync::watch::channel(false);
        let mut connections = JoinSet::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        // The header timeout is the connection's own ([`serve`]): hyper's allocates a timer
        // and enters it in the core's timer wheel for every request's head.
        http.header_read_timeout(None);
        let mut accept_errors = AcceptErrors::default();
        let deadline = loop {
            tokio::select! {
                message = context.control.recv() => {
                    if let ControlMessage::Shutdown { deadline } = message {
                        break deadline;
                    }
                }
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            // Out of file descriptors and the like: the listener stays, and
                            // the loop backs off instead of spinning on the same error.
                            bump(&handler.counters.accept_errors);
                            let pause = accept_errors.failed(&node, &error);
                            tokio::select! {
                                message = context.control.recv() => {
                                    if let ControlMessage::Shutdown { deadline } = message {
                                        break deadline;
                                    }
                                }
                                () = tokio::time::sleep(pause) => {}
                            }
                            continue;
                        }
                    };
                    accept_errors.succeeded();
                    if connections.len() >= config.max_connections {
                        // Closed at once: the client learns now, rather than waiting in a
                        // backlog, and the core's memory stays bounded.
                        bump(&handler.counters.connections_rejected);
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    let draining = draining.clone();
                    let tls = tls.clone();
                    let http = http.clone();
                    let header_read_timeout = config.header_read_timeout;
                    connections.spawn_local(async move {
                        let exchange = Rc::new(Exchange::default());
                        let service = service_fn({
                            let exchange = exchange.clone();
                            move |request| {
                                exchange.started();
                                let handler = handler.clone();
                                let exchange = exchange.clone();
                                async move {
                                    let response = handler.handle(request).await;
                                    exchange.answered();
                                    Ok::<_, Infallible>(response)
                                }
                            }
                        });
                        match tls {
                            None => serve(http.serve_connection(TokioIo::new(stream), service), draining, &exchange, header_read_timeout).await,
                            Some(tls) => {
                                if let Ok(Ok(stream)) = tokio::time::timeout(header_read_timeout, tls.accept(stream)).await {
                                    serve(http.serve_connection(TokioIo::new(stream), service), draining, &exchange, header_read_timeout).await;
                                }
                            }
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        };
        // No new connections; requests waiting for room are refused (503), requests in
        // flight finish (and are answered) until the deadline, then their connections are
        // closed.
        drop(listener);
        // Clients get until shortly before the deadline, so that what they hand over can
        // still be passed on (or accounted for) downstream in time.
        let until = shutdown
            .requested()
            .map_or(deadline, |request| request.stop_waiting_at.min(deadline));
        let _ = drain.send(true);
        let drained = tokio::time::timeout_at(until.into(), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        Ok(())
    }
}

/// How long a connection accepted just before a drain may take to send its first request.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// What a connection's task knows of its requests: for its header timer and its drain.
#[derive(Default)]
struct Exchange {
    /// Since when the connection has been waiting for a request's head: since it was
    /// accepted (or its TLS handshake ended) or its last request was answered; `None` while a
    /// request is being answered.
    waiting_since: Cell<Option<tokio::time::Instant>>,
    /// Whether a request has come, and the wake-up of the drain waiting for the first.
    asked: Cell<bool>,
    first: tokio::sync::Notify,
}

impl Exchange {
    /// A request's head has been read.
    fn started(&self) {
        self.waiting_since.set(None);
        if !self.asked.replace(true) {
            self.first.notify_one();
        }
    }

    /// The connection waits for the next request's head from now on.
    fn answered(&self) {
        self.waiting_since.set(Some(tokio::time::Instant::now()));
    }
}

/// When the header timer of a connection waiting since `waiting_since` looks next, seen at
/// `now`; `None` when its time is up. A request in hand (`None` waiting) has timeouts of its
/// own (admission, body): the timer looks again a whole timeout later.
fn head_deadline(
    waiting_since: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
    timeout: Duration,
) -> Option<tokio::time::Instant> {
    match waiting_since {
        Some(since) if now >= since + timeout => None,
        Some(since) => Some(since + timeout),
        None => Some(now + timeout),
    }
}

/// Serves one connection until it ends or the receiver drains; then it answers the request in
/// flight (with `Connection: close`) and closes. A connection that has not sent a request
/// yet gets up to [`FIRST_REQUEST_GRACE`] to send one: its client connected to send it and
/// would otherwise see the connection closed instead of an answer (an accept racing a
/// reload's drain). A client that goes away mid-request is its own business.
///
/// A connection that takes longer than `header_read_timeout` to send a request's head, or
/// stays idle that long between requests, is closed. One timer per connection does it, moved
/// only when it fires: a request costs a clock read instead of a timer of its own.
async fn serve<C: GracefulConnection>(
    connection: C,
    mut draining: tokio::sync::watch::Receiver<bool>,
    exchange: &Exchange,
    header_read_timeout: Duration,
) {
    let mut connection = std::pin::pin!(connection);
    // The head of the first request is awaited from now on (after any TLS handshake).
    exchange.answered();
    let mut timer = std::pin::pin!(tokio::time::sleep(header_read_timeout));
    loop {
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            _ = draining.wait_for(|draining| *draining) => break,
            () = timer.as_mut() => {
                let now = tokio::time::Instant::now();
                match head_deadline(exchange.waiting_since.get(), now, header_read_timeout) {
                    // Closed without an answer, as no request was sent.
                    None => return,
                    Some(deadline) => timer.as_mut().reset(deadline),
                }
            }
        }
    }
    tokio::select! {
        _ = connection.as_mut() => return,
        () = exchange.first.notified() => {}
        () = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Failed `accept`s in a row: how long to pause before the next, and a warning at most once a
/// second with the number of failures since the last one.
#[derive(Default)]
struct AcceptErrors {
    in_a_row: u32,
    unreported: u64,
    last_report: Option<std::time::Instant>,
}

impl AcceptErrors {
    fn failed(&mut self, node: &str, error: &std::io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unreported += 1;
        let now = std::time::Instant::now();
        if self
            .last_report
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            tracing::warn!(
                node = %node,
                error = %error,
                failures = self.unreported,
                "accept failed; backing off (connections wait in the backlog)"
            );
            self.unreported = 0;
            self.last_report = Some(now);
        }
        // 5 ms, doubling up to 640 ms.
        Duration::from_millis(5 << self.in_a_row.min(8).saturating_sub(1))
            .min(Duration::from_secs(1))
    }

    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }
}

/// Answers one request.
struct Handler {
    outputs: Outputs,
    /// Requests waiting for room give up (503) once the engine asks the pipeline to stop.
    shutdown: ShutdownSignal,
    admission_timeout: Duration,
    body_read_timeout: Duration,
    /// Bytes of bodies being read, in KiB.
    body_budget: tokio::sync::Semaphore,
    authorizer: Option<Authorization>,
    max_body_size: usize,
    retry_after: HeaderValue,
    counters: Counters,
}

/// A refusal: status, gRPC code, message, and the counter it goes to.
struct Refusal<'a> {
    status: StatusCode,
    code: i32,
    message: String,
    counter: &'a AtomicU64,
}

impl Handler {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        bump(&self.counters.requests);
        // Errors answer in the request's encoding when it is one we know.
        let encoding = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(encoding_of);
        match self.accept(request).await {
            Ok(encoding) => {
                bump(&self.counters.accepted);
                response(StatusCode::OK, encoding, success_body(encoding))
            }
            Err(refusal) => {
                bump(refusal.counter);
                let encoding = encoding.unwrap_or(Encoding::Protobuf);
                let mut response = response(
                    refusal.status,
                    encoding,
                    status_body(encoding, refusal.code, &refusal.message),
                );
                let headers = response.headers_mut();
                match refusal.status {
                    StatusCode::UNAUTHORIZED => {
                        let scheme = self
                            .authorizer
                            .as_ref()
                            .map(|a| a.authorizer.header().scheme())
                            .filter(|s| !s.is_empty())
                            .unwrap_or("Bearer");
                        if let Ok(value) =
                            HeaderValue::from_str(&format!("{scheme} realm=\"otap-df\""))
                        {
                            headers.insert(WWW_AUTHENTICATE, value);
                        }
                    }
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        headers.insert(RETRY_AFTER, self.retry_after.clone());
                    }
                    StatusCode::METHOD_NOT_ALLOWED => {
                        headers.insert(ALLOW, HeaderValue::from_static("POST"));
                    }
                    _ => {}
                }
                response
            }
        }
    }

    /// Takes the request into the pipeline, or says why not.
    async fn accept(&self, request: Request<Incoming>) -> Result<Encoding, Refusal<'_>> {
        let counters = &self.counters;
        let refuse = |status, code, message: String, counter| Refusal {
            status,
            code,
            message,
            counter,
        };
        let path = request.uri().path();
        let Some(signal) = [Signal::Logs, Signal::Metrics, Signal::Traces]
            .into_iter()
            .find(|&signal| path.strip_prefix('/') == Some(signal_path(signal)))
        else {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                code::UNIMPLEMENTED,
                format!("no OTLP signal at `{path}`; use /v1/logs, /v1/metrics or /v1/traces"),
                &counters.not_found,
            ));
        };
        if request.method() != Method::POST {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                code::UNIMPLEMENTED,
                format!("{} is not allowed; OTLP/HTTP uses POST", request.method()),
                &counters.not_found,
            ));
        }
        self.authorize(&request)?;
        let headers = request.headers();
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let Some(encoding) = content_type.and_then(encoding_of) else {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_ARGUMENT,
                format!(
                    "Content-Type `{}` is not supported; use application/x-protobuf or application/json",
                    content_type.unwrap_or("")
                ),
                &counters.unsupported,
            ));
        };
        let gzip = match headers.get(CONTENT_ENCODING).map(HeaderValue::to_str) {
            None => false,
            Some(Ok(value)) if value.trim().eq_ignore_ascii_case("identity") => false,
            Some(Ok(value)) if value.trim().eq_ignore_ascii_case("gzip") => true,
            Some(value) => {
                return Err(refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    code::INVALID_ARGUMENT,
                    format!(
                        "Content-Encoding `{}` is not supported; use gzip or none",
                        value.unwrap_or("")
                    ),
                    &counters.unsupported,
                ));
            }
        };
        let too_large = || {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::INVALID_ARGUMENT,
                format!("the body is larger than {} bytes", self.max_body_size),
                &counters.too_large,
            )
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_size as u64) {
            return Err(too_large());
        }
        let permit = self.admit().await?;
        let _reading = self
            .reserve_body(declared.unwrap_or(self.max_body_size as u64))
            .await?;
        bump(&counters.read);
        let mut collect =
            std::pin::pin!(Limited::new(request.into_body(), self.max_body_size).collect());
        // A body of a few kilobytes is mostly in hand by the time it is first asked for: only
        // one still on its way arms the read timer (an entry in the core's timer wheel per
        // request is measurable at these rates).
        let read = match std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await {
            Poll::Ready(read) => Ok(read),
            Poll::Pending => tokio::time::timeout(self.body_read_timeout, collect).await,
        };
        let body = match read {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(too_large());
            }
            Err(_) => {
                return Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    code::DEADLINE_EXCEEDED,
                    format!(
                        "the body did not arrive within {:?}",
                        self.body_read_timeout
                    ),
                    &counters.body_timeout,
                ));
            }
            Ok(Err(error)) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_ARGUMENT,
                    format!("the body could not be read: {error}"),
                    &counters.bad_request,
                ));
            }
        };
        let body = if gzip {
            let mut plain = Vec::with_capacity(body.len() * 4);
            let read = flate2::read::GzDecoder::new(body.as_ref())
                .take(self.max_body_size as u64 + 1)
                .read_to_end(&mut plain);
            match read {
                Ok(length) if length > self.max_body_size => return Err(too_large()),
                Ok(_) => Bytes::from(plain),
                Err(error) => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        code::INVALID_ARGUMENT,
                        format!("the gzip body does not decompress: {error}"),
                        &counters.bad_request,
                    ));
                }
            }
        } else {
            body
        };
        let shape = decode_shape(signal, encoding, &body).map_err(|message| {
            refuse(
                StatusCode::BAD_REQUEST,
                code::INVALID_ARGUMENT,
                message,
                &counters.bad_request,
            )
        })?;
        let records = shape.records as u64;
        NodeCounters::add(&counters.counters.records_in, records);
        permit.send(OtlpPayload::new(signal, encoding, records, body));
        Ok(encoding)
    }

    /// Room in the pipeline for one payload: at once when there is some, else after waiting
    /// up to `admission_timeout`; refused while stopping.
    async fn admit(&self) -> Result<OutputPermit<'_>, Refusal<'_>> {
        let closed = || Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: code::UNAVAILABLE,
            message: "the pipeline is stopping".to_owned(),
            counter: &self.counters.pipeline_closed,
        };
        let full = || Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: code::RESOURCE_EXHAUSTED,
            message: format!(
                "the pipeline is full and had no room within {:?}; retry later",
                self.admission_timeout
            ),
            counter: &self.counters.pipeline_full,
        };
        if self.shutdown.requested().is_some() {
            return Err(closed());
        }
        match self.outputs.try_reserve() {
            Ok(permit) => return Ok(permit),
            Err(TrySendError::Closed) => return Err(closed()),
            Err(TrySendError::Full) if self.admission_timeout.is_zero() => return Err(full()),
            Err(TrySendError::Full) => bump(&self.counters.waited),
        }
        tokio::select! {
            biased;
            _ = self.shutdown.wait() => Err(closed()),
            reserved = tokio::time::timeout(self.admission_timeout, self.outputs.reserve()) => {
                match reserved {
                    Ok(Some(permit)) => Ok(permit),
                    Ok(None) => Err(closed()),
                    Err(_) => Err(full()),
                }
            }
        }
    }

    /// Room for a body of `bytes` in the core's `max_body_bytes_in_flight`: at once when
    /// there is some, else after waiting up to `admission_timeout`.
    async fn reserve_body(
        &self,
        bytes: u64,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, Refusal<'_>> {
        // Fits: validation keeps the budget, hence any body, under 2^30 KiB.
        let units = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let refused = || Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: code::RESOURCE_EXHAUSTED,
            message: "too many request bytes are being read at once; retry later".to_owned(),
            counter: &self.counters.bytes_in_flight,
        };
        if let Ok(permit) = self.body_budget.try_acquire_many(units) {
            return Ok(permit);
        }
        if self.admission_timeout.is_zero() {
            return Err(refused());
        }
        bump(&self.counters.waited);
        tokio::select! {
            biased;
            _ = self.shutdown.wait() => Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: code::UNAVAILABLE,
                message: "the pipeline is stopping".to_owned(),
                counter: &self.counters.pipeline_closed,
            }),
            acquired = tokio::time::timeout(
                self.admission_timeout,
                self.body_budget.acquire_many(units),
            ) => match acquired {
                Ok(Ok(permit)) => Ok(permit),
                Ok(Err(_)) | Err(_) => Err(refused()),
            },
        }
    }

    /// With an authorizer bound: the request's token must be accepted. An authorizer that
    /// cannot decide refuses (fail closed).
    fn authorize(&self, request: &Request<Incoming>) -> Result<(), Refusal<'_>> {
        let Some(Authorization { authorizer, header }) = &self.authorizer else {
            return Ok(());
        };
        let counters = &self.counters;
        let unauthorized = |message: &str, counter| Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: code::UNAUTHENTICATED,
            message: message.to_owned(),
            counter,
        };
        let mut values = request.headers().get_all(header).iter();
        let Some(value) = values.next() else {
            return Err(unauthorized(
                "no credential; send a bearer token",
                &counters.auth_missing,
            ));
        };
        // HTTP allows one credential header (RFC 9110 §11.6.2); with two, which one a proxy
        // or the authorizer would look at is ambiguous: refuse rather than pick.
        if values.next().is_some() {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: code::INVALID_ARGUMENT,
                message: format!("more than one `{header}` header; send one credential"),
                counter: &counters.bad_request,
            });
        }
        // Borrowed from the request's header: authorizing allocates nothing.
        let credential = value
            .to_str()
            .ok()
            .and_then(|value| authorizer.header().credential(value).ok())
            .ok_or_else(|| {
                unauthorized("the credential is not accepted", &counters.auth_invalid)
            })?;
        match authorizer.authorize(credential) {
            Ok(AuthzDecision::Allow { .. }) => Ok(()),
            Ok(AuthzDecision::Deny { reason }) => {
                let counter = match reason {
                    otap_df_core::capability::DenyReason::Missing => &counters.auth_missing,
                    otap_df_core::capability::DenyReason::Invalid => &counters.auth_invalid,
                    otap_df_core::capability::DenyReason::Expired => &counters.auth_expired,
                };
                Err(unauthorized("the credential is not accepted", counter))
            }
            Err(error) => {
                tracing::warn!(error = %error, "authorizer could not decide; request refused");
                Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: code::UNAVAILABLE,
                    message: "authorization is unavailable; retry later".to_owned(),
                    counter: &counters.auth_unavailable,
                })
            }
        }
    }
}

fn response(status: StatusCode, encoding: Encoding, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media_type(encoding)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_timer_closes_a_connection_waiting_a_whole_timeout_since_its_last_answer() {
        let timeout = Duration::from_millis(300);
        let start = tokio::time::Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        // Waiting since the start: looked at early (the timer was armed before the last
        // answer moved it), it moves to a timeout after that answer; on time, it closes.
        assert_eq!(head_deadline(Some(at(0)), at(100), timeout), Some(at(300)));
        assert_eq!(
            head_deadline(Some(at(200)), at(300), timeout),
            Some(at(500))
        );
        assert_eq!(
            head_deadline(Some(at(200)), at(499), timeout),
            Some(at(500))
        );
        assert_eq!(head_deadline(Some(at(200)), at(500), timeout), None);
        assert_eq!(head_deadline(Some(at(0)), at(900), timeout), None);
        // A request being answered, however long: looked at again a timeout later.
        assert_eq!(head_deadline(None, at(300), timeout), Some(at(600)));
        assert_eq!(head_deadline(None, at(5_000), timeout), Some(at(5_300)));
    }

    #[test]
    fn an_exchange_tracks_the_wait_for_a_head_and_the_first_request() {
        let exchange = Exchange::default();
        assert_eq!(exchange.waiting_since.get(), None);
        assert!(!exchange.asked.get());
        let before = tokio::time::Instant::now();
        exchange.answered();
        let since = exchange
            .waiting_since
            .get()
            .expect("waiting after an answer");
        assert!(since >= before);
        exchange.started();
        assert_eq!(exchange.waiting_since.get(), None);
        assert!(exchange.asked.get());
        exchange.answered();
        assert!(
            exchange
                .waiting_since
                .get()
                .is_some_and(|again| again >= since)
        );
    }
}
