//! What went wrong in a run.

use std::time::Duration;

use super::instantiate::InstantiateError;
use crate::node::NodeError;
use crate::resolve::Scope;

/// Something that went wrong in a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// An extension could not be created.
    #[error("{0}")]
    Instantiate(String),
    /// A node type has no runtime implementation.
    #[error(
        "node `{node}` of pipeline `{pipeline}`: type `{node_type}` can be validated but not run"
    )]
    NotRunnable {
        /// `group/pipeline`.
        pipeline: String,
        /// Node id.
        node: String,
        /// Node type.
        node_type: String,
    },
    /// A node could not be constructed.
    #[error("node `{node}` of pipeline `{pipeline}` (core {core}) could not be built: {error}")]
    NodeConstruction {
        /// `group/pipeline`.
        pipeline: String,
        /// Node id.
        node: String,
        /// Core.
        core: usize,
        /// Why.
        error: NodeError,
    },
    /// An extension did not signal readiness in time.
    #[error(
        "extension `{extension}` of {} was not ready within its startup_timeout \
         of {timeout:?}{}; nodes were not started",
        Scope::describe_label(.pipeline),
        last_report(.reason)
    )]
    ReadinessTimeout {
        /// Its scope's label: `group/pipeline`, `group:<group>` or `engine`.
        pipeline: String,
        /// Extension id.
        extension: String,
        /// The timeout.
        timeout: Duration,
        /// What the extension last reported while not ready (`set_degraded`), if anything.
        reason: Option<String>,
    },
    /// An active or background extension's task ended before shutdown.
    #[error(
        "extension `{extension}` of {} stopped before shutdown: {reason}",
        Scope::describe_label(.pipeline)
    )]
    ExtensionExited {
        /// Its scope's label: `group/pipeline`, `group:<group>` or `engine`.
        pipeline: String,
        /// Extension id.
        extension: String,
        /// How it ended.
        reason: String,
    },
    /// A node returned an error or panicked.
    #[error("node `{node}` of pipeline `{pipeline}` (core {core}) failed: {reason}")]
    Node {
        /// `group/pipeline`.
        pipeline: String,
        /// Node id.
        node: String,
        /// Core.
        core: usize,
        /// The error or panic message.
        reason: String,
    },
    /// A task did not finish before the shutdown deadline and was aborted.
    #[error(
        "`{task}` of pipeline `{pipeline}` did not stop within the shutdown timeout and was aborted"
    )]
    ShutdownTimeout {
        /// `group/pipeline`.
        pipeline: String,
        /// Node or extension id.
        task: String,
    },
    /// The engine could not start a thread or runtime.
    #[error("cannot start the engine: {0}")]
    Start(String),
}

fn last_report(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|why| format!(" (it last reported: {why})"))
        .unwrap_or_default()
}

/// The failures of a run, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct EngineError(pub Vec<Failure>);

impl From<InstantiateError> for Failure {
    fn from(error: InstantiateError) -> Self {
        Failure::Instantiate(error.to_string())
    }
}
