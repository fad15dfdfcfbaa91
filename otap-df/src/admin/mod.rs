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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::oneshot;

use crate::core::resolve::ResolvedConfig;
use crate::core::runtime::engine::Telemetry;
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

impl Admin {
    /// Listens on `listen` (bound before this returns, so a taken port is an error here) and
    /// serves `telemetry` on a thread of its own. `resolved` gives the shape the status shows;
    /// `reload`, when given, serves `POST /reload`.
    pub fn start(
        listen: SocketAddr,
        telemetry: Arc<Telemetry>,
        resolved: &ResolvedConfig,
        reload: Option<Reloads>,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let state = Arc::new(State {
            shape: Shape::of(resolved),
            telemetry,
            reload,
        });
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || runtime.block_on(serve(listener, state, stopped)))?;
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

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "admin endpoint: cannot listen");
            return;
        }
    };
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            if request.method() == Method::POST && request.uri().path() == "/reload" {
                                return Ok::<_, Infallible>(state.reload().await);
                            }
                            Ok::<_, Infallible>(state.answer(&request))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
    connections.abort_all();
}

/// What the endpoint serves from.
struct State {
    shape: Shape,
    telemetry: Arc<Telemetry>,
    reload: Option<Reloads>,
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

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
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

mod metrics;
mod status;

use status::Shape;
