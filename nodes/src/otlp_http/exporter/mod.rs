//! `exporter:otlp_http`: the OTLP/HTTP client side.
//!
//! Each payload is `POST`ed to its signal's URL in its own encoding, gzip- (or zstd-)
//! compressed unless told otherwise. `429`, `502`, `503`, `504` and connection errors are
//! retried with exponential backoff and jitter (a `Retry-After` from the server wins), until
//! `retry.max_elapsed_time`; other `4xx` are not retried. With a `bearer_token_provider`
//! bound, each request carries the current token; a token that is missing or about to expire
//! is never sent (a fresh one is asked for instead), and a `401` gets one retry with the
//! freshest token. What cannot be delivered is counted, logged, and written to
//! `dead_letter_file` when one is set: never dropped silently.
//!
//! Its `out` counts the records the upstream accepted (a `2xx`), when it accepts them
//! ([`NodeFactory::counts_delivered`]): `in - out - failed` is what its requests still hold.
//! A `2xx` that reports a partial success has the records it rejected counted
//! (`records_rejected`) and logged, not retried, as the OTLP specification says.
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
//!
//! By job: `config` decodes and checks the block; `transport` makes one HTTP request and reads
//! what its answer means; the rest — requests in flight, merging, retries, the token,
//! dead-lettering — is the `export` module's, shared with other transports.

mod config;
mod transport;

use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use otap_df_core::capability::CapabilityId;
use otap_df_core::config::{ComponentConfig, ComponentKind};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{
    CapabilityRequirement, NodeContext, NodeError, NodeFactory, NodeInstance,
};

pub use crate::export::RetryConfig;
use crate::export::identity::IdentityHeaders;
use crate::export::options::header_values;
use crate::export::{self, DeliveryOptions, token};
pub use config::{ClientTls, Compression, MAX_IN_FLIGHT_LIMIT, OtlpHttpExporterConfig};
use transport::HttpTransport;

/// `exporter:otlp_http`.
pub static OTLP_HTTP_EXPORTER: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "otlp_http", env!("CARGO_PKG_NAME"))
        .description("OTLP/HTTP client with retries, gzip or zstd and an optional bearer token")
        .accepts(&[
            CapabilityRequirement::optional(CapabilityId::BearerTokenProvider),
            CapabilityRequirement::optional(CapabilityId::DurableQueue),
        ])
        .validate_config(|config| OtlpHttpExporterConfig::decode(config).map(drop))
        .counts_delivered()
        .acknowledges_with(CapabilityId::DurableQueue)
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let decoded = OtlpHttpExporterConfig::decode(config)?;
    let ca_file = decoded.tls.as_ref().and_then(|tls| tls.ca_file.as_deref());
    let connector = export::connector(context, ca_file, decoded.timeout, false)?;
    let transport = HttpTransport {
        client: Client::builder(TokioExecutor::new()).build(connector),
        endpoints: decoded.endpoints(config)?,
        headers: header_values(&decoded.headers),
        identity_headers: IdentityHeaders::new(&decoded.headers_from_identity),
        compression: decoded.compression,
        timeout: decoded.timeout,
        token: token::bound(context, capabilities)?,
        requests: context.counters.named("requests"),
        rejected: context.counters.named("records_rejected"),
    };
    let options = DeliveryOptions {
        retry: decoded.retry,
        merge_max_bytes: decoded.merge_max_bytes,
        max_in_flight: decoded.max_in_flight,
        dead_letter_file: decoded.dead_letter_file.as_deref(),
    };
    export::instance(context, capabilities, transport, options)
}
