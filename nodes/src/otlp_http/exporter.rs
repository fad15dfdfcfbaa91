//! `exporter:otlp_http`: the OTLP/HTTP client side.
//!
//! Each payload is `POST`ed to its signal's URL in its own encoding, gzip-compressed unless
//! told otherwise. `429`, `502`, `503`, `504` and connection errors are retried with
//! exponential backoff and jitter (a `Retry-After` from the server wins), until
//! `retry.max_elapsed_time`; other `4xx` are not retried. With a `bearer_token_provider`
//! bound, each request carries the current token; a token that is missing or about to expire
//! is never sent (a fresh one is asked for instead), and a `401` gets one retry with the
//! freshest token. What cannot be delivered is counted, logged, and written to
//! `dead_letter_file` when one is set: never dropped silently.
//!
//! Its `out` counts the records the upstream accepted (a `2xx`), when it accepts them
//! ([`NodeFactory::counts_delivered`]): `in - out - failed` is what its requests still hold.
//!
//! Up to `max_in_flight` requests are outstanding per core, over a pool of keep-alive
//! connections; each has its own retry schedule, so a request that waits to be retried never
//! holds up the others, and a gateway moves at `max_in_flight` upstream round trips at a time
//! rather than one. When all are taken, the exporter stops taking payloads from its queue, and
//! the backpressure reaches the receiver. Requests complete in any order: the order of
//! payloads is not kept across requests.
//!
//! While every request is taken, payloads that arrive are merged into one waiting request
//! of up to `merge_max_bytes` (protobuf payloads of one signal: the concatenation of two
//! export requests is, by protobuf's rules, the request holding both), which the first
//! request to finish sends next. Under load a gateway then makes fewer, larger upstream
//! requests; when requests are free, nothing waits to be merged and no latency is added.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use otap_df_core::capability::{BearerTokenProvider, CapabilityId, local};
use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::node::{
    LOST, LocalExporter, NodeContext, NodeCounters, NodeError, NodeInstance, ShutdownSignal,
};
use otap_df_core::secret::{BearerToken, Secret};
use serde::Deserialize;
use tokio::task::JoinSet;

use super::{media_type, signal_path, status_message};
use crate::payload_file::{PayloadWriter, core_path};

/// `config:` of `exporter:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL; each signal goes to `<endpoint>/v1/<signal>`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for logs, used as is (overrides `endpoint`).
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// Full URL for metrics, used as is.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for traces, used as is.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// Bound of one request, response included.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Headers sent with every request; values are secrets (never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Retries of failed requests.
    #[serde(default)]
    pub retry: RetryConfig,
    /// A file (`exporter:file` format) that receives what could not be delivered.
    #[serde(default)]
    pub dead_letter_file: Option<PathBuf>,
    /// Trust for `https://` endpoints.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Requests outstanding at once, per core (each with its own retries).
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// The largest request that payloads waiting for a free request are merged into, in
    /// bytes before compression; `0`: never merge.
    #[serde(default = "defaults::merge_max_bytes")]
    pub merge_max_bytes: usize,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// `Content-Encoding: gzip`.
    #[default]
    Gzip,
    /// Uncompressed.
    None,
}

/// `retry:` of `exporter:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retry at all.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Wait before the first retry; it doubles with each retry, with ±50 % jitter.
    #[serde(default = "defaults::initial_interval", with = "humantime_serde")]
    pub initial_interval: Duration,
    /// The longest wait between two attempts (a longer `Retry-After` is cut to it).
    #[serde(default = "defaults::max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
    /// No retry starts after this long since the first attempt.
    #[serde(default = "defaults::max_elapsed_time", with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: defaults::enabled(),
            initial_interval: defaults::initial_interval(),
            max_interval: defaults::max_interval(),
            max_elapsed_time: defaults::max_elapsed_time(),
        }
    }
}

/// `tls:` of `exporter:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) to trust instead of the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

mod defaults {
    use std::time::Duration;

    pub fn timeout() -> Duration {
        Duration::from_secs(10)
    }

    pub fn enabled() -> bool {
        true
    }

    pub fn initial_interval() -> Duration {
        Duration::from_secs(1)
    }

    pub fn max_interval() -> Duration {
        Duration::from_secs(30)
    }

    pub fn max_elapsed_time() -> Duration {
        Duration::from_secs(300)
    }

    /// Enough to keep a loopback or LAN upstream busy from one core; the Collector's exporters
    /// default to 10 consumers, upstream otap-dataflow's to 5.
    pub fn max_in_flight() -> usize {
        16
    }

    /// Well under the request limits of common OTLP servers (the Collector's is 20 MiB).
    pub fn merge_max_bytes() -> usize {
        1 << 20
    }
}

/// The port text of an authority (`[user@]host[:port]`, the host possibly `[v6]`), if any.
fn port_of(authority: &str) -> Option<&str> {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    }
}

/// The longest duration option: long enough for any retry budget, short enough that the
/// arithmetic on it never overflows.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most `merge_max_bytes` accepts: one merged request is held in memory beside the ones
/// in flight.
const MERGE_MAX_BYTES_LIMIT: usize = 64 << 20;

/// The most `max_in_flight` accepts: beyond it, memory (one payload each) rather than
/// throughput grows.
pub const MAX_IN_FLIGHT_LIMIT: usize = 4096;

/// The URLs of the three signals.
#[derive(Debug, Clone)]
struct Endpoints {
    logs: Uri,
    metrics: Uri,
    traces: Uri,
}

impl Endpoints {
    fn of(&self, signal: Signal) -> &Uri {
        match signal {
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
            Signal::Traces => &self.traces,
        }
    }
}

impl OtlpHttpExporterConfig {
    /// Decodes and checks the block (no connection is made, no file read).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded.endpoints(config)?;
        for (name, value) in &decoded.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(config.invalid(
                    &format!("headers.{name}"),
                    format!("`{name}` is not a valid HTTP header name"),
                ));
            }
            if HeaderValue::from_str(value.expose()).is_err() {
                return Err(config.invalid(
                    &format!("headers.{name}"),
                    format!("the value of header `{name}` holds characters HTTP does not allow"),
                ));
            }
        }
        if decoded
            .dead_letter_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(config.invalid(
                "dead_letter_file",
                "`dead_letter_file` is empty; name a file, or leave it out to count and log what cannot be delivered",
            ));
        }
        if decoded.merge_max_bytes > MERGE_MAX_BYTES_LIMIT {
            return Err(config.invalid(
                "merge_max_bytes",
                format!("`merge_max_bytes` must be at most {MERGE_MAX_BYTES_LIMIT} (64 MiB)"),
            ));
        }
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&decoded.max_in_flight) {
            return Err(config.invalid(
                "max_in_flight",
                format!("`max_in_flight` must be between 1 and {MAX_IN_FLIGHT_LIMIT}"),
            ));
        }
        for (field, value) in [
            ("timeout", decoded.timeout),
            ("retry.initial_interval", decoded.retry.initial_interval),
            ("retry.max_interval", decoded.retry.max_interval),
            ("retry.max_elapsed_time", decoded.retry.max_elapsed_time),
        ] {
            if !(Duration::from_millis(1)..=MAX_DURATION).contains(&value) {
                return Err(
                    config.invalid(field, format!("`{field}` must be between 1ms and 7 days"))
                );
            }
        }
        if decoded.retry.max_interval < decoded.retry.initial_interval {
            return Err(config.invalid(
                "retry.max_interval",
                "`retry.max_interval` must not be shorter than `retry.initial_interval`",
            ));
        }
        Ok(decoded)
    }

    fn endpoints(&self, config: &ComponentConfig<'_>) -> Result<Endpoints, ConfigError> {
        let parse = |field: &str, url: &str| -> Result<Uri, ConfigError> {
            let invalid = |why: &str| {
                config.invalid(
                    field,
                    format!(
                        "`{field}` {why}; give an http:// or https:// URL such as \
                         `http://collector:4318`"
                    ),
                )
            };
            let uri: Uri = url.parse().map_err(|_| invalid("is not a URL"))?;
            // `http::Uri` keeps a port it cannot represent (65536, `4318x`) as text and a
            // client then connects to the scheme's default port: check it here.
            if let Some(authority) = uri.authority() {
                if authority.host().is_empty() {
                    return Err(invalid("has no host"));
                }
                if let Some(port) = port_of(authority.as_str())
                    && port.parse::<u16>().ok().filter(|p| *p >= 1).is_none()
                {
                    return Err(invalid("has a port outside 1–65535"));
                }
            }
            // Credentials in the URL would travel into logs with the authority (the HTTP
            // client's connection pool logs it): they belong in headers or an extension.
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                return Err(config.invalid(
                    field,
                    format!(
                        "`{field}` holds credentials (`user:password@`); put them in `headers` \
                         (e.g. `Authorization: Basic ${{env:UPSTREAM_AUTH}}`) or bind a \
                         `bearer_token_provider` extension"
                    ),
                ));
            }
            match uri.scheme_str() {
                Some("http" | "https") if uri.authority().is_some() => Ok(uri),
                Some("http" | "https") => Err(invalid("has no host")),
                _ => Err(invalid("does not start with http:// or https://")),
            }
        };
        let base = self
            .endpoint
            .as_deref()
            .map(|url| parse("endpoint", url))
            .transpose()?;
        let signal = |signal: Signal, field: &str, own: &Option<String>| {
            match (own, &base) {
            (Some(url), _) => parse(field, url),
            (None, Some(base)) => {
                let path = base.path().trim_end_matches('/');
                let joined = format!(
                    "{}://{}{path}/{}",
                    base.scheme_str().unwrap_or("http"),
                    base.authority().map(|a| a.as_str()).unwrap_or(""),
                    signal_path(signal)
                );
                parse("endpoint", &joined)
            }
            (None, None) => Err(config.invalid(
                "endpoint",
                format!("`endpoint` is required unless `{field}` and the other per-signal endpoints are all set"),
            )),
        }
        };
        Ok(Endpoints {
            logs: signal(Signal::Logs, "logs_endpoint", &self.logs_endpoint)?,
            metrics: signal(Signal::Metrics, "metrics_endpoint", &self.metrics_endpoint)?,
            traces: signal(Signal::Traces, "traces_endpoint", &self.traces_endpoint)?,
        })
    }
}

/// `exporter:otlp_http`.
pub static OTLP_HTTP_EXPORTER: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "otlp_http", env!("CARGO_PKG_NAME"))
        .description("OTLP/HTTP client with retries, gzip and an optional bearer token")
        .accepts(&[CapabilityRequirement::optional(
            CapabilityId::BearerTokenProvider,
        )])
        .validate_config(|config| OtlpHttpExporterConfig::decode(config).map(drop))
        .counts_delivered()
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let decoded = OtlpHttpExporterConfig::decode(config)?;
    let endpoints = decoded.endpoints(config)?;
    let provider = capabilities.optional_local::<BearerTokenProvider>()?;
    // The provider's header name, checked once here rather than per request.
    let auth_name = match &provider {
        Some(provider) => {
            HeaderName::from_bytes(provider.header().name().as_bytes()).map_err(|e| {
                context.error(format!(
                    "the token provider's header `{}` is not a valid HTTP header name: {e}",
                    provider.header().name()
                ))
            })?
        }
        None => http::header::AUTHORIZATION,
    };
    let tls =
        crate::tls::client_config(decoded.tls.as_ref().and_then(|tls| tls.ca_file.as_deref()))
            .map_err(|message| context.error(message))?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(decoded.timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let headers = decoded
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let mut value = HeaderValue::from_str(value.expose()).ok()?;
            value.set_sensitive(true);
            Some((name, value))
        })
        .collect();
    let dead_letter = decoded
        .dead_letter_file
        .as_ref()
        .map(|path| {
            let path = core_path(path, context.core);
            PayloadWriter::open(&path).map_err(|e| {
                context.error(format!(
                    "cannot open `dead_letter_file` `{}`: {e}",
                    path.display()
                ))
            })
        })
        .transpose()?;
    let counters = &context.counters;
    let max_in_flight = decoded.max_in_flight;
    let delivery = Delivery {
        waiting: RefCell::new(None),
        waiting_taken: tokio::sync::Notify::new(),
        merged: counters.named("merged"),
        node: context.node_id.clone(),
        client,
        endpoints,
        headers,
        config: decoded,
        provider,
        auth_name,
        auth: RefCell::new(None),
        dead_letter,
        counters: counters.clone(),
        requests: counters.named("requests"),
        retried: counters.named("retried"),
        refreshed: counters.named("token_refreshed"),
        dead_lettered: counters.named("dead_lettered"),
        lost: counters.named(LOST),
        shutdown: context.shutdown.clone(),
    };
    Ok(NodeInstance::Exporter(Box::new(OtlpHttpExporter {
        delivery: Rc::new(delivery),
        max_in_flight,
        in_flight: JoinSet::new(),
    })))
}

/// The exporter as the engine drives it: it hands each payload to a task of its own and
/// keeps at most `max_in_flight` of them.
struct OtlpHttpExporter {
    delivery: Rc<Delivery>,
    max_in_flight: usize,
    in_flight: JoinSet<()>,
}

/// Everything a request needs, shared by the exporter's requests in flight (one core: `Rc`
/// and `RefCell`, never borrowed across an `await`).
struct Delivery {
    /// Payloads that came while every request was taken, merged; the first request to finish
    /// sends it next. Never set while a request is free.
    waiting: RefCell<Option<Waiting>>,
    /// Told when a request takes `waiting`, so that the exporter may start the next one.
    waiting_taken: tokio::sync::Notify,
    /// Payloads merged into a request with others.
    merged: Arc<AtomicU64>,
    node: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoints: Endpoints,
    headers: Vec<(HeaderName, HeaderValue)>,
    config: OtlpHttpExporterConfig,
    provider: Option<Rc<dyn local::BearerTokenProvider>>,
    /// The header the provider's token goes in.
    auth_name: HeaderName,
    /// The last token sent and its rendered header value, so that a request costs one
    /// atomic read and no allocation for the header while the token does not change.
    auth: RefCell<Option<RenderedToken>>,
    dead_letter: Option<PayloadWriter>,
    counters: Arc<NodeCounters>,
    requests: Arc<AtomicU64>,
    retried: Arc<AtomicU64>,
    refreshed: Arc<AtomicU64>,
    dead_lettered: Arc<AtomicU64>,
    /// Records neither delivered nor dead-lettered.
    lost: Arc<AtomicU64>,
    /// From the shutdown's `stop_waiting_at` on, nothing is sent or retried, and what is
    /// left is dead-lettered or counted lost before the engine's deadline.
    shutdown: ShutdownSignal,
}

const STOPPED_BEFORE_SENT: &str = "the pipeline stopped before the payload could be sent";
const STOPPED_IN_FLIGHT: &str = "the pipeline's shutdown deadline came while the request was in flight (the upstream may have received it)";
const STOPPED_RETRYING: &str = "gave up: the pipeline is stopping";

/// The payloads waiting for a free request.
enum Waiting {
    /// One payload, as it came (no copy until a second one joins it).
    One(OtlpPayload),
    /// Several protobuf payloads of one signal, concatenated.
    Merged {
        signal: Signal,
        records: u64,
        bytes: BytesMut,
    },
}

impl Waiting {
    fn len(&self) -> usize {
        match self {
            Waiting::One(payload) => payload.bytes().len(),
            Waiting::Merged { bytes, .. } => bytes.len(),
        }
    }

    fn signal(&self) -> Signal {
        match self {
            Waiting::One(payload) => payload.signal(),
            Waiting::Merged { signal, .. } => *signal,
        }
    }

    fn mergeable(&self) -> bool {
        match self {
            Waiting::One(payload) => payload.encoding() == Encoding::Protobuf,
            Waiting::Merged { .. } => true,
        }
    }

    /// Appends `payload` when it can be merged within `max_bytes`; gives it back otherwise.
    fn merge(&mut self, payload: OtlpPayload, max_bytes: usize) -> Result<(), OtlpPayload> {
        if !self.mergeable()
            || payload.encoding() != Encoding::Protobuf
            || payload.signal() != self.signal()
            || self.len() + payload.bytes().len() > max_bytes
        {
            return Err(payload);
        }
        if let Waiting::One(first) = self {
            let mut bytes = BytesMut::with_capacity(max_bytes.min(first.bytes().len() * 8));
            bytes.extend_from_slice(first.bytes());
            *self = Waiting::Merged {
                signal: first.signal(),
                records: first.records(),
                bytes,
            };
        }
        if let Waiting::Merged { records, bytes, .. } = self {
            *records += payload.records();
            bytes.extend_from_slice(payload.bytes());
        }
        Ok(())
    }

    fn into_payload(self) -> OtlpPayload {
        match self {
            Waiting::One(payload) => payload,
            Waiting::Merged {
                signal,
                records,
                bytes,
            } => OtlpPayload::new(signal, Encoding::Protobuf, records, bytes.freeze()),
        }
    }
}

/// A token as the exporter last sent it.
struct RenderedToken {
    /// The provider's `token_generation` when the token was read.
    generation: u64,
    token: BearerToken,
    /// The header value, marked sensitive.
    value: HeaderValue,
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Worth another attempt, after `retry_after` when the server said so.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Unauthorized,
    /// Retrying cannot help.
    Permanent(String),
}

impl Delivery {
    /// The `(name, value)` of the auth header: the current token while it is usable, else
    /// the freshest one (`fresh` forces that). `Err` when no usable token can be had.
    async fn auth_header(&self, fresh: bool) -> Result<Option<(HeaderName, HeaderValue)>, String> {
        let Some(provider) = &self.provider else {
            return Ok(None);
        };
        let name = self.auth_name.clone();
        // Read before the token (see `token_generation`).
        let generation = provider.token_generation();
        if !fresh
            && let Some(cached) = self.auth.borrow().as_ref()
            && cached.generation == generation
            && cached.token.is_usable()
        {
            // The provider's token has not changed since it was rendered: one atomic read.
            return Ok(Some((name, cached.value.clone())));
        }
        let current = if fresh {
            None
        } else {
            provider.current_token().filter(BearerToken::is_usable)
        };
        let token = match current {
            Some(token) => token,
            None => {
                self.refreshed.fetch_add(1, Ordering::Relaxed);
                let token = provider.fresh_token().await.map_err(|e| e.to_string())?;
                if !token.is_usable() {
                    return Err(
                        "the provider's freshest token is expired or about to expire".to_owned(),
                    );
                }
                token
            }
        };
        let mut auth = self.auth.borrow_mut();
        if let Some(cached) = auth.as_mut()
            && cached.token.matches(&token)
        {
            cached.generation = generation;
            return Ok(Some((name, cached.value.clone())));
        }
        let mut value = HeaderValue::from_str(provider.header().render(&token).expose())
            .map_err(|_| "the token holds characters HTTP headers do not allow".to_owned())?;
        value.set_sensitive(true);
        *auth = Some(RenderedToken {
            generation,
            token,
            value: value.clone(),
        });
        Ok(Some((name, value)))
    }

    async fn attempt(&self, data: &OtlpPayload, body: &Bytes, fresh: bool) -> Attempt {
        let auth = match self.auth_header(fresh).await {
            Ok(auth) => auth,
            // The provider may get a token later (its source is down): retryable.
            Err(reason) => {
                return Attempt::Retry {
                    reason: format!("no usable token: {reason}"),
                    retry_after: None,
                };
            }
        };
        let mut request = Request::post(self.endpoints.of(data.signal()).clone())
            .header(CONTENT_TYPE, media_type(data.encoding()));
        if self.config.compression == Compression::Gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some((name, value)) = auth {
            request = request.header(name, value);
        }
        let request = match request.body(Full::new(body.clone())) {
            Ok(request) => request,
            Err(e) => return Attempt::Permanent(format!("cannot build the request: {e}")),
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // The body is read so that the connection can be reused.
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, body))
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Err(_) => Attempt::Retry {
                reason: format!("no answer within {:?}", self.config.timeout),
                retry_after: None,
            },
            Ok(Err(error)) => Attempt::Retry {
                reason: format!("request failed: {}", error_chain(&error)),
                retry_after: None,
            },
            Ok(Ok((status, retry_after, body))) => {
                let detail = || {
                    let message = status_message(data.encoding(), &body)
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    format!("{status}{message}")
                };
                match status {
                    s if s.is_success() => Attempt::Delivered,
                    StatusCode::UNAUTHORIZED => Attempt::Unauthorized,
                    StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT => Attempt::Retry {
                        reason: detail(),
                        retry_after,
                    },
                    _ => Attempt::Permanent(detail()),
                }
            }
        }
    }

    /// Counts, logs and (when configured) dead-letters a payload that was not delivered.
    fn undeliverable(&self, data: &OtlpPayload, reason: &str) {
        NodeCounters::add(&self.counters.records_failed, data.records());
        let dead_lettered = match &self.dead_letter {
            None => false,
            Some(writer) => match writer.write(data) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(
                        node = %self.node,
                        file = %writer.path().display(),
                        error = %e,
                        "cannot write the dead-letter file"
                    );
                    false
                }
            },
        };
        if dead_lettered {
            self.dead_lettered
                .fetch_add(data.records(), Ordering::Relaxed);
        } else {
            self.lost.fetch_add(data.records(), Ordering::Relaxed);
        }
        tracing::warn!(
            node = %self.node,
            signal = %data.signal(),
            records = data.records(),
            reason,
            outcome = if dead_lettered { "dead-lettered" } else { "lost" },
            "OTLP/HTTP export failed; data not delivered"
        );
    }
}

/// An error and its sources, `: `-separated (hyper's own message is terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn gzip(bytes: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes)?;
    encoder.finish().map(Bytes::from)
}

#[otap_df_core::async_trait(?Send)]
impl LocalExporter for OtlpHttpExporter {
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        let mut data = data;
        loop {
            while let Some(done) = self.in_flight.try_join_next() {
                self.delivery.joined(done)?;
            }
            if self.in_flight.len() < self.max_in_flight {
                // A request ends only when nothing waits, so nothing does now.
                let delivery = self.delivery.clone();
                self.in_flight
                    .spawn_local(async move { delivery.deliver_while_waiting(data).await });
                return Ok(());
            }
            // Every request is taken: wait with the others, merged when it can be.
            let max_bytes = self.delivery.config.merge_max_bytes;
            data = match &mut *self.delivery.waiting.borrow_mut() {
                waiting @ None => {
                    *waiting = Some(Waiting::One(data));
                    return Ok(());
                }
                Some(waiting) => match waiting.merge(data, max_bytes) {
                    Ok(()) => {
                        self.delivery.merged.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(data) => data,
                },
            };
            // No room beside the waiting request: the queue waits, and backpressure reaches
            // the receiver, until a request takes the waiting one or ends.
            tokio::select! {
                done = self.in_flight.join_next() => {
                    if let Some(done) = done {
                        self.delivery.joined(done)?;
                    }
                }
                () = self.delivery.waiting_taken.notified() => {}
            }
        }
    }

    async fn finish(&mut self) -> Result<(), NodeError> {
        while let Some(done) = self.in_flight.join_next().await {
            self.delivery.joined(done)?;
        }
        // Requests take what waits before they end; nothing is left but to be sure.
        if let Some(waiting) = self.delivery.waiting.take() {
            self.delivery.deliver(waiting.into_payload()).await;
        }
        Ok(())
    }
}

impl Delivery {
    /// A request task's end: a panic fails the node (its payload's fate is unknown).
    fn joined(&self, done: Result<(), tokio::task::JoinError>) -> Result<(), NodeError> {
        match done {
            Err(error) if error.is_panic() => Err(NodeError::Failed {
                node: self.node.clone(),
                message: "a request task panicked".to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Returns once the exporter must give up (the shutdown's `stop_waiting_at`).
    async fn given_up(&self) {
        let request = self.shutdown.wait().await;
        tokio::time::sleep_until(request.stop_waiting_at.into()).await;
    }

    /// Whether giving up would come before `after` from now.
    fn gives_up_within(&self, after: Duration) -> bool {
        self.shutdown
            .requested()
            .is_some_and(|request| Instant::now() + after >= request.stop_waiting_at)
    }

    /// Delivers `data`, then what waits for a free request, until nothing does.
    async fn deliver_while_waiting(&self, data: OtlpPayload) {
        let mut data = data;
        loop {
            self.deliver(data).await;
            let Some(waiting) = self.waiting.take() else {
                return;
            };
            self.waiting_taken.notify_one();
            data = waiting.into_payload();
        }
    }

    /// Delivers one payload: compresses it, sends it, retries it; counts, logs and
    /// dead-letters it when it cannot be delivered, also when the pipeline stops first.
    async fn deliver(&self, data: OtlpPayload) {
        if self.gives_up_within(Duration::ZERO) {
            self.undeliverable(&data, STOPPED_BEFORE_SENT);
            return;
        }
        let body = match self.config.compression {
            Compression::Gzip => match gzip(data.bytes()) {
                Ok(body) => body,
                Err(e) => {
                    self.undeliverable(&data, &format!("cannot compress: {e}"));
                    return;
                }
            },
            Compression::None => data.bytes().clone(),
        };
        let started = Instant::now();
        let retry = &self.config.retry;
        let mut backoff = retry.initial_interval;
        let mut refreshed = false;
        let mut fresh = false;
        loop {
            let attempt = tokio::select! {
                biased;
                attempt = self.attempt(&data, &body, fresh) => attempt,
                () = self.given_up() => {
                    self.undeliverable(&data, STOPPED_IN_FLIGHT);
                    return;
                }
            };
            let (reason, retry_after) = match attempt {
                Attempt::Delivered => {
                    NodeCounters::add(&self.counters.records_out, data.records());
                    return;
                }
                // One more attempt with the freshest token, at once.
                Attempt::Unauthorized if self.provider.is_some() && !refreshed => {
                    refreshed = true;
                    fresh = true;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Attempt::Unauthorized => {
                    self.undeliverable(&data, "401 Unauthorized");
                    return;
                }
                Attempt::Permanent(reason) => {
                    self.undeliverable(&data, &reason);
                    return;
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            fresh = false;
            let wait = retry_after
                .unwrap_or_else(|| jitter(backoff))
                .min(retry.max_interval);
            if !retry.enabled || started.elapsed() + wait > retry.max_elapsed_time {
                let why = if retry.enabled {
                    format!(
                        "{reason} (gave up: retrying would pass retry.max_elapsed_time of {:?})",
                        retry.max_elapsed_time
                    )
                } else {
                    reason
                };
                self.undeliverable(&data, &why);
                return;
            }
            if self.gives_up_within(wait) {
                self.undeliverable(&data, &format!("{reason} ({STOPPED_RETRYING})"));
                return;
            }
            NodeCounters::add(&self.counters.errors, 1);
            self.retried.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(node = %self.node, reason, wait = ?wait, "OTLP/HTTP export will be retried");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.given_up() => {
                    self.undeliverable(&data, &format!("{reason} ({STOPPED_RETRYING})"));
                    return;
                }
            }
            backoff = (backoff * 2).min(retry.max_interval);
        }
    }
}

/// `interval` ± 50 %, so that many exporters do not retry in step.
fn jitter(interval: Duration) -> Duration {
    interval.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    use otap_df_core::config::{PositionIndex, YamlPath};

    use super::*;

    fn endpoints(yaml: &str) -> Result<Endpoints, String> {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        let path = YamlPath::root().key("config");
        let positions = PositionIndex::default();
        let config = ComponentConfig::new(&value, &path, &positions);
        OtlpHttpExporterConfig::decode(&config)
            .and_then(|decoded| decoded.endpoints(&config))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn signal_urls_are_derived_from_the_base_as_the_specification_says() {
        let derived = endpoints("endpoint: http://collector:4318").expect("valid");
        assert_eq!(derived.logs, "http://collector:4318/v1/logs");
        assert_eq!(derived.traces, "http://collector:4318/v1/traces");
        let with_path = endpoints("endpoint: https://gw/otlp/").expect("valid");
        assert_eq!(with_path.metrics, "https://gw/otlp/v1/metrics");
        let overridden =
            endpoints("{ endpoint: 'http://c:4318', traces_endpoint: 'http://t:1/x' }")
                .expect("valid");
        assert_eq!(overridden.traces, "http://t:1/x");
        assert_eq!(overridden.logs, "http://c:4318/v1/logs");
    }

    #[test]
    fn bad_endpoints_and_headers_are_located_errors() {
        let missing = endpoints("{ logs_endpoint: 'http://l' }").expect_err("no base");
        assert!(missing.contains("`endpoint` is required"), "{missing}");
        for (url, why) in [
            ("http://c:65536", "has a port outside 1–65535"),
            ("http://c:99999999", "has a port outside 1–65535"),
            ("http://c:4318x", "has a port outside 1–65535"),
            ("http://c:0", "has a port outside 1–65535"),
            ("http://[::1]:70000", "has a port outside 1–65535"),
        ] {
            let error = endpoints(&format!("endpoint: '{url}'")).expect_err(url);
            assert!(error.contains(why), "{url}: {error}");
        }
        for url in [
            "http://c:4318",
            "https://c",
            "http://[::1]:4318",
            "http://[::1]",
        ] {
            assert!(endpoints(&format!("endpoint: '{url}'")).is_ok(), "{url}");
        }
        let long =
            endpoints("{ endpoint: 'http://c', retry: { max_interval: 18446744073709551615s } }")
                .expect_err("overflowing interval");
        assert!(
            long.contains("`retry.max_interval` must be between 1ms and 7 days"),
            "{long}"
        );
        let userinfo =
            endpoints("endpoint: 'http://user:pw@collector:4318'").expect_err("userinfo");
        assert!(userinfo.contains("holds credentials"), "{userinfo}");
        assert!(
            !userinfo.contains("pw@"),
            "the password is not echoed: {userinfo}"
        );
        let scheme = endpoints("endpoint: ftp://h").expect_err("scheme");
        assert!(scheme.contains("does not start with http://"), "{scheme}");
        let header =
            endpoints("{ endpoint: 'http://h', headers: { 'bad name': x } }").expect_err("header");
        assert!(header.contains("not a valid HTTP header name"), "{header}");
    }

    #[test]
    fn merging_concatenates_protobuf_payloads_of_one_signal_up_to_the_bound() {
        use crate::otlp::{decode_with_prost, synthetic};
        let a = synthetic(Signal::Logs, 3, "a", 1);
        let b = synthetic(Signal::Logs, 5, "b", 2);
        let size = a.bytes().len() + b.bytes().len();
        let mut waiting = Waiting::One(a.clone());
        waiting.merge(b.clone(), size).expect("fits exactly");
        // One byte more than the bound: given back whole.
        let refused = waiting.merge(a.clone(), size).expect_err("over the bound");
        assert_eq!(refused.bytes(), a.bytes());
        let merged = waiting.into_payload();
        assert_eq!(merged.records(), 8);
        assert_eq!(merged.bytes().len(), size);
        let shape = decode_with_prost(Signal::Logs, merged.bytes()).expect("valid protobuf");
        assert_eq!((shape.resources, shape.scopes, shape.records), (2, 2, 8));

        let unlimited = usize::MAX;
        let traces = synthetic(Signal::Traces, 1, "t", 1);
        assert!(Waiting::One(a.clone()).merge(traces, unlimited).is_err());
        let json = crate::otlp::to_json(&a).expect("json");
        assert!(
            Waiting::One(json.clone())
                .merge(b.clone(), unlimited)
                .is_err()
        );
        assert!(Waiting::One(b).merge(json, unlimited).is_err());
    }

    #[test]
    fn merge_max_bytes_is_bounded() {
        let error = endpoints("{ endpoint: 'http://c', merge_max_bytes: 67108865 }")
            .expect_err("over 64 MiB");
        assert!(
            error.contains("`merge_max_bytes` must be at most 67108864 (64 MiB)"),
            "{error}"
        );
        assert!(endpoints("{ endpoint: 'http://c', merge_max_bytes: 0 }").is_ok());
        let empty =
            endpoints("{ endpoint: 'http://c', dead_letter_file: '' }").expect_err("an empty path");
        assert!(empty.contains("`dead_letter_file` is empty"), "{empty}");
    }

    #[test]
    fn jitter_stays_within_half_either_side() {
        for _ in 0..1000 {
            let waited = jitter(Duration::from_millis(100));
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(150)).contains(&waited),
                "{waited:?}"
            );
        }
    }
}
