//! `exporter:debug`: a summary line per batch on standard output.

use std::io::Write;

use otap_df_core::config::{ComponentConfig, ComponentKind};
use otap_df_core::data::OtlpPayload;
use otap_df_core::extension::Capabilities;
use otap_df_core::node::NodeFactory;
use otap_df_core::node::{LocalExporter, NodeContext, NodeError, NodeInstance};
use serde::Deserialize;

use crate::otlp;

/// How much `exporter:debug` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    /// One line per batch: signal and records.
    #[default]
    Basic,
    /// Adds resources, scopes and bytes.
    Normal,
}

/// `config:` of `exporter:debug`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    /// How much to print.
    #[serde(default)]
    pub verbosity: Verbosity,
}

/// `exporter:debug`.
pub static DEBUG: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "debug", env!("CARGO_PKG_NAME"))
        .description("prints a summary line per batch on standard output")
        .validate_config(|config| config.decode::<DebugConfig>().map(drop))
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config: DebugConfig = config.decode()?;
    Ok(NodeInstance::Exporter(Box::new(Debug {
        node: context.node_id.clone(),
        verbosity: config.verbosity,
    })))
}

struct Debug {
    node: String,
    verbosity: Verbosity,
}

/// The line printed for `payload`.
pub fn line(node: &str, verbosity: Verbosity, payload: &OtlpPayload) -> String {
    match otlp::shape(payload) {
        Err(error) => format!(
            "{node}: {} batch of {} bytes: {error}",
            payload.signal(),
            payload.bytes().len()
        ),
        Ok(shape) => match verbosity {
            Verbosity::Basic => format!("{node}: {} {} records", payload.signal(), shape.records),
            Verbosity::Normal => format!(
                "{node}: {} {} records in {} resources, {} scopes, {} bytes ({})",
                payload.signal(),
                shape.records,
                shape.resources,
                shape.scopes,
                payload.bytes().len(),
                payload.encoding().as_str()
            ),
        },
    }
}

#[otap_df_core::async_trait(?Send)]
impl LocalExporter for Debug {
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        let line = line(&self.node, self.verbosity, &data);
        writeln!(std::io::stdout().lock(), "{line}").map_err(|e| NodeError::Failed {
            node: self.node.clone(),
            message: format!("cannot write to standard output: {e}"),
        })
    }
}
