//! The v1 YAML configuration: `version`, `engine`, `groups` → `pipelines` → `extensions`,
//! `nodes`, `connections`.
//!
//! [`parse`] reads the structure and reports every structural error it finds (unknown fields,
//! wrong types, malformed type names, unset environment variables), each with its YAML path
//! and line:column. [`crate::resolve::resolve`] then checks the document against a
//! [`Registry`](crate::registry::Registry).

pub mod component;
pub mod env;
pub mod error;
pub mod limits;
pub mod position;
pub mod urn;

use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

pub use component::ComponentConfig;
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};
pub use position::{Location, PositionIndex, YamlPath};
pub use urn::{ComponentKind, ComponentUrn};

/// The only configuration version this build reads.
pub const VERSION: &str = "otap_df/v1";

/// A parsed configuration document.
#[derive(Debug, Clone)]
pub struct Document {
    /// Engine-wide settings.
    pub engine: EngineConfig,
    /// Pipeline groups, in document order.
    pub groups: Vec<GroupConfig>,
    /// Where the document came from, and the position of every path in it.
    pub source: Source,
}

/// A document's origin and positions, for locating errors found after parsing.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The file name (or another label) of the document.
    pub name: String,
    /// The position of every path of the document.
    pub positions: PositionIndex,
    /// Paths whose `${env:...}` substitution failed (already reported): later errors at or
    /// under them would only repeat it.
    pub(crate) unresolved: Vec<YamlPath>,
}

impl Source {
    /// Locates `kind` at `path`.
    pub fn error(&self, path: &YamlPath, kind: impl Into<ConfigErrorKind>) -> ConfigError {
        ConfigError {
            path: path.clone(),
            location: self.positions.locate(path),
            kind: kind.into(),
        }
    }
}

/// The most `engine.cores` (and `run --cores`) accepts: each core is a thread with its own
/// runtime, and far more than a machine has only costs memory.
pub const MAX_CORES: usize = 1024;

/// `engine:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How many instances of each pipeline run, one per core (thread-per-core). Default 1.
    pub cores: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { cores: 1 }
    }
}

/// One entry of `groups:`.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group's name.
    pub name: String,
    /// Its pipelines, in document order.
    pub pipelines: Vec<PipelineConfig>,
}

/// One pipeline: its extensions, nodes and connections.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The group it belongs to.
    pub group: String,
    /// Its name within the group.
    pub name: String,
    /// Its path (`groups.<group>.pipelines.<name>`).
    pub path: YamlPath,
    /// Declared extensions whose declaration is valid, in document order.
    pub extensions: Vec<ExtensionDecl>,
    /// Declared nodes whose declaration is valid, in document order.
    pub nodes: Vec<NodeDecl>,
    /// Connections, in document order.
    pub connections: Vec<ConnectionDecl>,
    /// Ids declared with an invalid declaration (already reported). References to them are
    /// not reported again.
    pub invalid_ids: Vec<String>,
}

/// An entry of a pipeline's `extensions:`.
#[derive(Debug, Clone)]
pub struct ExtensionDecl {
    /// The extension id (the mapping key).
    pub id: String,
    /// Its type.
    pub urn: ComponentUrn,
    /// Its `config:` block (an empty mapping when absent).
    pub config: Value,
    /// How long the pipeline waits for it to become ready, when it probes readiness
    /// (`startup_timeout:`; the factory's default when absent).
    pub startup_timeout: Option<Duration>,
    /// Its path.
    pub path: YamlPath,
}

/// An entry of a pipeline's `nodes:`.
#[derive(Debug, Clone)]
pub struct NodeDecl {
    /// The node id (the mapping key).
    pub id: String,
    /// Its type.
    pub urn: ComponentUrn,
    /// Its `config:` block (an empty mapping when absent).
    pub config: Value,
    /// Its `capabilities:` bindings, in document order.
    pub capabilities: Vec<CapabilityBinding>,
    /// Its path.
    pub path: YamlPath,
}

/// `capability_name: extension_id` in a node's `capabilities:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityBinding {
    /// The capability name as written.
    pub capability: String,
    /// The extension id as written.
    pub extension: String,
    /// The entry's path.
    pub path: YamlPath,
}

/// An entry of `connections:`: data flows from every `from` node to every `to` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionDecl {
    /// Source nodes.
    pub from: Vec<String>,
    /// Target nodes.
    pub to: Vec<String>,
    /// The entry's path.
    pub path: YamlPath,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtension {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    config: Value,
    #[serde(default, with = "humantime_serde")]
    startup_timeout: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    capabilities: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    from: OneOrMany,
    to: OneOrMany,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a node id or a list of node ids")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// Parses `text` (from `source_name`), substituting `${env:NAME}` from the process
/// environment.
pub fn parse(text: &str, source_name: &str) -> Result<Document, ConfigErrors> {
    parse_with_env(text, source_name, &|name| std::env::var(name).ok())
}

/// [`parse`] with an explicit variable lookup (for tests and embedding).
pub fn parse_with_env(
    text: &str,
    source_name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, ConfigErrors> {
    let (document, mut errors) = parse_partial(text, source_name, lookup)?;
    if errors.is_empty() {
        Ok(document)
    } else {
        finish_errors(&document.source, &mut errors);
        Err(ConfigErrors {
            source: document.source.name,
            errors,
        })
    }
}

/// Parses what can be parsed: the document without its invalid entries, and the errors
/// found. Fails outright only when the text is not YAML.
pub(crate) fn parse_partial(
    text: &str,
    source_name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Document, Vec<ConfigError>), ConfigErrors> {
    // A byte-order mark is not content (editors on some systems write one).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Err(error) = limits::check(text) {
        return Err(ConfigErrors {
            source: source_name.to_owned(),
            errors: vec![error],
        });
    }
    let mut source = Source {
        name: source_name.to_owned(),
        positions: PositionIndex::build(text),
        unresolved: Vec::new(),
    };
    let mut root: Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            let mut location = error.location().map(|l| Location {
                line: l.line(),
                column: l.column(),
            });
            let mut message = strip_location(&error.to_string());
            // A second document is located by `limits::check`; this message without one
            // means the text ended its first document early (a line indented less than the
            // first): the other parser says where, and what it found.
            if location.is_none()
                && message.contains("more than one document")
                && let Some((at, found)) = position::first_syntax_error(text)
            {
                location = Some(at);
                message = format!(
                    "{found} (a line is indented less than the ones before it: the keys of \
                     one mapping start in the same column, top-level keys in column 1)"
                );
            }
            return Err(ConfigErrors {
                source: source.name,
                errors: vec![ConfigError {
                    path: YamlPath::root(),
                    location,
                    kind: ConfigErrorKind::Syntax { message },
                }],
            });
        }
    };
    let mut errors = Vec::new();
    env::substitute(&mut root, &YamlPath::root(), lookup, &mut errors);
    source.unresolved = errors.iter().map(|e| e.path.clone()).collect();
    let mut walker = Walker {
        source: &source,
        errors,
    };
    let (engine, groups) = walker.document(&root);
    let mut errors = walker.errors;
    for error in &mut errors {
        if error.location.is_none() {
            error.location = source.positions.locate(&error.path);
        }
    }
    Ok((
        Document {
            engine,
            groups,
            source,
        },
        errors,
    ))
}

/// Drops errors that only repeat a failed substitution, then orders them as they appear in
/// the document.
pub(crate) fn finish_errors(source: &Source, errors: &mut Vec<ConfigError>) {
    errors.retain(|error| {
        matches!(
            error.kind,
            ConfigErrorKind::UnsetEnvVar { .. } | ConfigErrorKind::InvalidReference { .. }
        ) || !source
            .unresolved
            .iter()
            .any(|path| error.path.starts_with(path))
    });
    sort_errors(errors);
}

fn sort_errors(errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| (e.location, e.path.to_string()));
}

fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

struct Walker<'s> {
    source: &'s Source,
    errors: Vec<ConfigError>,
}

impl Walker<'_> {
    fn error(&mut self, path: &YamlPath, kind: ConfigErrorKind) {
        self.errors.push(self.source.error(path, kind));
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &mut self,
        value: &Value,
        path: &YamlPath,
    ) -> Option<T> {
        component::decode_at(value, path, &self.source.positions)
            .map_err(|e| self.errors.push(e))
            .ok()
    }

    fn mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &YamlPath,
        what: &str,
    ) -> Option<&'v Mapping> {
        match value {
            Value::Mapping(map) => Some(map),
            other => {
                self.error(
                    path,
                    ConfigErrorKind::InvalidValue {
                        message: format!("expected {what}, found {}", describe(other)),
                    },
                );
                None
            }
        }
    }

    /// The string-keyed entries of `map`, in order; reports non-string keys.
    fn entries<'v>(&mut self, map: &'v Mapping, path: &YamlPath) -> Vec<(&'v str, &'v Value)> {
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            match key {
                Value::String(key) if !key.is_empty() => entries.push((key.as_str(), value)),
                other => self.error(
                    path,
                    ConfigErrorKind::InvalidValue {
                        message: format!("keys must be non-empty names, found {}", describe(other)),
                    },
                ),
            }
        }
        entries
    }

    /// The fields of a fixed-shape section, reporting unknown and missing ones.
    fn fields<'v>(
        &mut self,
        map: &'v Mapping,
        path: &YamlPath,
        allowed: &[&str],
        required: &[&str],
    ) -> Vec<(&'v str, &'v Value)> {
        let mut known = Vec::new();
        for (key, value) in self.entries(map, path) {
            if allowed.contains(&key) {
                known.push((key, value));
            } else {
                self.error(
                    &path.key(key),
                    ConfigErrorKind::UnknownField {
                        field: key.to_owned(),
                        expected: allowed.iter().map(|s| (*s).to_owned()).collect(),
                        suggestion: error::closest(key, allowed.iter().copied()),
                    },
                );
            }
        }
        for field in required {
            if !known.iter().any(|(k, _)| k == field) {
                self.error(
                    path,
                    ConfigErrorKind::MissingField {
                        field: (*field).to_owned(),
                    },
                );
            }
        }
        known
    }

    fn document(&mut self, root: &Value) -> (EngineConfig, Vec<GroupConfig>) {
        let path = YamlPath::root();
        let mut engine = EngineConfig::default();
        let mut groups = Vec::new();
        let Some(map) = self.mapping(root, &path, "a mapping with `version` and `groups`") else {
            return (engine, groups);
        };
        for (key, value) in self.fields(
            map,
            &path,
            &["version", "engine", "groups"],
            &["version", "groups"],
        ) {
            let path = path.key(key);
            match key {
                "version" => match value.as_str() {
                    Some(VERSION) => {}
                    _ => self.error(
                        &path,
                        ConfigErrorKind::UnsupportedVersion {
                            found: value_text(value),
                            expected: VERSION,
                        },
                    ),
                },
                "engine" => {
                    if let Some(parsed) = self.decode::<EngineConfig>(value, &path) {
                        if !(1..=MAX_CORES).contains(&parsed.cores) {
                            self.error(
                                &path.key("cores"),
                                ConfigErrorKind::InvalidValue {
                                    message: format!(
                                        "`cores` must be between 1 and {MAX_CORES} (one thread and runtime each)"
                                    ),
                                },
                            );
                        }
                        engine = parsed;
                    }
                }
                _ => groups = self.groups(value, &path),
            }
        }
        (engine, groups)
    }

    fn groups(&mut self, value: &Value, path: &YamlPath) -> Vec<GroupConfig> {
        let Some(map) = self.mapping(value, path, "a mapping of group names to groups") else {
            return Vec::new();
        };
        let mut groups = Vec::new();
        for (name, group) in self.entries(map, path) {
            let group_path = path.key(name);
            let Some(group_map) = self.mapping(group, &group_path, "a group with `pipelines`")
            else {
                continue;
            };
            let mut pipelines = Vec::new();
            for (_, value) in self.fields(group_map, &group_path, &["pipelines"], &["pipelines"]) {
                let pipelines_path = group_path.key("pipelines");
                let Some(pipelines_map) = self.mapping(
                    value,
                    &pipelines_path,
                    "a mapping of pipeline names to pipelines",
                ) else {
                    continue;
                };
                for (pipeline_name, pipeline) in self.entries(pipelines_map, &pipelines_path) {
                    let pipeline_path = pipelines_path.key(pipeline_name);
                    pipelines.push(self.pipeline(name, pipeline_name, pipeline, pipeline_path));
                }
            }
            groups.push(GroupConfig {
                name: name.to_owned(),
                pipelines,
            });
        }
        groups
    }

    fn pipeline(
        &mut self,
        group: &str,
        name: &str,
        value: &Value,
        path: YamlPath,
    ) -> PipelineConfig {
        let mut pipeline = PipelineConfig {
            group: group.to_owned(),
            name: name.to_owned(),
            path: path.clone(),
            extensions: Vec::new(),
            nodes: Vec::new(),
            connections: Vec::new(),
            invalid_ids: Vec::new(),
        };
        let Some(map) = self.mapping(value, &path, "a pipeline with `nodes`") else {
            return pipeline;
        };
        for (key, value) in self.fields(
            map,
            &path,
            &["extensions", "nodes", "connections"],
            &["nodes"],
        ) {
            let section = path.key(key);
            match key {
                "extensions" => self.extensions(value, &section, &mut pipeline),
                "nodes" => self.nodes(value, &section, &mut pipeline),
                _ => self.connections(value, &section, &mut pipeline),
            }
        }
        pipeline
    }

    /// Parses a component's `type`, checking that it belongs in `section`.
    fn component_type(
        &mut self,
        type_name: &str,
        path: &YamlPath,
        extension_section: bool,
    ) -> Option<ComponentUrn> {
        let type_path = path.key("type");
        match ComponentUrn::parse(type_name) {
            Err(kind) => {
                self.error(&type_path, kind);
                None
            }
            Ok(urn) if (urn.kind == ComponentKind::Extension) != extension_section => {
                self.error(
                    &type_path,
                    ConfigErrorKind::WrongSection {
                        type_name: type_name.to_owned(),
                        kind: urn.kind,
                    },
                );
                None
            }
            Ok(urn) => Some(urn),
        }
    }

    fn extensions(&mut self, value: &Value, path: &YamlPath, pipeline: &mut PipelineConfig) {
        if value.is_null() {
            return;
        }
        let Some(map) = self.mapping(value, path, "a mapping of extension ids to extensions")
        else {
            return;
        };
        for (id, entry) in self.entries(map, path) {
            let entry_path = path.key(id);
            let declared = self
                .decode::<RawExtension>(entry, &entry_path)
                .and_then(|raw| {
                    let urn = self.component_type(&raw.type_name, &entry_path, true)?;
                    Some(ExtensionDecl {
                        id: id.to_owned(),
                        urn,
                        config: empty_if_null(raw.config),
                        startup_timeout: raw.startup_timeout,
                        path: entry_path,
                    })
                });
            match declared {
                Some(decl) => pipeline.extensions.push(decl),
                None => pipeline.invalid_ids.push(id.to_owned()),
            }
        }
    }

    fn nodes(&mut self, value: &Value, path: &YamlPath, pipeline: &mut PipelineConfig) {
        let Some(map) = self.mapping(value, path, "a mapping of node ids to nodes") else {
            return;
        };
        if map.is_empty() {
            self.error(
                path,
                ConfigErrorKind::InvalidValue {
                    message: "a pipeline needs nodes (at least a receiver and an exporter); add them, or remove the pipeline".to_owned(),
                },
            );
        }
        for (id, entry) in self.entries(map, path) {
            let entry_path = path.key(id);
            let declared = self.decode::<RawNode>(entry, &entry_path).and_then(|raw| {
                let urn = self.component_type(&raw.type_name, &entry_path, false);
                let capabilities =
                    self.bindings(&raw.capabilities, &entry_path.key("capabilities"));
                Some(NodeDecl {
                    id: id.to_owned(),
                    urn: urn?,
                    config: empty_if_null(raw.config),
                    capabilities,
                    path: entry_path,
                })
            });
            match declared {
                Some(decl) => pipeline.nodes.push(decl),
                None => pipeline.invalid_ids.push(id.to_owned()),
            }
        }
    }

    fn bindings(&mut self, value: &Value, path: &YamlPath) -> Vec<CapabilityBinding> {
        if value.is_null() {
            return Vec::new();
        }
        let Some(map) = self.mapping(
            value,
            path,
            "a mapping of capability names to extension ids",
        ) else {
            return Vec::new();
        };
        let mut bindings = Vec::new();
        for (capability, extension) in self.entries(map, path) {
            let entry_path = path.key(capability);
            match extension.as_str() {
                Some(extension) if !extension.is_empty() => bindings.push(CapabilityBinding {
                    capability: capability.to_owned(),
                    extension: extension.to_owned(),
                    path: entry_path,
                }),
                _ => self.error(
                    &entry_path,
                    ConfigErrorKind::InvalidValue {
                        message: format!("expected an extension id, found {}", describe(extension)),
                    },
                ),
            }
        }
        bindings
    }

    fn connections(&mut self, value: &Value, path: &YamlPath, pipeline: &mut PipelineConfig) {
        if value.is_null() {
            return;
        }
        let Some(items) = value.as_sequence() else {
            self.error(
                path,
                ConfigErrorKind::InvalidValue {
                    message: format!(
                        "expected a list of `{{ from, to }}` entries, found {}",
                        describe(value)
                    ),
                },
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = path.index(i);
            if let Some(raw) = self.decode::<RawConnection>(item, &item_path) {
                pipeline.connections.push(ConnectionDecl {
                    from: raw.from.into_vec(),
                    to: raw.to.into_vec(),
                    path: item_path,
                });
            }
        }
    }
}

fn empty_if_null(value: Value) -> Value {
    if value.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        value
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("the boolean `{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) => format!("the string `{s}`"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("a value tagged `{}`", t.tag),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => describe(other),
    }
}
