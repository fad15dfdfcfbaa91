//! `exporter:file`: appends every payload to a payload file ([`crate::payload_file`]), which
//! [`read_payloads`](crate::payload_file::read_payloads) reads back. Each payload is written
//! through before it counts as exported; the versions of the pipeline that a reload runs side
//! by side share one writer of the file. Writing blocks the core's thread: this exporter is
//! for tests, demos and captures, not for production rates.

use std::path::PathBuf;

use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
use otap_df_core::data::OtlpPayload;
use otap_df_core::extension::Capabilities;
use otap_df_core::node::NodeFactory;
use otap_df_core::node::{LocalExporter, NodeContext, NodeError, NodeInstance};
use serde::Deserialize;

use crate::payload_file::{PayloadWriter, core_path};

/// `config:` of `exporter:file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to (created when missing). With several cores, each core appends
    /// to its own file: `<path>.<core>` for cores after the first.
    pub path: PathBuf,
}

impl FileConfig {
    /// Decodes and checks the block (no file is opened).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if decoded.path.as_os_str().is_empty() {
            return Err(config.invalid("path", "`path` is empty; name the file to write"));
        }
        Ok(decoded)
    }
}

/// `exporter:file`.
pub static FILE: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "file", env!("CARGO_PKG_NAME"))
        .description("appends every payload to a file in a re-readable format")
        .validate_config(|config| FileConfig::decode(config).map(drop))
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = FileConfig::decode(config)?;
    let path = core_path(&config.path, context.core);
    let writer = PayloadWriter::open(&path)
        .map_err(|e| context.error(format!("cannot open `{}`: {e}", path.display())))?;
    Ok(NodeInstance::Exporter(Box::new(FileExporter {
        node: context.node_id.clone(),
        writer,
    })))
}

struct FileExporter {
    node: String,
    writer: PayloadWriter,
}

impl FileExporter {
    fn failed(&self, e: std::io::Error) -> NodeError {
        NodeError::Failed {
            node: self.node.clone(),
            message: format!("cannot write `{}`: {e}", self.writer.path().display()),
        }
    }
}

#[otap_df_core::async_trait(?Send)]
impl LocalExporter for FileExporter {
    /// Written through to the file before it counts as exported: a full disk fails the
    /// payload it could not hold, never a later one, and nothing is counted `out` that is
    /// not in the file.
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        self.writer.write(&data).map_err(|e| self.failed(e))
    }
}
