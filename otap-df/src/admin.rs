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
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::core::extension::ExecutionModel;
use crate::core::resolve::{ExtensionPlan, ResolvedConfig};
use crate::core::runtime::engine::{ExtensionMetricsOf, ExtensionState, RunPhase, Telemetry};
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

    fn status(&self) -> Value {
        // The configuration that runs now (a reload may have changed it).
        let current = self.telemetry.config().map(|config| Shape::of(&config));
        let shape = current.as_ref().unwrap_or(&self.shape);
        let readiness = self.telemetry.readiness();
        let states = self.telemetry.extension_states();
        let extension_metrics = self.telemetry.extension_metrics();
        let totals = self.telemetry.node_totals();
        // One extension's entry, with its instances as the scope `label` runs them.
        let extension_json = |label: &str, extension: &ExtensionShape| {
            let instances: Vec<Value> = states
                .iter()
                .filter(|(p, e, _, _)| p == label && *e == extension.id)
                .map(|(_, _, core, state)| {
                    let metrics = extension_metrics.iter().find(|m| {
                        m.pipeline == label && m.extension == extension.id && m.core == *core
                    });
                    instance(*core, state, metrics)
                })
                .collect();
            json!({
                "id": extension.id,
                "type": extension.type_name,
                "execution": extension.execution,
                "instances": instances,
                "bound_by": extension.bound_by.iter().map(|(pipeline, node, capability)| {
                    json!({ "pipeline": pipeline, "node": node, "capability": capability })
                }).collect::<Vec<_>>(),
            })
        };
        let scopes: Vec<Value> = shape
            .scopes
            .iter()
            .map(|(label, extensions)| {
                let extensions: Vec<Value> = extensions
                    .iter()
                    .map(|extension| extension_json(label, extension))
                    .collect();
                json!({ "name": label, "extensions": extensions })
            })
            .collect();
        let pipelines: Vec<Value> = shape
            .pipelines
            .iter()
            .map(|pipeline| {
                let extensions: Vec<Value> = pipeline
                    .extensions
                    .iter()
                    .map(|extension| extension_json(&pipeline.name, extension))
                    .collect();
                let nodes: Vec<Value> = pipeline
                    .nodes
                    .iter()
                    .map(|node| {
                        let total = totals
                            .iter()
                            .find(|t| t.pipeline == pipeline.name && t.node == node.id);
                        let counters = total.map_or(Value::Null, |t| {
                            let named: serde_json::Map<String, Value> = t
                                .named
                                .iter()
                                .map(|(name, value)| ((*name).to_owned(), json!(value)))
                                .collect();
                            json!({
                                "records_in": t.counts.records_in,
                                "records_out": t.counts.records_out,
                                "records_dropped": t.counts.records_dropped,
                                "records_failed": t.counts.records_failed,
                                "errors": t.counts.errors,
                                "named": named,
                            })
                        });
                        json!({
                            "id": node.id,
                            "type": node.type_name,
                            "bindings": node.bindings.iter().map(|(capability, extension, scope)| {
                                json!({ "capability": capability, "extension": extension, "scope": scope })
                            }).collect::<Vec<_>>(),
                            "counters": counters,
                        })
                    })
                    .collect();
                json!({ "name": pipeline.name, "extensions": extensions, "nodes": nodes })
            })
            .collect();
        json!({
            "phase": self.telemetry.phase().as_str(),
            "ready": readiness.is_ok(),
            "not_ready_because": readiness.err().unwrap_or_default(),
            "records_lost": self.telemetry.records_lost(),
            "scopes": scopes,
            "pipelines": pipelines,
        })
    }

    fn metrics(&self) -> Result<String, std::fmt::Error> {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Metrics(self.telemetry.clone())));
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &registry)?;
        Ok(body)
    }
}

fn instance(
    core: Option<usize>,
    state: &ExtensionState,
    metrics: Option<&ExtensionMetricsOf>,
) -> Value {
    let (name, reason) = (state.name(), state.reason());
    let counters: serde_json::Map<String, Value> = metrics
        .map(|m| &m.metrics.counters[..])
        .unwrap_or_default()
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!(value)))
        .collect();
    let gauges: serde_json::Map<String, Value> = metrics
        .map(|m| &m.metrics.gauges[..])
        .unwrap_or_default()
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!(value)))
        .collect();
    json!({ "core": core, "state": name, "reason": reason, "counters": counters, "gauges": gauges })
}

/// One of a node's engine-kept counts.
type CountOf = fn(&crate::core::node::CounterSnapshot) -> u64;

/// The run's metrics, read from its telemetry at each scrape.
#[derive(Debug)]
struct Metrics(Arc<Telemetry>);

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let totals = self.0.node_totals();
        let counters: [(&str, &str, CountOf); 5] = [
            (
                "otap_df_node_records_in",
                "Records that entered the node (summed over cores).",
                |c| c.records_in,
            ),
            (
                "otap_df_node_records_out",
                "Records the node sent on or delivered.",
                |c| c.records_out,
            ),
            (
                "otap_df_node_records_dropped",
                "Records the node dropped on purpose (deduplicated, filtered).",
                |c| c.records_dropped,
            ),
            (
                "otap_df_node_records_failed",
                "Records the node could not deliver or process.",
                |c| c.records_failed,
            ),
            (
                "otap_df_node_errors",
                "Errors the node handled without losing data.",
                |c| c.errors,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for total in &totals {
                let labels = [
                    ("pipeline", total.pipeline.as_str()),
                    ("node", total.node.as_str()),
                ];
                ConstCounter::new(value(&total.counts)).encode(family.encode_family(&labels)?)?;
            }
        }
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "otap_df_node_counter",
            "The nodes' own counters (requests, refusals by reason, retries, ...), by name.",
            None,
            counter.metric_type(),
        )?;
        for total in &totals {
            for (name, value) in &total.named {
                let labels = [
                    ("pipeline", total.pipeline.as_str()),
                    ("node", total.node.as_str()),
                    ("name", name),
                ];
                ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
            }
        }

        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "otap_df_extension_state",
            "1 for the state each extension instance is in, 0 for the others.",
            None,
            gauge.metric_type(),
        )?;
        for (pipeline, extension, core, state) in self.0.extension_states() {
            let core = core.map_or_else(|| "shared".to_owned(), |core| core.to_string());
            let current = state.name();
            for name in ExtensionState::NAMES {
                let labels = [
                    ("pipeline", pipeline.as_str()),
                    ("extension", extension.as_str()),
                    ("core", core.as_str()),
                    ("state", name),
                ];
                ConstGauge::new(i64::from(name == current))
                    .encode(family.encode_family(&labels)?)?;
            }
        }

        let extension_metrics = self.0.extension_metrics();
        let labels_of = |m: &ExtensionMetricsOf| {
            (
                m.pipeline.clone(),
                m.extension.clone(),
                m.core
                    .map_or_else(|| "shared".to_owned(), |core| core.to_string()),
            )
        };
        // A family without samples is left out: some OpenMetrics parsers refuse an empty one.
        let any = |of: fn(&ExtensionMetricsOf) -> bool| extension_metrics.iter().any(of);
        if any(|m| !m.metrics.counters.is_empty()) {
            let mut family = encoder.encode_descriptor(
            "otap_df_extension_counter",
            "The extensions' own counters (token reloads and renewals, calls, errors by class, ...), by name.",
            None,
            counter.metric_type(),
        )?;
            for metrics in &extension_metrics {
                let (pipeline, extension, core) = labels_of(metrics);
                for (name, value) in &metrics.metrics.counters {
                    let labels = [
                        ("pipeline", pipeline.as_str()),
                        ("extension", extension.as_str()),
                        ("core", core.as_str()),
                        ("name", name),
                    ];
                    ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        if any(|m| !m.metrics.gauges.is_empty()) {
            let mut family = encoder.encode_descriptor(
                "otap_df_extension_gauge",
                "The extensions' own gauges (entries held, token expiry, ...), by name.",
                None,
                gauge.metric_type(),
            )?;
            for metrics in &extension_metrics {
                let (pipeline, extension, core) = labels_of(metrics);
                for (name, value) in &metrics.metrics.gauges {
                    let labels = [
                        ("pipeline", pipeline.as_str()),
                        ("extension", extension.as_str()),
                        ("core", core.as_str()),
                        ("name", name),
                    ];
                    ConstGauge::new(*value).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let phase = self.0.phase();
        let mut family = encoder.encode_descriptor(
            "otap_df_run_phase",
            "1 for the phase the run is in (starting, running, stopping, stopped), 0 for the others.",
            None,
            gauge.metric_type(),
        )?;
        for candidate in [
            RunPhase::Starting,
            RunPhase::Running,
            RunPhase::Stopping,
            RunPhase::Stopped,
        ] {
            ConstGauge::new(i64::from(candidate == phase))
                .encode(family.encode_family(&[("phase", candidate.as_str())])?)?;
        }
        let ready = ConstGauge::new(i64::from(self.0.readiness().is_ok()));
        ready.encode(encoder.encode_descriptor(
            "otap_df_ready",
            "1 while /readyz answers 200.",
            None,
            ready.metric_type(),
        )?)?;
        let lost = ConstCounter::new(self.0.records_lost());
        lost.encode(encoder.encode_descriptor(
            "otap_df_records_lost",
            "Records accepted, then neither delivered nor dead-lettered.",
            None,
            lost.metric_type(),
        )?)?;
        Ok(())
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

/// What the status shows of the configuration: the outer scopes' extensions, pipelines,
/// their extensions and nodes.
#[derive(Debug)]
struct Shape {
    /// The engine's and groups' extensions, by scope label (`engine`, `group:<g>`); only
    /// scopes with bound extensions.
    scopes: Vec<(String, Vec<ExtensionShape>)>,
    pipelines: Vec<PipelineShape>,
}

#[derive(Debug)]
struct PipelineShape {
    name: String,
    extensions: Vec<ExtensionShape>,
    nodes: Vec<NodeShape>,
}

#[derive(Debug)]
struct ExtensionShape {
    id: String,
    type_name: String,
    execution: &'static str,
    /// `(pipeline, node, capability)`.
    bound_by: Vec<(String, String, String)>,
}

#[derive(Debug)]
struct NodeShape {
    id: String,
    type_name: String,
    /// `(capability, extension, the extension's scope label)`.
    bindings: Vec<(String, String, String)>,
}

impl ExtensionShape {
    fn of(extension: &ExtensionPlan) -> Self {
        Self {
            id: extension.id.clone(),
            type_name: format!("extension:{}", extension.factory.name()),
            execution: match extension.execution {
                ExecutionModel::Local => "local",
                ExecutionModel::Shared => "shared",
            },
            bound_by: extension
                .consumers
                .iter()
                .map(|c| (c.pipeline.clone(), c.node.clone(), c.capability.to_string()))
                .collect(),
        }
    }
}

impl Shape {
    fn of(resolved: &ResolvedConfig) -> Self {
        let scopes = resolved
            .scopes
            .iter()
            .filter(|scope| !scope.extensions.is_empty())
            .map(|scope| {
                let extensions = scope.extensions.iter().map(ExtensionShape::of).collect();
                (scope.scope.label(), extensions)
            })
            .collect();
        let pipelines = resolved
            .pipelines
            .iter()
            .enumerate()
            .map(|(index, plan)| PipelineShape {
                name: format!("{}/{}", plan.group, plan.name),
                extensions: plan.extensions.iter().map(ExtensionShape::of).collect(),
                nodes: plan
                    .nodes
                    .iter()
                    .map(|node| NodeShape {
                        id: node.id.clone(),
                        type_name: format!("{}:{}", node.factory.kind(), node.factory.name()),
                        bindings: node
                            .bindings
                            .iter()
                            .map(|b| {
                                let scope = resolved
                                    .binding_scope(index, &b.extension)
                                    .map(|key| resolved.scope(key).label())
                                    .unwrap_or_default();
                                (b.capability.to_string(), b.extension.clone(), scope)
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Self { scopes, pipelines }
    }
}
