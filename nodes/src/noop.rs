//! `exporter:noop`: accepts and discards every payload (for benchmarks).

use otap_df_core::config::{ComponentConfig, ComponentKind};
use otap_df_core::data::OtlpPayload;
use otap_df_core::extension::Capabilities;
use otap_df_core::node::NodeFactory;
use otap_df_core::node::{LocalExporter, NodeContext, NodeError, NodeInstance};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoopConfig {}

/// `exporter:noop`.
pub static NOOP: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "noop", env!("CARGO_PKG_NAME"))
        .description("discards every payload (benchmarks)")
        .validate_config(|config| config.decode::<NoopConfig>().map(drop))
        .create(create);

fn create(
    _: &NodeContext,
    _: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    Ok(NodeInstance::Exporter(Box::new(Noop)))
}

struct Noop;

#[otap_df_core::async_trait(?Send)]
impl LocalExporter for Noop {
    async fn export(&mut self, _: OtlpPayload) -> Result<(), NodeError> {
        Ok(())
    }
}
