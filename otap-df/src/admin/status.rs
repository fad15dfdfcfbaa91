//! `GET /status`: the configuration that runs now, with each extension's state and counters
//! and each node's counters, as JSON.

use serde_json::{Value, json};

use super::State;
use crate::core::extension::ExecutionModel;
use crate::core::resolve::{ExtensionPlan, ResolvedConfig};
use crate::core::runtime::{ExtensionMetricsOf, ExtensionState, NodeTotals};

impl State {
    pub(super) fn status(&self) -> Value {
        // The configuration that runs now (a reload may have changed it).
        let current = self.telemetry.config().map(|config| Shape::of(&config));
        let shape = current.as_ref().unwrap_or(&self.shape);
        let readiness = self.telemetry.readiness();
        let now = Counts {
            states: self.telemetry.extension_states(),
            extension_metrics: self.telemetry.extension_metrics(),
            totals: self.telemetry.node_totals(),
        };
        let scopes: Vec<Value> = shape
            .scopes
            .iter()
            .map(|(label, extensions)| {
                let extensions: Vec<Value> = extensions
                    .iter()
                    .map(|extension| now.extension(label, extension))
                    .collect();
                json!({ "name": label, "extensions": extensions })
            })
            .collect();
        let pipelines: Vec<Value> = shape
            .pipelines
            .iter()
            .map(|pipeline| now.pipeline(pipeline))
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
}

/// The telemetry's states and counters at one request.
struct Counts {
    states: Vec<(String, String, Option<usize>, ExtensionState)>,
    extension_metrics: Vec<ExtensionMetricsOf>,
    totals: Vec<NodeTotals>,
}

impl Counts {
    /// One extension's entry, with its instances as the scope `label` runs them.
    fn extension(&self, label: &str, extension: &ExtensionShape) -> Value {
        let instances: Vec<Value> = self
            .states
            .iter()
            .filter(|(p, e, _, _)| p == label && *e == extension.id)
            .map(|(_, _, core, state)| {
                let metrics = self.extension_metrics.iter().find(|m| {
                    m.pipeline == label && m.extension == extension.id && m.core == *core
                });
                instance(*core, state, metrics)
            })
            .collect();
        let bound_by = extension.bound_by();
        json!({
            "id": extension.id,
            "type": extension.type_name,
            "execution": extension.execution,
            "instances": instances,
            "bound_by": bound_by,
        })
    }

    /// One pipeline's entry: its extensions and its nodes with their counters.
    fn pipeline(&self, pipeline: &PipelineShape) -> Value {
        let extensions: Vec<Value> = pipeline
            .extensions
            .iter()
            .map(|extension| self.extension(&pipeline.name, extension))
            .collect();
        let nodes: Vec<Value> = pipeline
            .nodes
            .iter()
            .map(|node| self.node(&pipeline.name, node))
            .collect();
        json!({ "name": pipeline.name, "extensions": extensions, "nodes": nodes })
    }

    /// One node's entry: its type, bindings and counters (null before its first run).
    fn node(&self, pipeline: &str, node: &NodeShape) -> Value {
        let total = self
            .totals
            .iter()
            .find(|t| t.pipeline == pipeline && t.node == node.id);
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
        let bindings: Vec<Value> = node
            .bindings
            .iter()
            .map(|(capability, extension, scope)| {
                json!({ "capability": capability, "extension": extension, "scope": scope })
            })
            .collect();
        json!({
            "id": node.id,
            "type": node.type_name,
            "bindings": bindings,
            "counters": counters,
        })
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

/// What the status shows of the configuration: the outer scopes' extensions, pipelines,
/// their extensions and nodes.
#[derive(Debug)]
pub(super) struct Shape {
    /// The engine's and groups' extensions, by scope label (`engine`, `group:<g>`); only
    /// scopes with bound extensions.
    scopes: Vec<(String, Vec<ExtensionShape>)>,
    pipelines: Vec<PipelineShape>,
}

#[derive(Debug)]
pub(super) struct PipelineShape {
    name: String,
    extensions: Vec<ExtensionShape>,
    nodes: Vec<NodeShape>,
}

#[derive(Debug)]
pub(super) struct ExtensionShape {
    id: String,
    type_name: String,
    execution: &'static str,
    /// `(pipeline, node or extension id, capability, whether the consumer is an extension)`.
    bound_by: Vec<(String, String, String, bool)>,
}

#[derive(Debug)]
pub(super) struct NodeShape {
    id: String,
    type_name: String,
    /// `(capability, extension, the extension's scope label)`.
    bindings: Vec<(String, String, String)>,
}

impl ExtensionShape {
    /// Who binds it, as `/status` shows it: `{pipeline, node, capability}`, or `{pipeline,
    /// extension, capability}` for an extension that binds another.
    fn bound_by(&self) -> Vec<Value> {
        self.bound_by
            .iter()
            .map(|(pipeline, consumer, capability, extension)| {
                let kind = if *extension { "extension" } else { "node" };
                json!({ "pipeline": pipeline, kind: consumer, "capability": capability })
            })
            .collect()
    }

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
                .map(|c| {
                    (
                        c.pipeline.clone(),
                        c.node.clone(),
                        c.capability.to_string(),
                        c.extension,
                    )
                })
                .collect(),
        }
    }
}

impl Shape {
    pub(super) fn of(resolved: &ResolvedConfig) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_bound_by_another_names_it_as_an_extension() {
        let text = "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          front: { type: extension:local_recorder, config: { log: x, behaviour: ready }, capabilities: { key_value_store: back } }
          back: { type: extension:recorder, config: { log: x, behaviour: ready } }
        nodes:
          in: { type: receiver:recording_source, config: { log: x, count: 1 }, capabilities: { key_value_store: front } }
          out: { type: exporter:recording_sink, config: { log: x } }
        connections:
          - { from: in, to: out }
";
        let registry = otap_df_tests::recording::registry();
        let resolved =
            crate::core::resolve::load_with_env(text, "t.yaml", &registry, &|_| None).unwrap();
        let shapes: Vec<Vec<Value>> = resolved.pipelines[0]
            .extensions
            .iter()
            .map(|e| ExtensionShape::of(e).bound_by())
            .collect();
        assert_eq!(
            shapes,
            [
                vec![
                    json!({ "pipeline": "g/p", "extension": "front", "capability": "key_value_store" })
                ],
                vec![json!({ "pipeline": "g/p", "node": "in", "capability": "key_value_store" })],
            ]
        );
    }
}
