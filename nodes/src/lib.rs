#![doc = include_str!("../README.md")]

pub mod allocator;
pub mod debug;
pub mod dedup;
mod export;
pub mod file;
pub mod generator;
pub mod identity_filter;
pub mod noop;
pub mod otlp;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod payload_file;
mod receive;
pub mod tls;

pub use debug::{DEBUG, DebugConfig, Verbosity};
pub use dedup::{DEDUP, DedupConfig};
pub use export::identity::{IdentityHeaders, SenderHeaders};
pub use file::{FILE, FileConfig};
pub use generator::{GENERATOR, GeneratorConfig};
pub use identity_filter::{IDENTITY_FILTER, IdentityFilterConfig};
pub use noop::NOOP;
pub use otap_df_core::data::Signal;
pub use otlp::receiver::{OTLP_RECEIVER, OtlpReceiverConfig};
pub use otlp_grpc::exporter::{OTLP_GRPC_EXPORTER, OtlpGrpcExporterConfig};
pub use otlp_grpc::receiver::{OTLP_GRPC_RECEIVER, OtlpGrpcReceiverConfig};
pub use otlp_http::exporter::{OTLP_HTTP_EXPORTER, OtlpHttpExporterConfig};
pub use otlp_http::receiver::{OTLP_HTTP_RECEIVER, OtlpHttpReceiverConfig};
pub use payload_file::read_payloads;
pub use receive::authorization::{Permissions, Rule};

use otap_df_core::registry::Registry;

/// Registers every built-in node type.
pub fn register(registry: &mut Registry) {
    registry.register_node(&GENERATOR);
    registry.register_node(&DEDUP);
    registry.register_node(&IDENTITY_FILTER);
    registry.register_node(&DEBUG);
    registry.register_node(&FILE);
    registry.register_node(&NOOP);
    registry.register_node(&OTLP_RECEIVER);
    registry.register_node(&OTLP_HTTP_RECEIVER);
    registry.register_node(&OTLP_GRPC_RECEIVER);
    registry.register_node(&OTLP_HTTP_EXPORTER);
    registry.register_node(&OTLP_GRPC_EXPORTER);
}
