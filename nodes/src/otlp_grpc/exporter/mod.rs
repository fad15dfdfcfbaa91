//! `exporter:otlp_grpc`: the OTLP/gRPC client side.
//!
//! Each payload is one unary call of its signal's export method
//! (`opentelemetry.proto.collector.logs.v1.LogsService/Export`, ...) on `endpoint`, over
//! HTTP/2: `http://` without TLS (h2c, prior knowledge), `https://` with TLS (ALPN `h2`). The
//! payload's protobuf bytes are framed as they are (a JSON payload, from an OTLP/HTTP JSON
//! sender, is transcoded first), gzip- (or zstd-) compressed unless told otherwise. Calls share
//! one connection per upstream, each its own stream.
//!
//! A call's status decides: `OK` is delivered (a partial success's rejected records are
//! counted as `records_rejected` and logged, not retried); `UNAVAILABLE`, `CANCELLED`,
//! `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`, and `RESOURCE_EXHAUSTED` with
//! a `RetryInfo`, are retried with backoff and jitter (the server's `RetryInfo` delay wins, up
//! to `retry.max_interval`), until `retry.max_elapsed_time`; `UNAUTHENTICATED` gets one retry with the freshest token;
//! anything else is not retried. With a `bearer_token_provider` bound, each call carries the
//! current token as metadata (`authorization: Bearer …`). What cannot be delivered is
//! counted, logged and written to `dead_letter_file` when one is set, exactly as
//! `exporter:otlp_http` does: the requests in flight, merging, retries, the token and
//! dead-lettering are the `export` module's, shared by both.
//!
//! By job: `config` decodes and checks the block; `transport` makes one call and reads its
//! status.

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

use crate::export::identity::IdentityHeaders;
use crate::export::options::header_values;
use crate::export::{self, DeliveryOptions, token};
pub use config::OtlpGrpcExporterConfig;
use transport::{GrpcTransport, methods};

/// `exporter:otlp_grpc`.
pub static OTLP_GRPC_EXPORTER: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "otlp_grpc", env!("CARGO_PKG_NAME"))
        .description("OTLP/gRPC client with retries, gzip or zstd and an optional bearer token")
        .accepts(&[
            CapabilityRequirement::optional(CapabilityId::BearerTokenProvider),
            CapabilityRequirement::optional(CapabilityId::DurableQueue),
        ])
        .validate_config(|config| OtlpGrpcExporterConfig::decode(config).map(drop))
        .counts_delivered()
        .acknowledges_with(CapabilityId::DurableQueue)
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let decoded = OtlpGrpcExporterConfig::decode(config)?;
    let methods = methods(&decoded.endpoint(config)?).map_err(|message| context.error(message))?;
    let ca_file = decoded.tls.as_ref().and_then(|tls| tls.ca_file.as_deref());
    let connector = export::connector(context, ca_file, decoded.timeout, true)?;
    let transport = GrpcTransport {
        // h2c with prior knowledge for `http://`; windows that grow with the link.
        client: Client::builder(TokioExecutor::new())
            .http2_only(true)
            .http2_adaptive_window(true)
            .build(connector),
        methods,
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
