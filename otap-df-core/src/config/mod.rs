//! The v1 YAML configuration: `version`, `engine` (with its `extensions`), `groups` (each with
//! its `extensions`) → `pipelines` → `extensions`, `nodes`, `connections`.
//!
//! [`parse`] reads the structure and reports every structural error it finds (unknown fields,
//! wrong types, malformed type names, unset environment variables), each with its YAML path
//! and line:column. [`crate::resolve::resolve`] then checks the document against a
//! [`Registry`](crate::registry::Registry).

mod admin;
pub mod component;
mod document;
pub mod env;
pub mod error;
pub mod limits;
pub mod position;
pub mod urn;

use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

pub use admin::{AdminConfig, TokenScope};
pub use component::{ComponentConfig, InvalidOption};
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};
pub use position::{Location, PathSegment, PositionIndex, YamlPath};
pub use urn::{ComponentKind, ComponentUrn};

/// The only configuration version this build reads.
pub const VERSION: &str = "otap_df/v1";

/// A parsed configuration document.
#[derive(Debug, Clone)]
pub struct Document {
    /// Engine-wide settings.
    pub engine: EngineConfig,
    /// `engine.extensions`: one instance each for every pipeline of the engine.
    pub extensions: ScopeExtensions,
    /// Pipeline groups, in document order.
    pub groups: Vec<GroupConfig>,
    /// Where the document came from, and the position of every path in it.
    pub source: Source,
}

/// A document's origin and positions, for locating errors found after parsing.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The file name (or another label) of the document; for a layered configuration, every
    /// source, comma-separated.
    pub name: String,
    /// The sources of a layered configuration, in order (what [`Location::file`] indexes);
    /// empty for a single source.
    pub files: Vec<String>,
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
    /// The admin endpoint (health, status, metrics); off when absent.
    pub admin: Option<AdminConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cores: 1,
            admin: None,
        }
    }
}

/// The `extensions:` section of one scope: the engine, a group or a pipeline.
#[derive(Debug, Clone, Default)]
pub struct ScopeExtensions {
    /// Declared extensions whose declaration is valid, in document order.
    pub declared: Vec<ExtensionDecl>,
    /// Ids declared with an invalid declaration (already reported). References to them are
    /// not reported again.
    pub invalid_ids: Vec<String>,
}

/// One entry of `groups:`.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group's name.
    pub name: String,
    /// `groups.<name>.extensions`: one instance each for every pipeline of the group.
    pub extensions: ScopeExtensions,
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
    /// Its own `extensions:`.
    pub extensions: ScopeExtensions,
    /// Declared nodes whose declaration is valid, in document order.
    pub nodes: Vec<NodeDecl>,
    /// Connections, in document order.
    pub connections: Vec<ConnectionDecl>,
    /// Node ids declared with an invalid declaration (already reported). References to them
    /// are not reported again.
    pub invalid_node_ids: Vec<String>,
}

/// An entry of an `extensions:` section (of the engine, a group or a pipeline).
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
    /// Its `capabilities:` bindings to other extensions, in document order (only an extension
    /// of a pipeline may have them; the resolver says so for the others).
    pub capabilities: Vec<CapabilityBinding>,
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

/// `capability_name: extension_id` in a node's or an extension's `capabilities:`.
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
    #[serde(default)]
    capabilities: Value,
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
            files: document.source.files,
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
    parse_layers_partial(&[Layer::file(source_name, text)], lookup)
}

/// One source of a layered configuration.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// The file name (`-` reads standard input: name it `<stdin>`), or the override itself
    /// (`--set path=value`).
    pub name: &'a str,
    /// A YAML document (for an override: the value).
    pub text: &'a str,
    /// For an override: the dotted path the value goes to (`groups.g.pipelines.p.nodes.gen.config.count`).
    pub path: Option<&'a str>,
}

impl<'a> Layer<'a> {
    /// A whole document from `name`.
    pub fn file(name: &'a str, text: &'a str) -> Self {
        Self {
            name,
            text,
            path: None,
        }
    }

    /// A command-line override `path=value`: named `--set path=value` in errors.
    pub fn set(name: &'a str, path: &'a str, value: &'a str) -> Self {
        Self {
            name,
            text: value,
            path: Some(path),
        }
    }
}

/// The layers merged into one YAML value, later over earlier: mappings merge key by key,
/// anything else (a scalar, a sequence) is replaced whole. Each path is located in the layer
/// that gave its value.
fn merge_layers(layers: &[Layer<'_>]) -> Result<(Value, Source), ConfigErrors> {
    let files: Vec<String> = layers.iter().map(|l| l.name.to_owned()).collect();
    let mut source = Source {
        name: files.join(", "),
        files: if layers.len() > 1 { files } else { Vec::new() },
        positions: PositionIndex::default(),
        unresolved: Vec::new(),
    };
    let mut root: Option<Value> = None;
    for (index, layer) in layers.iter().enumerate() {
        let file = u16::try_from(index).unwrap_or(u16::MAX);
        let alone = |error: ConfigError| ConfigErrors {
            files: Vec::new(),
            source: layer.name.to_owned(),
            errors: vec![error],
        };
        let (value, positions) = parse_layer(layer, file).map_err(alone)?;
        source.positions.overlay(positions, &value);
        root = Some(match root {
            None => value,
            Some(base) => merge_values(base, value),
        });
    }
    Ok((root.unwrap_or(Value::Null), source))
}

/// One layer's value and where its nodes are (`file`: the layer's index). An override's
/// value is nested under its path's keys, every node located at the override itself.
fn parse_layer(layer: &Layer<'_>, file: u16) -> Result<(Value, PositionIndex), ConfigError> {
    // A byte-order mark is not content (editors on some systems write one).
    let text = layer.text.strip_prefix('\u{feff}').unwrap_or(layer.text);
    limits::check(text)?;
    let value: Value = serde_yaml_ng::from_str(text).map_err(|error| syntax_error(text, &error))?;
    let Some(path) = layer.path else {
        return Ok((value, PositionIndex::build_in(text, file)));
    };
    let parsed = YamlPath::parse(path);
    let mut keys = Vec::new();
    for segment in parsed.segments() {
        match segment {
            PathSegment::Key(key) => keys.push(key.clone()),
            PathSegment::Index(_) => {
                return Err(ConfigError {
                    path: parsed.clone(),
                    location: None,
                    kind: ConfigErrorKind::InvalidValue {
                        message: "an override names mapping keys only (`a.b.c=value`); to \
                                  change a list, set the whole list (`a.b=[x, y]`)"
                            .to_owned(),
                    },
                });
            }
        }
    }
    let value = keys.into_iter().rev().fold(value, |value, key| {
        let mut map = serde_yaml_ng::Mapping::new();
        map.insert(Value::String(key), value);
        Value::Mapping(map)
    });
    let at = Location {
        file,
        line: 1,
        column: 1,
    };
    let positions = PositionIndex::all_at(&value, at);
    Ok((value, positions))
}

/// The syntax error of a layer's `text`, located.
fn syntax_error(text: &str, error: &serde_yaml_ng::Error) -> ConfigError {
    let mut location = error.location().map(|l| Location {
        file: 0,
        line: l.line(),
        column: l.column(),
    });
    let mut message = strip_location(&error.to_string());
    // A second document is located by `limits::check`; this message without one means the
    // text ended its first document early (a line indented less than the first): the other
    // parser says where, and what it found.
    if location.is_none()
        && message.contains("more than one document")
        && let Some((at, found)) = position::first_syntax_error(text)
    {
        location = Some(at);
        message = format!(
            "{found} (a line is indented less than the ones before it: the keys of one mapping \
             start in the same column, top-level keys in column 1)"
        );
    }
    ConfigError {
        path: YamlPath::root(),
        location,
        kind: ConfigErrorKind::Syntax { message },
    }
}

/// The configuration `layers` make, merged and with `${env:…}` / `${file:…}` substituted: what
/// `otap-df print-config` shows (after redacting). Errors: a layer that is not YAML, a
/// reference that cannot be resolved.
pub fn effective(
    layers: &[Layer<'_>],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, ConfigErrors> {
    let (root, source, mut errors) = substituted(layers, lookup)?;
    if errors.is_empty() {
        return Ok(root);
    }
    sort_errors(&mut errors);
    Err(ConfigErrors {
        files: source.files,
        source: source.name,
        errors,
    })
}

/// The layers merged, `${…}` references substituted, and the substitution's errors located.
fn substituted(
    layers: &[Layer<'_>],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Value, Source, Vec<ConfigError>), ConfigErrors> {
    let (mut root, mut source) = merge_layers(layers)?;
    let mut errors = Vec::new();
    env::substitute(&mut root, &YamlPath::root(), lookup, &mut errors);
    source.unresolved = errors.iter().map(|e| e.path.clone()).collect();
    locate(&source, &mut errors);
    Ok((root, source, errors))
}

/// Gives every error without a location the place of its path.
fn locate(source: &Source, errors: &mut [ConfigError]) {
    for error in errors {
        if error.location.is_none() {
            error.location = source.positions.locate(&error.path);
        }
    }
}

/// `over` laid over `base`.
fn merge_values(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Mapping(mut base), Value::Mapping(over)) => {
            for (key, value) in over {
                // In place: the merged mapping keeps the first layer's order (node order is
                // document order), new keys come after.
                match base.get_mut(&key) {
                    Some(existing) => {
                        let earlier = std::mem::take(existing);
                        *existing = merge_values(earlier, value);
                    }
                    None => {
                        base.insert(key, value);
                    }
                }
            }
            Value::Mapping(base)
        }
        (_, over) => over,
    }
}

/// [`parse_partial`] for a layered configuration ([`Layer`]s, merged in order).
pub(crate) fn parse_layers_partial(
    layers: &[Layer<'_>],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Document, Vec<ConfigError>), ConfigErrors> {
    let (root, source, errors) = substituted(layers, lookup)?;
    let mut walker = document::Walker {
        source: &source,
        errors,
    };
    let (engine, extensions, groups) = walker.document(&root);
    let mut errors = walker.errors;
    locate(&source, &mut errors);
    Ok((
        Document {
            engine,
            extensions,
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
