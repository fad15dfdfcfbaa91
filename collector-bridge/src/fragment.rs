//! From a Collector component's configuration to the otap-df document its engine runs.
//!
//! The Collector hands each component its configuration as a map (the Go side passes it as
//! JSON, which YAML reads). An extension component's map is one otap-df extension declaration
//! (`type`, `config`); a data component's is a pipeline fragment (`extensions`, `nodes`,
//! optional `connections`) plus the bridge's own `cores` and `queue_size`. The bridge adds its
//! inlet (`receiver:collector_in`: what the Collector hands the component) and outlet
//! (`exporter:collector_out`: what the component hands the Collector's next consumer) and
//! connects them to the fragment.

use otap_df::Registry;
use otap_df::core::capability::CapabilityId;
use otap_df::core::config::{ComponentConfig, ConfigErrors, PositionIndex, YamlPath};
use serde_yaml_ng::{Mapping, Value};

/// The group and pipeline every component's engine runs (one per engine).
const GROUP: &str = "collector";
const PIPELINE: &str = "bridge";

/// The bridge's node names inside a fragment; a fragment cannot use them.
pub(crate) const INLET: &str = "collector_in";
pub(crate) const OUTLET: &str = "collector_out";
const CAPABILITIES: &str = "collector_capabilities";
const EXTENSION: &str = "extension";

/// `queue_size` when the configuration gives none: payloads the Collector may have handed a
/// component and not yet had answered, and payloads a component may have handed the
/// Collector's next consumer and not yet had answered.
pub const DEFAULT_QUEUE_SIZE: usize = 256;

/// What kind of Collector component hosts the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `extensions:` — an otap-df extension as an authenticator.
    Extension,
    /// `receivers:` — otap-df receivers feeding the Collector's pipeline.
    Receiver,
    /// `processors:` — otap-df processors in the Collector's pipeline.
    Processor,
    /// `exporters:` — otap-df exporters at the end of the Collector's pipeline.
    Exporter,
    /// `connectors:` — otap-df processors between two Collector pipelines.
    Connector,
}

impl Role {
    /// The role of C ABI code `code` (0 extension … 4 connector).
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Role::Extension,
            1 => Role::Receiver,
            2 => Role::Processor,
            3 => Role::Exporter,
            4 => Role::Connector,
            _ => return None,
        })
    }

    /// Whether the Collector hands the component data.
    pub fn has_inlet(self) -> bool {
        matches!(self, Role::Processor | Role::Exporter | Role::Connector)
    }

    /// Whether the component hands the Collector data.
    pub fn has_outlet(self) -> bool {
        matches!(self, Role::Receiver | Role::Processor | Role::Connector)
    }

    fn section(self) -> &'static str {
        match self {
            Role::Extension => "extensions",
            Role::Receiver => "receivers",
            Role::Processor => "processors",
            Role::Exporter => "exporters",
            Role::Connector => "connectors",
        }
    }

    /// The node kinds a fragment of this role may declare.
    fn allowed(self) -> &'static [&'static str] {
        match self {
            Role::Extension => &[],
            Role::Receiver => &["receiver", "processor"],
            Role::Processor | Role::Connector => &["processor"],
            Role::Exporter => &["processor", "exporter"],
        }
    }
}

/// A component's otap-df document and how its engine runs.
#[derive(Debug)]
pub struct Fragment {
    /// The document.
    pub text: String,
    /// Pipeline instances (`cores`).
    pub cores: usize,
    /// The bound of each queue between the runtimes (`queue_size`).
    pub queue_size: usize,
    /// The capabilities the Collector may ask of an extension component.
    pub capabilities: Vec<CapabilityId>,
}

/// The document for component `component` of `role` with the Collector configuration
/// `config` (JSON or YAML text); a message naming what is wrong, and where, when it cannot be
/// built.
pub fn build(
    role: Role,
    component: u64,
    config: &str,
    registry: &Registry,
) -> Result<Fragment, String> {
    let value: Value = serde_yaml_ng::from_str(config)
        .map_err(|e| format!("the component's configuration does not parse: {e}"))?;
    let map = match value {
        Value::Mapping(map) => map,
        Value::Null => Mapping::new(),
        other => {
            return Err(format!(
                "the component's configuration must be a mapping, not {}",
                kind_of(&other)
            ));
        }
    };
    match role {
        Role::Extension => extension(component, map, registry),
        _ => data(role, component, map),
    }
}

fn extension(component: u64, mut map: Mapping, registry: &Registry) -> Result<Fragment, String> {
    let Some(Value::String(type_name)) = map.get("type").cloned() else {
        return Err(
            "`type` is required: the otap-df extension type (`bearer_auth`, \
                    `azure_auth`, ...), with its settings under `config`"
                .to_owned(),
        );
    };
    let name = type_name
        .strip_prefix("urn:otap:extension:")
        .or_else(|| type_name.strip_prefix("extension:"))
        .unwrap_or(&type_name)
        .to_owned();
    // The Collector's section says it is an extension: `bearer_auth` is enough.
    if !type_name.contains(':') {
        map.insert("type".into(), format!("extension:{name}").into());
    }
    let mut capabilities = Vec::new();
    if let Some(factory) = registry.extension(&name) {
        let config = map.get("config").cloned().unwrap_or(Value::Null);
        let path = YamlPath::default();
        let positions = PositionIndex::default();
        let provided = factory.provided_for(&ComponentConfig::new(&config, &path, &positions));
        for capability in [
            CapabilityId::BearerTokenAuthorizer,
            CapabilityId::BearerTokenProvider,
        ] {
            if provided.contains(&capability) {
                capabilities.push(capability);
            }
        }
        if capabilities.is_empty() {
            return Err(format!(
                "extension type `{name}` provides neither `bearer_token_authorizer` nor \
                 `bearer_token_provider`, so the Collector cannot use it as an authenticator \
                 (declare it inside an otapdf receiver, processor or exporter instead)"
            ));
        }
    }
    // An unknown type: the engine's resolver names the valid ones.
    let mut bindings = Mapping::new();
    for capability in &capabilities {
        bindings.insert(capability.name().into(), EXTENSION.into());
    }
    if capabilities.is_empty() {
        bindings.insert(
            CapabilityId::BearerTokenAuthorizer.name().into(),
            EXTENSION.into(),
        );
    }
    let mut extensions = Mapping::new();
    extensions.insert(EXTENSION.into(), Value::Mapping(map));
    let mut nodes = Mapping::new();
    nodes.insert(
        INLET.into(),
        bridge_node("receiver:collector_in", component),
    );
    let mut holder = bridge_node("exporter:collector_capabilities", component);
    if let Value::Mapping(holder) = &mut holder {
        holder.insert("capabilities".into(), Value::Mapping(bindings));
    }
    nodes.insert(CAPABILITIES.into(), holder);
    let connections = vec![connection(INLET, CAPABILITIES)];
    Ok(Fragment {
        text: document(extensions, nodes, connections, 1)?,
        cores: 1,
        queue_size: 1,
        capabilities,
    })
}

fn data(role: Role, component: u64, mut map: Mapping) -> Result<Fragment, String> {
    const KEYS: &[&str] = &["extensions", "nodes", "connections", "cores", "queue_size"];
    if let Some(unknown) = map
        .keys()
        .find(|k| !k.as_str().is_some_and(|k| KEYS.contains(&k)))
    {
        return Err(format!(
            "unknown field `{}`: expected one of {}",
            display(unknown),
            KEYS.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let cores = count(map.get("cores"), "cores", 1, 1..=256)?;
    let queue_size = count(
        map.get("queue_size"),
        "queue_size",
        DEFAULT_QUEUE_SIZE,
        1..=65_536,
    )?;
    let extensions = match map.remove("extensions") {
        None | Some(Value::Null) => Mapping::new(),
        Some(Value::Mapping(m)) => m,
        Some(other) => {
            return Err(format!(
                "`extensions` must be a mapping of extension names to declarations, not {}",
                kind_of(&other)
            ));
        }
    };
    // A processor or connector with no nodes hands on what it takes as it is (a forward
    // connector; what the benchmarks cross with).
    let passes = matches!(role, Role::Processor | Role::Connector);
    let mut nodes = match map.remove("nodes") {
        Some(Value::Mapping(m)) if !m.is_empty() => m,
        None | Some(Value::Null) if passes => Mapping::new(),
        Some(Value::Mapping(m)) if passes => m,
        None | Some(Value::Null) => {
            return Err(format!(
                "`nodes` is required: the otap-df {} this component runs",
                role.allowed().join("s and ") + "s"
            ));
        }
        Some(Value::Mapping(_)) => {
            return Err("`nodes` is empty: declare at least one node".to_owned());
        }
        Some(other) => {
            return Err(format!(
                "`nodes` must be a mapping of node names to declarations, not {}",
                kind_of(&other)
            ));
        }
    };
    let mut kinds = Vec::new();
    for (name, node) in &nodes {
        let name = name
            .as_str()
            .ok_or_else(|| format!("node name {} is not a string", display(name)))?;
        if name == INLET || name == OUTLET {
            return Err(format!(
                "node name `{name}` is the bridge's own: name the node otherwise"
            ));
        }
        // A missing or malformed `type` is the engine resolver's to report, located.
        let kind = node
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| t.strip_prefix("urn:otap:").unwrap_or(t).split(':').next())
            .unwrap_or("");
        if !kind.is_empty() && !role.allowed().contains(&kind) {
            return Err(format!(
                "node `{name}` is {} {kind}: an otapdf component in `{}` runs {} only",
                if kind == "exporter" { "an" } else { "a" },
                role.section(),
                role.allowed()
                    .iter()
                    .map(|k| format!("{k}s"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        kinds.push((name.to_owned(), kind.to_owned()));
    }
    let mut connections = match map.remove("connections") {
        None | Some(Value::Null) => implied_chain(&kinds)?,
        Some(Value::Sequence(list)) => list,
        Some(other) => {
            return Err(format!(
                "`connections` must be a list of `{{ from: <node>, to: <node> }}`, not {}",
                kind_of(&other)
            ));
        }
    };
    let linked = |end: &str, name: &str, connections: &[Value]| {
        connections
            .iter()
            .any(|c| c.get(end).and_then(Value::as_str) == Some(name))
    };
    let mut added = Vec::new();
    for (name, kind) in &kinds {
        let takes = kind == "processor" || kind == "exporter";
        let gives = kind == "receiver" || kind == "processor";
        if role.has_inlet() && takes && !linked("to", name, &connections) {
            added.push(connection(INLET, name));
        }
        if role.has_outlet() && gives && !linked("from", name, &connections) {
            added.push(connection(name, OUTLET));
        }
    }
    connections.extend(added);
    if kinds.is_empty() {
        connections.push(connection(INLET, OUTLET));
    }
    if role.has_inlet() {
        nodes.insert(
            INLET.into(),
            bridge_node("receiver:collector_in", component),
        );
    }
    if role.has_outlet() {
        nodes.insert(
            OUTLET.into(),
            bridge_node("exporter:collector_out", component),
        );
    }
    Ok(Fragment {
        text: document(extensions, nodes, connections, cores)?,
        cores,
        queue_size,
        capabilities: Vec::new(),
    })
}

/// Without `connections`: processors one after the other, which needs their order, so one at
/// most; receivers into it, it into the exporters (the inlet and outlet are added after).
fn implied_chain(kinds: &[(String, String)]) -> Result<Vec<Value>, String> {
    let processors: Vec<&str> = kinds
        .iter()
        .filter(|(_, k)| k == "processor")
        .map(|(n, _)| n.as_str())
        .collect();
    if processors.len() > 1 {
        return Err(format!(
            "several processors ({}) and no `connections`: the Collector's configuration \
             does not keep the order of `nodes`, so say it, for example `connections: \
             [{{ from: {}, to: {} }}]`",
            processors
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            processors[0],
            processors[1]
        ));
    }
    let mut connections = Vec::new();
    if let Some(processor) = processors.first() {
        for (name, kind) in kinds {
            match kind.as_str() {
                "receiver" => connections.push(connection(name, processor)),
                "exporter" => connections.push(connection(processor, name)),
                _ => {}
            }
        }
    } else {
        for (receiver, _) in kinds.iter().filter(|(_, k)| k == "receiver") {
            for (exporter, _) in kinds.iter().filter(|(_, k)| k == "exporter") {
                connections.push(connection(receiver, exporter));
            }
        }
    }
    Ok(connections)
}

fn count(
    value: Option<&Value>,
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, String> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "`{name}` must be a whole number from {} to {}, not {}",
                range.start(),
                range.end(),
                display(value)
            )
        })
}

fn bridge_node(type_name: &str, component: u64) -> Value {
    let mut config = Mapping::new();
    config.insert("component".into(), component.into());
    let mut node = Mapping::new();
    node.insert("type".into(), type_name.into());
    node.insert("config".into(), Value::Mapping(config));
    Value::Mapping(node)
}

fn connection(from: &str, to: &str) -> Value {
    let mut c = Mapping::new();
    c.insert("from".into(), from.into());
    c.insert("to".into(), to.into());
    Value::Mapping(c)
}

fn document(
    extensions: Mapping,
    nodes: Mapping,
    connections: Vec<Value>,
    cores: usize,
) -> Result<String, String> {
    let mut pipeline = Mapping::new();
    if !extensions.is_empty() {
        pipeline.insert("extensions".into(), Value::Mapping(extensions));
    }
    pipeline.insert("nodes".into(), Value::Mapping(nodes));
    pipeline.insert("connections".into(), Value::Sequence(connections));
    let mut pipelines = Mapping::new();
    pipelines.insert(PIPELINE.into(), Value::Mapping(pipeline));
    let mut group = Mapping::new();
    group.insert("pipelines".into(), Value::Mapping(pipelines));
    let mut groups = Mapping::new();
    groups.insert(GROUP.into(), Value::Mapping(group));
    let mut engine = Mapping::new();
    engine.insert("cores".into(), cores.into());
    let mut root = Mapping::new();
    root.insert("version".into(), "otap_df/v1".into());
    root.insert("engine".into(), Value::Mapping(engine));
    root.insert("groups".into(), Value::Mapping(groups));
    serde_yaml_ng::to_string(&Value::Mapping(root))
        .map_err(|e| format!("the component's configuration cannot be written: {e}"))
}

/// `errors` as the Collector shows them: each at its path inside the component's own
/// configuration (`nodes.dedup.config.ttl`), without the generated document's lines.
pub fn located(role: Role, errors: &ConfigErrors) -> String {
    let pipeline = format!("groups.{GROUP}.pipelines.{PIPELINE}.");
    let extension = format!("{pipeline}extensions.{EXTENSION}.");
    errors
        .errors
        .iter()
        .map(|error| {
            let path = error.path.to_string();
            let inner = match role {
                Role::Extension => path.strip_prefix(&extension),
                _ => path.strip_prefix(&pipeline),
            };
            match inner {
                Some(inner) => format!("at `{inner}`: {}", error.kind),
                None => error.kind.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_else(|_| kind_of(other).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        crate::registry().unwrap_or_else(|e| panic!("registry: {e}"))
    }

    #[test]
    fn a_processor_fragment_is_wired_between_the_inlet_and_the_outlet() {
        let fragment = build(
            Role::Processor,
            7,
            r#"{"nodes":{"dedup":{"type":"processor:dedup","config":{"ttl":"1m"}}},"queue_size":8}"#,
            &registry(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fragment.queue_size, 8);
        assert_eq!(fragment.cores, 1);
        let doc: Value = serde_yaml_ng::from_str(&fragment.text).unwrap_or_else(|e| panic!("{e}"));
        let connections = &doc["groups"]["collector"]["pipelines"]["bridge"]["connections"];
        let pairs: Vec<(String, String)> = connections
            .as_sequence()
            .unwrap_or_else(|| panic!("connections"))
            .iter()
            .map(|c| {
                (
                    c["from"].as_str().unwrap_or_default().to_owned(),
                    c["to"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("collector_in".to_owned(), "dedup".to_owned()),
                ("dedup".to_owned(), "collector_out".to_owned()),
            ]
        );
    }

    #[test]
    fn a_processor_without_nodes_hands_on_what_it_takes() {
        let fragment =
            build(Role::Connector, 2, "{}", &registry()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            fragment
                .text
                .contains("- from: collector_in\n          to: collector_out"),
            "{}",
            fragment.text
        );
        assert_eq!(
            build(Role::Exporter, 2, "{}", &registry()).map(|f| f.text),
            Err(
                "`nodes` is required: the otap-df processors and exporters this component runs"
                    .to_owned()
            )
        );
    }

    #[test]
    fn an_exporter_fragment_fans_out_from_the_inlet() {
        let fragment = build(
            Role::Exporter,
            1,
            r#"{"nodes":{"a":{"type":"exporter:noop"},"b":{"type":"exporter:noop"}}}"#,
            &registry(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            fragment
                .text
                .contains("- from: collector_in\n          to: a"),
            "{}",
            fragment.text
        );
        assert!(
            fragment
                .text
                .contains("- from: collector_in\n          to: b"),
            "{}",
            fragment.text
        );
        assert!(
            !fragment.text.contains("collector_out"),
            "{}",
            fragment.text
        );
    }

    #[test]
    fn bad_fragments_are_refused_with_what_would_be_valid() {
        let registry = registry();
        let refused = |role, text: &str| match build(role, 1, text, &registry) {
            Ok(fragment) => panic!("accepted: {}", fragment.text),
            Err(message) => message,
        };
        assert_eq!(
            refused(
                Role::Processor,
                r#"{"nodes":{"x":{"type":"processor:dedup"}},"queue":1}"#
            ),
            "unknown field `queue`: expected one of `extensions`, `nodes`, `connections`, \
             `cores`, `queue_size`"
        );
        assert_eq!(
            refused(
                Role::Processor,
                r#"{"nodes":{"x":{"type":"exporter:noop"}}}"#
            ),
            "node `x` is an exporter: an otapdf component in `processors` runs processors only"
        );
        assert_eq!(
            refused(
                Role::Processor,
                r#"{"nodes":{"x":{"type":"processor:dedup"}},"queue_size":0}"#
            ),
            "`queue_size` must be a whole number from 1 to 65536, not 0"
        );
        assert!(
            refused(
                Role::Processor,
                r#"{"nodes":{"a":{"type":"processor:dedup"},"b":{"type":"processor:dedup"}}}"#
            )
            .starts_with("several processors (`a`, `b`) and no `connections`")
        );
        assert_eq!(
            refused(Role::Extension, r#"{"type":"memory_kv"}"#),
            "extension type `memory_kv` provides neither `bearer_token_authorizer` nor \
             `bearer_token_provider`, so the Collector cannot use it as an authenticator \
             (declare it inside an otapdf receiver, processor or exporter instead)"
        );
        assert_eq!(
            refused(
                Role::Receiver,
                r#"{"nodes":{"collector_out":{"type":"receiver:generator"}}}"#
            ),
            "node name `collector_out` is the bridge's own: name the node otherwise"
        );
    }
}
