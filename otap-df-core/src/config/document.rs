//! The document walk: each section of the YAML value decoded into the configuration types,
//! every problem recorded as a located error and the walk carried on, so that independent
//! errors are reported together.

use serde_yaml_ng::{Mapping, Value};

use super::*;

pub(super) struct Walker<'s> {
    pub(super) source: &'s Source,
    pub(super) errors: Vec<ConfigError>,
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

    pub(super) fn document(
        &mut self,
        root: &Value,
    ) -> (EngineConfig, ScopeExtensions, Vec<GroupConfig>) {
        let path = YamlPath::root();
        let mut engine = EngineConfig::default();
        let mut extensions = ScopeExtensions::default();
        let mut groups = Vec::new();
        let mut groups_path = None;
        let Some(map) = self.mapping(root, &path, "a mapping with `version` and `groups`") else {
            return (engine, extensions, groups);
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
                    let (parsed, declared) = self.engine(value, &path);
                    extensions = declared;
                    if let Some(parsed) = parsed {
                        engine = parsed;
                    }
                }
                _ => {
                    groups = self.groups(value, &path);
                    groups_path = Some(path);
                }
            }
        }
        // An engine without a pipeline has nothing to run, and a reload to it would stop
        // everything that runs. Said only of an otherwise right document: one being written
        // gets its other errors first.
        if let Some(path) = groups_path
            && self.errors.is_empty()
            && groups.iter().all(|g| g.pipelines.is_empty())
        {
            self.error(
                &path,
                ConfigErrorKind::InvalidValue {
                    message: "the configuration has no pipeline, so the engine would have \
                              nothing to run; add one under `groups.<group>.pipelines` (to stop \
                              a running engine, send it SIGTERM)"
                        .to_owned(),
                },
            );
        }
        (engine, extensions, groups)
    }

    /// `engine:`: its settings, range-checked, and its extensions (walked like a pipeline's);
    /// the admin endpoint's bindings are read like a node's. No settings where they do not
    /// decode (reported); the extensions are checked either way.
    fn engine(
        &mut self,
        value: &Value,
        path: &YamlPath,
    ) -> (Option<EngineConfig>, ScopeExtensions) {
        let mut value = value.clone();
        let mut extensions = ScopeExtensions::default();
        if let Value::Mapping(map) = &mut value
            && let Some(declared) = map.remove("extensions")
        {
            extensions = self.extensions(&declared, &path.key("extensions"));
        }
        let admin_path = path.key("admin");
        let admin_bindings = match value.get_mut("admin") {
            Some(Value::Mapping(admin)) => admin
                .remove("capabilities")
                .map(|bound| self.bindings(&bound, &admin_path.key("capabilities")))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let Some(mut parsed) = self.decode::<EngineConfig>(&value, path) else {
            return (None, extensions);
        };
        if let Some(admin) = &mut parsed.admin {
            admin.capabilities = admin_bindings;
            if let Some((field, message)) = admin.out_of_range() {
                self.error(
                    &admin_path.key(field),
                    ConfigErrorKind::InvalidValue { message },
                );
            }
        }
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
        (Some(parsed), extensions)
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
            let mut extensions = ScopeExtensions::default();
            for (key, value) in self.fields(
                group_map,
                &group_path,
                &["extensions", "pipelines"],
                &["pipelines"],
            ) {
                if key == "extensions" {
                    extensions = self.extensions(value, &group_path.key(key));
                    continue;
                }
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
                extensions,
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
            extensions: ScopeExtensions::default(),
            nodes: Vec::new(),
            connections: Vec::new(),
            invalid_node_ids: Vec::new(),
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
                "extensions" => pipeline.extensions = self.extensions(value, &section),
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

    /// One scope's `extensions:` section.
    fn extensions(&mut self, value: &Value, path: &YamlPath) -> ScopeExtensions {
        let mut extensions = ScopeExtensions::default();
        if value.is_null() {
            return extensions;
        }
        let Some(map) = self.mapping(value, path, "a mapping of extension ids to extensions")
        else {
            return extensions;
        };
        for (id, entry) in self.entries(map, path) {
            let entry_path = path.key(id);
            let declared = self
                .decode::<RawExtension>(entry, &entry_path)
                .and_then(|raw| {
                    let urn = self.component_type(&raw.type_name, &entry_path, true)?;
                    let capabilities =
                        self.bindings(&raw.capabilities, &entry_path.key("capabilities"));
                    Some(ExtensionDecl {
                        id: id.to_owned(),
                        urn,
                        config: empty_if_null(raw.config),
                        startup_timeout: raw.startup_timeout,
                        capabilities,
                        path: entry_path,
                    })
                });
            match declared {
                Some(decl) => extensions.declared.push(decl),
                None => extensions.invalid_ids.push(id.to_owned()),
            }
        }
        extensions
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
                None => pipeline.invalid_node_ids.push(id.to_owned()),
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
