//! The admin endpoint (`engine.admin.listen`, `run --admin-listen`): health, status and
//! metrics of a running engine over HTTP.
//!
//! - `GET /livez`: 200 while the process runs.
//! - `GET /readyz`: 200 once the engine runs and every started extension is ready; 503 with
//!   the reasons (one per line) while it starts, stops, or an extension is starting,
//!   degraded or failed.
//! - `GET /status`: JSON — the phase, readiness, the engine's and groups' extensions
//!   (`scopes`) and each pipeline's extensions (type, execution model, state, counters and
//!   gauges per instance, which node of which pipeline binds which capability) and nodes (type,
//!   bindings with the scope of the bound extension, counters, the node's own counters).
//!   Extension instances of the engine and of a group carry the label `engine` and
//!   `group:<group>` where a pipeline's carry `<group>/<pipeline>`.
//! - `POST /reload`: re-reads the configuration files and applies them like SIGHUP (see
//!   [`crate::reload`]); answers JSON with what was done.
//! - `GET /metrics`: Prometheus metrics in the OpenMetrics text format (`prometheus-client`):
//!   every node counter with `pipeline` and `node` labels, the nodes' own counters, extension
//!   states, the extensions' own counters and gauges, the run's phase, readiness and lost
//!   records.
//!
//! It runs on a thread and runtime of its own, so a saturated pipeline core cannot starve it.
//! What a request must pass before it is served (its host, not from a web page, a token when
//! one is bound) is in the `guard` module; a connection's head must come within
//! `engine.admin.header_read_timeout`, and at `engine.admin.max_connections` a new connection
//! displaces the oldest one that is not answering a request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::sync::oneshot;

use crate::core::config::AdminConfig;
use crate::core::resolve::ResolvedConfig;
use crate::core::runtime::{AdminAuthorizer, Telemetry};
use crate::reload::{ReloadReport, Reloads};

/// The content type of `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running admin endpoint; stops when dropped.
#[derive(Debug)]
pub struct Admin {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long a connection may stay open however busy it keeps: then it closes between two
/// requests (a client that never reads its answers holds it no longer).
const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(600);

impl Admin {
    /// Listens on `config.listen` (bound before this returns, so a taken port is an error
    /// here) and serves `telemetry` on a thread of its own. `resolved` gives the shape the
    /// status shows; `reload`, when given, serves `POST /reload`; `authorizer`, when given,
    /// decides on the token of the requests `config.require_token_for` names.
    pub fn start(
        config: &AdminConfig,
        telemetry: Arc<Telemetry>,
        resolved: &ResolvedConfig,
        reload: Option<Reloads>,
        authorizer: Option<AdminAuthorizer>,
    ) -> std::io::Result<Self> {
        let listener = bind(config.listen)?;
        let address = listener.local_addr()?;
        let state = Arc::new(State {
            shape: Shape::of(resolved),
            telemetry,
            reload,
            guard: Guard {
                loopback: address.ip().is_loopback(),
                require_token_for: config.require_token_for,
                authorizer,
            },
            header_read_timeout: config.header_read_timeout,
        });
        let limits = Limits {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
        };
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || runtime.block_on(serve(listener, state, limits, stopped)))?;
        Ok(Self {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the bound port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A listening socket on `address` with a backlog of 1024: a burst of connections waits in the
/// kernel in arrival order (an overflowing backlog would make some complete seconds later,
/// after the clients that came behind them).
fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// What bounds the connections.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Slot {
    /// Its task has run: it had one chance to be read before it can be displaced.
    seen: AtomicBool,
    /// A request is being answered.
    busy: AtomicBool,
    /// Its task ended.
    ended: AtomicBool,
    /// Told to close to make room, and its task's wake-up.
    shed: AtomicBool,
    close: tokio::sync::Notify,
}

impl Slot {
    fn displaceable(&self) -> bool {
        self.seen.load(Ordering::Relaxed)
            && !self.busy.load(Ordering::Relaxed)
            && !self.ended.load(Ordering::Relaxed)
            && !self.shed.load(Ordering::Relaxed)
    }
}

/// The open connections in arrival order; at the cap, the oldest that is not answering a
/// request makes room for the new one.
#[derive(Default)]
struct Slots(std::collections::VecDeque<Arc<Slot>>);

impl Slots {
    fn shed_oldest_idle(&mut self) -> bool {
        self.0.retain(|slot| !slot.ended.load(Ordering::Relaxed));
        match self.0.iter().find(|slot| slot.displaceable()) {
            Some(slot) => {
                slot.shed.store(true, Ordering::Relaxed);
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    limits: Limits,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "admin endpoint: cannot listen");
            return;
        }
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // A request's head within the timeout, and no longer idle than it between requests.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut connections = tokio::task::JoinSet::new();
    let mut slots = Slots::default();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                while connections.try_join_next().is_some() {}
                if connections.len() >= limits.max_connections && !slots.shed_oldest_idle() {
                    // Connections that came in this burst get their first turn before any
                    // is displaced.
                    tokio::task::yield_now().await;
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= limits.max_connections && !slots.shed_oldest_idle() {
                        // Every connection is answering a request: closed at once.
                        drop(stream);
                        continue;
                    }
                }
                let slot = Arc::new(Slot::default());
                slots.0.push_back(slot.clone());
                connections.spawn(connection(stream, state.clone(), http.clone(), slot, limits));
                if connections.len() >= limits.max_connections {
                    // Under a flood the connections' tasks run between two accepts.
                    tokio::task::yield_now().await;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

/// Serves one connection: its requests, until it closes, stays idle or slow past the header
/// timeout, is displaced to make room while not answering, or has lived
/// [`MAX_CONNECTION_LIFE`].
async fn connection(
    stream: tokio::net::TcpStream,
    state: Arc<State>,
    http: hyper::server::conn::http1::Builder,
    slot: Arc<Slot>,
    limits: Limits,
) {
    slot.seen.store(true, Ordering::Relaxed);
    let service = hyper::service::service_fn({
        let slot = slot.clone();
        move |request: Request<Incoming>| {
            let state = state.clone();
            let slot = slot.clone();
            async move {
                // Busy (never displaced) only while answering: a body still coming leaves it
                // displaceable, so slow bodies cannot hold every place.
                let answer = match state.read(request).await {
                    Ok(request) => {
                        slot.busy.store(true, Ordering::Relaxed);
                        let answer = state.serve(request).await;
                        slot.busy.store(false, Ordering::Relaxed);
                        answer
                    }
                    Err(answer) => answer,
                };
                Ok::<_, Infallible>(answer)
            }
        }
    });
    let mut connection = std::pin::pin!(http.serve_connection(TokioIo::new(stream), service));
    let graceful = tokio::select! {
        _ = connection.as_mut() => false,
        // Displaced to make room while not answering (half a head, or nothing): closed now,
        // so that its place is free at once. A request that started meanwhile is answered.
        () = slot.close.notified() => slot.busy.load(Ordering::Relaxed),
        () = tokio::time::sleep(MAX_CONNECTION_LIFE) => true,
    };
    if graceful {
        // A request being answered is answered first; between two requests hyper closes at
        // once.
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(limits.header_read_timeout, connection).await;
    }
    slot.ended.store(true, Ordering::Relaxed);
}

/// The largest request body the endpoint reads (and throws away: it takes none).
const MAX_BODY: usize = 64 * 1024;

/// What the endpoint serves from.
struct State {
    shape: Shape,
    telemetry: Arc<Telemetry>,
    reload: Option<Reloads>,
    guard: Guard,
    /// How long a request's body may take.
    header_read_timeout: Duration,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("shape", &self.shape)
            .field("reload", &self.reload.is_some())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Reads a request's body (none is used) before anything is answered: a connection closed
    /// with a body unread is reset, and a reset can take the answer with it. The request
    /// without it, or the answer when the body is too large or too slow.
    async fn read(&self, request: Request<Incoming>) -> Result<Request<()>, Response<Full<Bytes>>> {
        let (parts, body) = request.into_parts();
        let limited = http_body_util::Limited::new(body, MAX_BODY);
        let read = tokio::time::timeout(
            self.header_read_timeout,
            http_body_util::BodyExt::collect(limited),
        )
        .await;
        if !matches!(read, Ok(Ok(_))) {
            let mut answer = text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "refused: the endpoint takes no body over {MAX_BODY} bytes, nor one slower \
                     than {:?}\n",
                    self.header_read_timeout
                ),
            );
            answer
                .headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            return Err(answer);
        }
        Ok(Request::from_parts(parts, ()))
    }

    /// Answers a request read whole, once it passed the [`guard`] checks.
    async fn serve(&self, request: Request<()>) -> Response<Full<Bytes>> {
        let checked = match self.guard.check(&request) {
            Ok(()) => self.guard.check_waiting(&request).await,
            refused => refused,
        };
        if let Err(refusal) = checked {
            let mut answer = text(refusal.status, refusal.text);
            if let Some(challenge) = refusal.challenge {
                answer
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
            }
            return answer;
        }
        if request.method() == Method::POST && request.uri().path() == "/reload" {
            return self.reload().await;
        }
        self.answer(&request)
    }

    /// `POST /reload`: re-reads and applies the configuration (on the reload thread),
    /// answers what happened as JSON — 200 applied (`updated` extensions; `added`,
    /// `replaced`, `removed` pipelines and outer extensions) or unchanged, 409 needs a restart (`reasons`), 422
    /// invalid (`errors`), 500 something failed (`failed`; what else was applied is listed),
    /// 503 the engine is not running.
    async fn reload(&self) -> Response<Full<Bytes>> {
        let Some(reload) = self.reload.clone() else {
            return text(
                StatusCode::NOT_FOUND,
                "no reload here: the engine was not started by `otap-df run`\n".into(),
            );
        };
        let report = match reload.ask_and_wait().await {
            Ok(report) => report,
            Err(_) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the reload did not finish: its thread ended\n".into(),
                );
            }
        };
        let (status, body) = match &report {
            ReloadReport::Invalid(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "result": "invalid", "errors": errors }),
            ),
            ReloadReport::NotRunning => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "result": "not_running" }),
            ),
            ReloadReport::Done(outcome) if !outcome.needs_restart.is_empty() => (
                StatusCode::CONFLICT,
                json!({ "result": "needs_restart", "reasons": outcome.needs_restart }),
            ),
            ReloadReport::Done(outcome) if outcome.unchanged() => {
                (StatusCode::OK, json!({ "result": "unchanged" }))
            }
            ReloadReport::Done(outcome) => {
                let failed = !outcome.failed.is_empty();
                let mut body = json!({ "result": if failed { "failed" } else { "applied" } });
                for (key, list) in [
                    ("updated", &outcome.updated),
                    ("added", &outcome.added),
                    ("replaced", &outcome.replaced),
                    ("removed", &outcome.removed),
                    ("failed", &outcome.failed),
                ] {
                    if !list.is_empty() {
                        body[key] = json!(list);
                    }
                }
                let status = if failed {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                (status, body)
            }
        };
        let body = serde_json::to_string_pretty(&body).unwrap_or_default() + "\n";
        response(status, "application/json", body)
    }

    fn answer(&self, request: &Request<()>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET is served here\n".into(),
            );
        }
        match request.uri().path() {
            "/livez" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.telemetry.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(reasons) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready:\n{}\n", reasons.join("\n")),
                ),
            },
            "/status" => {
                let body = serde_json::to_string_pretty(&self.status())
                    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
                response(StatusCode::OK, "application/json", body + "\n")
            }
            "/metrics" => match self.metrics() {
                Ok(body) => response(StatusCode::OK, OPENMETRICS, body),
                Err(error) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the metrics: {error}\n"),
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; served: /livez /readyz /status /metrics\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body)
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

mod guard;
mod metrics;
mod status;

use guard::Guard;
use status::Shape;
