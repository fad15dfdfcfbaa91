//! Every configuration and resolution error: the exact variant, YAML path and line, and the
//! valid choices it lists.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use otap_df_core::capability::CapabilityId;
use otap_df_core::config::{ComponentKind, ConfigError, ConfigErrorKind, ConfigErrors};
use otap_df_core::extension::ExecutionModel;
use otap_df_core::resolve::{BindingError, ResolvedConfig, WarningKind, load_with_env};
use otap_df_tests::fixtures;

fn load(text: &str) -> Result<ResolvedConfig, ConfigErrors> {
    let lookup = |name: &str| (name == "SET").then(|| "4".to_owned());
    load_with_env(text, "test.yaml", &fixtures::registry(), &lookup)
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load(text) {
        Ok(_) => panic!("expected errors, the configuration loaded"),
        Err(errors) => {
            assert_eq!(errors.source, "test.yaml");
            errors.errors
        }
    }
}

/// The only error of `text`, with its path and line.
fn single(text: &str) -> (String, usize, ConfigErrorKind) {
    let mut errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = errors.remove(0);
    let line = error.location.map(|l| l.line).unwrap_or(0);
    (error.path.to_string(), line, error.kind)
}

const HEAD: &str = "version: otap_df/v1\ngroups:\n  g:\n    pipelines:\n      p:\n";

/// A pipeline body (indented under `p:`) after the common head; line 6 is its first line.
fn pipeline(body: &str) -> String {
    format!("{HEAD}{body}")
}

/// No local extension instances.
const NO_LOCAL: &[otap_df_core::extension::LocalProvisions] = &[];

const P: &str = "groups.g.pipelines.p";

/// A receiver `in` into an exporter `out` (after the nodes a test adds above it).
const FLOW: &str = "          in: { type: receiver:probe }\n          out: { type: exporter:probe, config: { path: x } }\n        connections:\n          - { from: in, to: out }\n";

#[test]
fn valid_configuration_loads_with_its_plan() {
    let resolved = load(&pipeline(
        "        extensions:
          store: { type: 'extension:memory_kv', config: { max_entries: 10 } }
        nodes:
          in: { type: 'receiver:probe' }
          dedup:
            type: urn:otap:processor:local_kv_user
            capabilities: { key_value_store: store }
          out: { type: 'exporter:probe', config: { path: /tmp/x } }
        connections:
          - { from: in, to: dedup }
          - { from: dedup, to: [out] }
",
    ))
    .expect("valid configuration");
    assert_eq!(resolved.engine.cores, 1);
    let plan = &resolved.pipelines[0];
    assert_eq!((plan.group.as_str(), plan.name.as_str()), ("g", "p"));
    assert_eq!(plan.extensions.len(), 1);
    assert_eq!(
        plan.extensions[0].consumers,
        vec![otap_df_core::resolve::Consumer {
            pipeline: "g/p".to_owned(),
            node: "dedup".to_owned(),
            capability: CapabilityId::KeyValueStore,
            extension: false,
        }]
    );
    assert_eq!(
        plan.edges,
        vec![
            ("in".to_owned(), "dedup".to_owned()),
            ("dedup".to_owned(), "out".to_owned())
        ]
    );
    assert!(resolved.warnings.is_empty());
}

#[test]
fn syntax_error_is_located() {
    let (path, line, kind) = single("version: otap_df/v1\ngroups: [unclosed\n");
    assert_eq!(path, "<root>");
    assert_eq!(line, 3);
    assert!(matches!(kind, ConfigErrorKind::Syntax { .. }), "{kind:?}");
}

#[test]
fn a_pipeline_without_nodes_is_refused_where_its_nodes_are() {
    let (path, line, kind) = single(&pipeline("        nodes: {}\n"));
    assert_eq!((path.as_str(), line), ("groups.g.pipelines.p.nodes", 6));
    assert!(
        kind.to_string().starts_with("a pipeline needs nodes"),
        "{kind}"
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let resolved = load(&format!(
        "\u{feff}{}",
        pipeline(&format!("        nodes:\n{FLOW}"))
    ))
    .expect("valid with a BOM");
    assert_eq!(resolved.pipelines.len(), 1);
}

#[test]
fn a_configuration_without_a_pipeline_is_refused_at_its_groups() {
    let (path, line, kind) = single("version: otap_df/v1\ngroups:\n  g: { pipelines: {} }\n");
    assert_eq!((path.as_str(), line), ("groups", 2));
    assert_eq!(
        kind.to_string(),
        "the configuration has no pipeline, so the engine would have nothing to run; add one \
         under `groups.<group>.pipelines` (to stop a running engine, send it SIGTERM)"
    );
}

#[test]
fn a_first_line_indented_more_than_the_next_is_located_not_called_a_second_document() {
    let (path, line, kind) = single(" version: otap_df/v1\ngroups: {}\n");
    assert_eq!((path.as_str(), line), ("<root>", 2));
    let ConfigErrorKind::Syntax { message } = kind else {
        panic!("{kind:?}")
    };
    assert!(!message.contains("more than one document"), "{message}");
    assert!(message.contains("indented less"), "{message}");
}

#[test]
fn only_a_real_second_document_is_called_one_and_it_is_located() {
    let (path, line, kind) = single("version: otap_df/v1\ngroups: {}\n---\nmore: 1\n");
    assert_eq!((path.as_str(), line), ("<root>", 3));
    assert!(
        kind.to_string()
            .starts_with("a second YAML document starts here"),
        "{kind}"
    );
}

#[test]
fn yaml_bounds_are_checked_before_the_document_is_built() {
    // 100,000 levels of flow nesting: refused at once (the value parser alone takes minutes).
    let depth = 100_000;
    let deep = format!(
        "version: otap_df/v1\ngroups: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let (_, line, kind) = single(&deep);
    assert_eq!(line, 2);
    assert!(
        matches!(&kind, ConfigErrorKind::Limit { message } if message.contains("nest more than 64 deep")),
        "{kind:?}"
    );
    // 200 aliases of a 100 kB string: 20 MB once expanded.
    let fan_out = format!(
        "version: otap_df/v1\nx: &big \"{}\"\ngroups: [{}]\n",
        "x".repeat(100_000),
        vec!["*big"; 200].join(", ")
    );
    let (_, line, kind) = single(&fan_out);
    assert_eq!(line, 3);
    assert!(
        matches!(&kind, ConfigErrorKind::Limit { message } if message.contains("aliases expanded")),
        "{kind:?}"
    );
}

#[test]
fn a_long_error_list_prints_the_first_fifty_and_counts_the_rest() {
    let nodes: String = (0..120)
        .map(|i| format!("          n{i}: {{ type: 'receiver:nope' }}\n"))
        .collect();
    let all = load(&pipeline(&format!("        nodes:\n{nodes}"))).expect_err("120 unknown types");
    assert_eq!(all.errors.len(), 120, "the list keeps every error");
    let printed = all.to_string();
    assert!(printed.starts_with("120 errors in test.yaml"), "{printed}");
    assert_eq!(printed.matches("unknown receiver type").count(), 50);
    assert!(
        printed.ends_with("... and 70 more (the first 50 are shown; fix these and validate again)"),
        "{printed}"
    );
}

#[test]
fn unsupported_version_names_the_expected_one() {
    let (path, line, kind) = single("version: otap_df/v2\ngroups: {}\n");
    assert_eq!((path.as_str(), line), ("version", 1));
    assert_eq!(
        kind,
        ConfigErrorKind::UnsupportedVersion {
            found: "otap_df/v2".into(),
            expected: "otap_df/v1"
        }
    );
}

#[test]
fn missing_top_level_fields_are_reported() {
    let errors = errors("engine: { cores: 2 }\n");
    let kinds: Vec<_> = errors.into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ConfigErrorKind::MissingField {
                field: "version".into()
            },
            ConfigErrorKind::MissingField {
                field: "groups".into()
            },
        ]
    );
}

#[test]
fn unknown_top_level_field_suggests_the_nearest() {
    let (path, line, kind) = single("version: otap_df/v1\ngroup: {}\ngroups: {}\n");
    assert_eq!((path.as_str(), line), ("group", 2));
    assert_eq!(
        kind,
        ConfigErrorKind::UnknownField {
            field: "group".into(),
            expected: vec!["version".into(), "engine".into(), "groups".into()],
            suggestion: Some("groups".into()),
        }
    );
}

#[test]
fn unknown_engine_field_lists_the_valid_ones() {
    let (path, line, kind) = single("version: otap_df/v1\nengine:\n  core: 2\ngroups: {}\n");
    assert_eq!((path.as_str(), line), ("engine.core", 3));
    assert_eq!(
        kind,
        ConfigErrorKind::UnknownField {
            field: "core".into(),
            expected: vec!["cores".into(), "admin".into()],
            suggestion: Some("cores".into()),
        }
    );
}

#[test]
fn zero_cores_and_more_than_the_cap_are_rejected() {
    for cores in [0, 1025, 100_000] {
        let (path, line, kind) = single(&format!(
            "version: otap_df/v1\nengine:\n  cores: {cores}\ngroups: {{}}\n"
        ));
        assert_eq!((path.as_str(), line), ("engine.cores", 3));
        assert_eq!(
            kind,
            ConfigErrorKind::InvalidValue {
                message: "`cores` must be between 1 and 1024 (one thread and runtime each)".into()
            }
        );
    }
}

#[test]
fn unknown_pipeline_field_is_located() {
    let (path, line, kind) = single(&pipeline(
        "        nodes: { in: { type: 'receiver:probe' }, out: { type: 'exporter:probe', config: { path: /tmp/x } } }\n        conections: []\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.conections").as_str(), 7)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::UnknownField {
            field: "conections".into(),
            expected: vec!["extensions".into(), "nodes".into(), "connections".into()],
            suggestion: Some("connections".into()),
        }
    );
}

#[test]
fn unknown_field_in_a_node_declaration_is_located() {
    let (path, line, kind) = single(&pipeline(
        "        nodes:\n          in:\n            type: receiver:probe\n            capabilites: {}\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.nodes.in.capabilites").as_str(), 9)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::UnknownField {
            field: "capabilites".into(),
            expected: vec!["type".into(), "config".into(), "capabilities".into()],
            suggestion: Some("capabilities".into()),
        }
    );
}

#[test]
fn malformed_type_name_says_what_is_valid() {
    let (path, line, kind) = single(&pipeline("        nodes:\n          in: { type: probe }\n"));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.nodes.in.type").as_str(), 7)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::InvalidTypeName {
            value: "probe".into()
        }
    );
    assert!(
        kind.to_string()
            .contains("`urn:otap:<kind>:<name>` or `<kind>:<name>`")
    );
}

#[test]
fn node_type_under_extensions_gets_a_section_hint() {
    let (path, line, kind) = single(&pipeline(
        "        extensions:\n          in: { type: receiver:probe }\n        nodes: { in: { type: 'receiver:probe' }, out: { type: 'exporter:probe', config: { path: /tmp/x } } }\n        connections: [{ from: in, to: out }]\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.extensions.in.type").as_str(), 7)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::WrongSection {
            type_name: "receiver:probe".into(),
            kind: ComponentKind::Receiver
        }
    );
    assert_eq!(
        kind.to_string(),
        "`receiver:probe` is a receiver; declare it under `nodes:`"
    );
}

#[test]
fn extension_type_under_nodes_gets_a_section_hint() {
    let (_, line, kind) = single(&pipeline(
        "        nodes:\n          store: { type: extension:memory_kv }\n",
    ));
    assert_eq!(line, 7);
    assert_eq!(
        kind.to_string(),
        "`extension:memory_kv` is an extension; declare it under `extensions:`"
    );
}

#[test]
fn unknown_extension_type_lists_registered_ones_and_suggests() {
    let (path, line, kind) = single(&pipeline(
        "        extensions:\n          s: { type: extension:memroy_kv }\n        nodes: { in: { type: 'receiver:probe' }, out: { type: 'exporter:probe', config: { path: /tmp/x } } }\n        connections: [{ from: in, to: out }]\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.extensions.s.type").as_str(), 7)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::UnknownType {
            kind: ComponentKind::Extension,
            name: "memroy_kv".into(),
            known: vec!["fixed_token".into(), "local_kv".into(), "memory_kv".into()],
            suggestion: Some("memory_kv".into()),
        }
    );
}

#[test]
fn unknown_node_type_lists_registered_ones_of_its_kind() {
    let (path, line, kind) = single(&pipeline(
        "        nodes:\n          x: { type: processor:dedupe }\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.nodes.x.type").as_str(), 7)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::UnknownType {
            kind: ComponentKind::Processor,
            name: "dedupe".into(),
            known: vec!["local_kv_user".into(), "shared_kv_user".into()],
            suggestion: None,
        }
    );
}

#[test]
fn first_party_extension_not_compiled_in_names_its_feature() {
    let (path, line, kind) = single(&pipeline(
        "        extensions:\n          az: { type: extension:azure_auth }\n        nodes: { in: { type: 'receiver:probe' }, out: { type: 'exporter:probe', config: { path: /tmp/x } } }\n        connections: [{ from: in, to: out }]\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.extensions.az.type").as_str(), 7)
    );
    assert_eq!(
        kind.to_string(),
        "extension type `azure_auth` is not compiled in: enable cargo feature `extension-azure-auth`"
    );
}

#[test]
fn component_config_unknown_field_is_located_inside_config() {
    let (path, line, kind) = single(&pipeline(
        "        extensions:\n          s:\n            type: extension:memory_kv\n            config:\n              max_entires: 5\n        nodes: { in: { type: 'receiver:probe' }, out: { type: 'exporter:probe', config: { path: /tmp/x } } }\n        connections: [{ from: in, to: out }]\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.extensions.s.config.max_entires").as_str(), 10)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::UnknownField {
            field: "max_entires".into(),
            expected: vec![
                "max_entries".into(),
                "default_ttl".into(),
                "per_core".into()
            ],
            suggestion: Some("max_entries".into()),
        }
    );
}

#[test]
fn component_config_semantic_error_is_located_at_the_field() {
    let (path, line, kind) = single(&pipeline(
        "        extensions:\n          s:\n            type: extension:memory_kv\n            config: { max_entries: 0 }\n        nodes: { in: { type: 'receiver:probe' }, out: { type: 'exporter:probe', config: { path: /tmp/x } } }\n        connections: [{ from: in, to: out }]\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.extensions.s.config.max_entries").as_str(), 9)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::InvalidValue {
            message: "`max_entries` must be at least 1".into()
        }
    );
}

#[test]
fn node_config_missing_and_mistyped_fields() {
    let (path, line, kind) = single(&pipeline(
        "        nodes:\n          out: { type: exporter:probe }\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.nodes.out.config").as_str(), 7)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::MissingField {
            field: "path".into()
        }
    );

    let (path, line, kind) = single(&pipeline(
        "        nodes:\n          out:\n            type: exporter:probe\n            config:\n              path: /x\n              batch: lots\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.nodes.out.config.batch").as_str(), 11)
    );
    assert!(
        matches!(&kind, ConfigErrorKind::InvalidValue { message } if message.contains("expected u32")),
        "{kind:?}"
    );
}

#[test]
fn unset_environment_variable_is_named_and_located() {
    let (path, line, kind) = single(&pipeline(
        "        extensions:\n          s:\n            type: extension:memory_kv\n            config: { max_entries: '${env:UNSET_VARIABLE}' }\n        nodes: { in: { type: 'receiver:probe' }, out: { type: 'exporter:probe', config: { path: /tmp/x } } }\n        connections: [{ from: in, to: out }]\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.extensions.s.config.max_entries").as_str(), 9)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::UnsetEnvVar {
            name: "UNSET_VARIABLE".into()
        }
    );
}

#[test]
fn environment_variable_substitutes_a_typed_value() {
    let resolved = load(&pipeline(
        "        extensions:\n          s: { type: extension:memory_kv, config: { max_entries: '${env:SET}' } }\n        nodes:\n          d: { type: processor:local_kv_user, capabilities: { key_value_store: s } }\n          in: { type: receiver:probe }\n          out: { type: exporter:probe, config: { path: x } }\n        connections:\n          - { from: in, to: d }\n          - { from: d, to: out }\n",
    ))
    .expect("SET=4 is a number");
    assert_eq!(
        resolved.pipelines[0].extensions[0].config["max_entries"],
        serde_yaml_ng::Value::from(4)
    );
}

#[test]
fn connection_to_an_unknown_node_suggests_the_nearest() {
    let (path, line, kind) = single(&pipeline(
        "        nodes:\n          input: { type: receiver:probe }\n          out: { type: exporter:probe, config: { path: x } }\n        connections:\n          - { from: inptu, to: out }\n",
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.connections[0].from").as_str(), 10)
    );
    assert_eq!(
        kind,
        ConfigErrorKind::UnknownNode {
            name: "inptu".into(),
            known: vec!["input".into(), "out".into()],
            suggestion: Some("input".into()),
        }
    );
}

#[test]
fn connections_against_the_data_flow_are_rejected() {
    let errors = errors(&pipeline(
        "        nodes:\n          in: { type: receiver:probe }\n          out: { type: exporter:probe, config: { path: x } }\n        connections:\n          - { from: out, to: in }\n",
    ));
    let reasons: Vec<String> = errors.iter().map(|e| e.kind.to_string()).collect();
    assert_eq!(
        reasons,
        vec![
            "invalid connection from `out` to `in`: `out` is an exporter, and exporters have no output"
        ]
    );
    assert_eq!(errors[0].location.map(|l| l.line), Some(10));
}

#[test]
fn a_receiver_that_reaches_no_exporter_is_refused_where_it_is_declared() {
    let (path, line, kind) = single(&pipeline(
        "        nodes:\n          in: { type: receiver:probe }\n          out: { type: exporter:probe, config: { path: x } }\n",
    ));
    assert_eq!((path.as_str(), line), (format!("{P}.nodes.in").as_str(), 7));
    assert_eq!(
        kind,
        ConfigErrorKind::NoExporterReached {
            node: "in".into(),
            kind: ComponentKind::Receiver,
            exporters: vec!["out".into()],
        }
    );
    assert_eq!(
        kind.to_string(),
        "receiver `in` reaches no exporter, so nothing it takes could be delivered; connect it, \
         for example `connections: [{ from: in, to: out }]` (exporters of this pipeline: `out`)"
    );
}

#[test]
fn a_pipeline_without_an_exporter_says_to_add_one() {
    let (path, _, kind) = single(&pipeline(
        "        nodes:\n          in: { type: receiver:probe }\n",
    ));
    assert_eq!(path, format!("{P}.nodes.in"));
    assert_eq!(
        kind.to_string(),
        "receiver `in` reaches no exporter, so nothing it takes could be delivered; the \
         pipeline has no exporter: add one and connect it"
    );
}

#[test]
fn a_node_that_no_receiver_feeds_is_a_warning_and_the_pipeline_loads() {
    let resolved = load(&pipeline(
        "        nodes:\n          in: { type: receiver:probe }\n          out: { type: exporter:probe, config: { path: x } }\n          spare: { type: exporter:probe, config: { path: y } }\n        connections:\n          - { from: in, to: out }\n",
    ))
    .expect("valid");
    let warnings: Vec<(String, Option<usize>, WarningKind)> = resolved
        .warnings
        .iter()
        .map(|w| {
            (
                w.path.to_string(),
                w.location.map(|l| l.line),
                w.kind.clone(),
            )
        })
        .collect();
    assert_eq!(
        warnings,
        vec![(
            format!("{P}.nodes.spare"),
            Some(9),
            WarningKind::NoInput {
                node: "spare".into(),
                kind: ComponentKind::Exporter
            }
        )]
    );
}

#[test]
fn a_graph_with_a_wrong_connection_gets_only_that_error() {
    let errors = errors(&pipeline(
        "        nodes:\n          in: { type: receiver:probe }\n          out: { type: exporter:probe, config: { path: x } }\n        connections:\n          - { from: in, to: otu }\n",
    ));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(matches!(
        errors[0].kind,
        ConfigErrorKind::UnknownNode { .. }
    ));
}

fn binding_error(body: &str) -> (String, usize, BindingError) {
    let (path, line, kind) = single(&pipeline(body));
    match kind {
        ConfigErrorKind::Binding(error) => (path, line, error),
        other => panic!("expected a binding error, got {other:?}"),
    }
}

const STORE: &str =
    "        extensions:\n          store: { type: extension:memory_kv }\n        nodes:\n";

#[test]
fn binding_check_1_unknown_extension_lists_declared_ones() {
    let (path, line, error) = binding_error(&format!(
        "{STORE}          d: {{ type: processor:local_kv_user, capabilities: {{ key_value_store: stroe }} }}\n"
    ));
    assert_eq!(
        (path.as_str(), line),
        (
            format!("{P}.nodes.d.capabilities.key_value_store").as_str(),
            9
        )
    );
    assert_eq!(
        error,
        BindingError::UnknownExtension {
            node: "d".into(),
            capability: "key_value_store".into(),
            extension: "stroe".into(),
            known: vec!["store".into()],
            suggestion: Some("store".into()),
        }
    );
}

#[test]
fn binding_check_2_unknown_capability_lists_known_ones() {
    let (path, line, error) = binding_error(&format!(
        "{STORE}          d:\n            type: processor:local_kv_user\n            capabilities:\n              key_value_store: store\n              kv_store: store\n"
    ));
    assert_eq!(
        (path.as_str(), line),
        (format!("{P}.nodes.d.capabilities.kv_store").as_str(), 13)
    );
    assert_eq!(
        error,
        BindingError::UnknownCapability {
            node: "d".into(),
            capability: "kv_store".into(),
            known: vec![
                "bearer_token_provider".into(),
                "bearer_token_authorizer".into(),
                "key_value_store".into(),
                "durable_queue".into()
            ],
            suggestion: None,
        }
    );
}

#[test]
fn binding_check_3_extension_must_provide_the_capability() {
    let (path, line, error) = binding_error(&format!(
        "{STORE}          out: {{ type: exporter:probe, config: {{ path: x }}, capabilities: {{ bearer_token_provider: store }} }}\n"
    ));
    assert_eq!(
        (path.as_str(), line),
        (
            format!("{P}.nodes.out.capabilities.bearer_token_provider").as_str(),
            9
        )
    );
    assert_eq!(
        error,
        BindingError::NotProvided {
            node: "out".into(),
            capability: CapabilityId::BearerTokenProvider,
            extension: "store".into(),
            extension_type: "memory_kv".into(),
            provided: vec!["key_value_store".into()],
        }
    );
}

#[test]
fn binding_check_4_node_must_accept_the_capability() {
    let (path, line, error) = binding_error(&format!(
        "{STORE}          in: {{ type: receiver:probe, capabilities: {{ key_value_store: store }} }}\n"
    ));
    assert_eq!(
        (path.as_str(), line),
        (
            format!("{P}.nodes.in.capabilities.key_value_store").as_str(),
            9
        )
    );
    assert_eq!(
        error,
        BindingError::NotAccepted {
            node: "in".into(),
            node_type: "receiver:probe".into(),
            capability: CapabilityId::KeyValueStore,
            accepted: vec!["bearer_token_authorizer".into()],
        }
    );
}

#[test]
fn binding_check_5_local_only_extension_cannot_serve_a_shared_node() {
    let (path, line, error) = binding_error(
        "        extensions:\n          local: { type: extension:local_kv }\n        nodes:\n          d: { type: processor:shared_kv_user, capabilities: { key_value_store: local } }\n",
    );
    assert_eq!(
        (path.as_str(), line),
        (
            format!("{P}.nodes.d.capabilities.key_value_store").as_str(),
            9
        )
    );
    assert_eq!(
        error,
        BindingError::ExecutionModelMismatch {
            node: "d".into(),
            capability: CapabilityId::KeyValueStore,
            extension: "local".into(),
            extension_type: "local_kv".into(),
        }
    );
}

#[test]
fn checks_run_in_order_and_report_only_the_first_failure() {
    // Unknown extension AND unknown capability: check 1 wins.
    let (_, _, error) = binding_error(&format!(
        "{STORE}          in: {{ type: receiver:probe, capabilities: {{ kv: nowhere }} }}\n"
    ));
    assert!(
        matches!(error, BindingError::UnknownExtension { .. }),
        "{error:?}"
    );
}

#[test]
fn missing_required_capability_lists_candidates() {
    let (path, line, error) = binding_error(&format!(
        "{STORE}          d: {{ type: processor:local_kv_user }}\n"
    ));
    assert_eq!((path.as_str(), line), (format!("{P}.nodes.d").as_str(), 9));
    assert_eq!(
        error,
        BindingError::MissingRequired {
            node: "d".into(),
            node_type: "processor:local_kv_user".into(),
            capability: CapabilityId::KeyValueStore,
            candidates: vec!["store".into()],
        }
    );
}

#[test]
fn unbound_extension_is_reported_and_left_out_of_the_plan() {
    let resolved = load(&pipeline(&format!("{STORE}{FLOW}"))).expect("valid");
    assert!(resolved.pipelines[0].extensions.is_empty());
    assert_eq!(resolved.warnings.len(), 1);
    assert_eq!(
        resolved.warnings[0].kind,
        WarningKind::UnboundExtension {
            extension: "store".into()
        }
    );
    assert_eq!(resolved.warnings[0].location.map(|l| l.line), Some(7));
}

#[test]
fn independent_errors_are_reported_together_in_document_order() {
    let errors = errors(&pipeline(
        "        extensions:
          s: { type: extension:memory_kv, config: { max_entries: -1 } }
          t: { type: extension:nope }
        nodes:
          in: { type: receiver:probe, capabilities: { bearer_token_authorizer: t } }
          d: { type: processor:local_kv_user }
          out: { type: exporter:probe, config: { path: x, extra: 1 } }
        connections:
          - { from: in, to: missing }
",
    ));
    let summary: Vec<(usize, String)> = errors
        .iter()
        .map(|e| (e.location.map(|l| l.line).unwrap_or(0), e.path.to_string()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (7, format!("{P}.extensions.s.config.max_entries")),
            (8, format!("{P}.extensions.t.type")),
            (11, format!("{P}.nodes.d")),
            (12, format!("{P}.nodes.out.config.extra")),
            (14, format!("{P}.connections[0].to")),
        ],
        "the binding to the broken extension `t` is not reported twice: {errors:#?}"
    );
}

#[test]
fn error_report_names_the_file_line_and_path() {
    let report = load(&pipeline(
        "        nodes:\n          in: { type: receiver:nope }\n",
    ))
    .expect_err("unknown type")
    .to_string();
    assert_eq!(
        report,
        "1 error in test.yaml\n  test.yaml:7:17: at `groups.g.pipelines.p.nodes.in.type`: unknown receiver \
         type `nope`; registered receiver types: `probe` (a type from a crate that registers \
         itself is known only when the binary links that crate: `use the_crate as _;`)"
    );
}

#[test]
fn secrets_never_appear_in_error_output() {
    for config in [
        "{ token: hunter2-secret, tokn: x }",
        "{ token: [hunter2-secret] }",
        "{ token: { nested: hunter2-secret } }",
    ] {
        let text = pipeline(&format!(
            "        extensions:\n          t: {{ type: extension:fixed_token, config: {config} }}\n        nodes:\n          in: {{ type: receiver:probe, capabilities: {{ bearer_token_authorizer: t }} }}\n"
        ));
        let errors = load(&text).expect_err("invalid token config");
        assert_eq!(errors.errors.len(), 1, "{errors}");
        assert!(
            !errors.to_string().contains("hunter2"),
            "Display leaks: {errors}"
        );
        assert!(
            !format!("{errors:?}").contains("hunter2"),
            "Debug leaks: {errors:?}"
        );
    }
}

#[test]
fn a_numeric_secret_is_accepted_rather_than_echoed_in_a_type_error() {
    let text = pipeline(
        "        extensions:\n          t: { type: extension:fixed_token, config: { token: 987654321 } }\n        nodes:\n          in: { type: receiver:probe, capabilities: { bearer_token_authorizer: t } }\n          out: { type: exporter:probe, config: { path: x } }\n        connections:\n          - { from: in, to: out }\n",
    );
    let resolved = load(&text).expect("a numeric token is a token");
    let plan = &resolved.pipelines[0];
    let shared = plan
        .create_shared_extensions(&resolved.source, &[])
        .expect("created");
    let mut caps = otap_df_core::extension::Capabilities::for_node(
        &plan.nodes[0].id,
        &plan.nodes[0].bindings,
        NO_LOCAL,
        &shared,
    );
    let authorizer = caps
        .require_shared::<otap_df_core::capability::BearerTokenAuthorizer>()
        .expect("authorizer");
    assert!(matches!(
        authorizer.authorize(otap_df_core::secret::Credential::new("987654321")),
        Ok(otap_df_core::capability::AuthzDecision::Allow { .. })
    ));
}

/// The only error of `text` under the recording registry (whose extensions bind others).
fn single_recording(text: &str) -> (String, usize, String) {
    let registry = otap_df_tests::recording::registry();
    let errors = match load_with_env(text, "test.yaml", &registry, &|_| None) {
        Ok(_) => panic!("expected errors, the configuration loaded"),
        Err(errors) => errors.errors,
    };
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = &errors[0];
    let line = error.location.map(|l| l.line).unwrap_or(0);
    (error.path.to_string(), line, error.kind.to_string())
}

/// A pipeline whose extensions are `extensions` (indented under `extensions:`) and whose
/// source binds `front`'s key/value store.
fn binding_extensions(extensions: &str) -> String {
    pipeline(&format!(
        "        extensions:\n{extensions}        nodes:\n          in: {{ type: receiver:recording_source, config: {{ log: x, count: 1 }}, capabilities: {{ key_value_store: front }} }}\n          out: {{ type: exporter:recording_sink, config: {{ log: x }} }}\n        connections:\n          - {{ from: in, to: out }}\n"
    ))
}

const READY: &str = "config: { log: x, behaviour: ready }";

#[test]
fn extensions_that_bind_each_other_in_a_cycle_are_refused_where_the_cycle_closes() {
    let text = binding_extensions(&format!(
        "          front: {{ type: extension:local_recorder, {READY}, capabilities: {{ key_value_store: back }} }}\n          back: {{ type: extension:local_recorder, {READY}, capabilities: {{ key_value_store: front }} }}\n"
    ));
    assert_eq!(
        single_recording(&text),
        (
            format!("{P}.extensions.front.capabilities.key_value_store"),
            7,
            "extension `front` binds extension `back`, which binds `front` in turn (directly or through others): extensions cannot bind each other in a cycle".to_owned()
        )
    );
}

#[test]
fn an_extension_that_binds_itself_is_refused() {
    let text = binding_extensions(&format!(
        "          front: {{ type: extension:local_recorder, {READY}, capabilities: {{ key_value_store: front }} }}\n"
    ));
    assert_eq!(
        single_recording(&text),
        (
            format!("{P}.extensions.front.capabilities.key_value_store"),
            7,
            "extension `front` binds itself; bind another extension's `key_value_store`".to_owned()
        )
    );
}

#[test]
fn an_extension_binding_an_undeclared_extension_gets_the_declared_ids_and_a_suggestion() {
    let text = binding_extensions(&format!(
        "          front: {{ type: extension:local_recorder, {READY}, capabilities: {{ key_value_store: bak }} }}\n          back: {{ type: extension:local_recorder, {READY} }}\n"
    ));
    assert_eq!(
        single_recording(&text),
        (
            format!("{P}.extensions.front.capabilities.key_value_store"),
            7,
            "extension `front` binds `key_value_store` to extension `bak`, which neither this pipeline, its group nor the engine declares; declared extensions: back; did you mean `back`?".to_owned()
        )
    );
}

#[test]
fn an_extension_binding_what_its_type_does_not_use_is_refused_with_what_it_uses() {
    let text = binding_extensions(&format!(
        "          front: {{ type: extension:local_recorder, {READY}, capabilities: {{ bearer_token_provider: back }} }}\n          back: {{ type: extension:recorder, {READY} }}\n          mem: {{ type: extension:memory_kv, capabilities: {{ key_value_store: back }} }}\n"
    ));
    let registry = otap_df_tests::recording::registry();
    let errors = load_with_env(&text, "test.yaml", &registry, &|_| None)
        .expect_err("two bindings are wrong")
        .errors;
    let found: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.path.to_string(), e.kind.to_string()))
        .collect();
    assert_eq!(
        found,
        [
            (
                format!("{P}.extensions.front.capabilities.bearer_token_provider"),
                "extension `front` (extension:local_recorder) does not use `bearer_token_provider`; it uses: key_value_store".to_owned()
            ),
            (
                format!("{P}.extensions.mem.capabilities.key_value_store"),
                "extension `mem` (extension:memory_kv) does not use `key_value_store`; it binds no other extension's capabilities".to_owned()
            ),
        ]
    );
}

#[test]
fn an_extension_of_a_group_cannot_bind_capabilities() {
    let text = format!(
        "version: otap_df/v1\ngroups:\n  g:\n    extensions:\n      back: {{ type: extension:recorder, {READY} }}\n      front: {{ type: extension:recorder, {READY}, capabilities: {{ key_value_store: back }} }}\n    pipelines:\n      p:\n        nodes:\n          in: {{ type: receiver:recording_source, config: {{ log: x, count: 1 }}, capabilities: {{ key_value_store: back }} }}\n          out: {{ type: exporter:recording_sink, config: {{ log: x }} }}\n        connections:\n          - {{ from: in, to: out }}\n"
    );
    assert_eq!(
        single_recording(&text),
        (
            "groups.g.extensions.front.capabilities".to_owned(),
            6,
            "extension `front` of group `g` binds capabilities, and only an extension of a pipeline (its `extensions:`) can bind another extension's capabilities; declare it in the pipeline that uses it".to_owned()
        )
    );
}

#[test]
fn a_shared_extension_cannot_bind_a_local_only_one() {
    let text = binding_extensions(&format!(
        "          front: {{ type: extension:recorder, {READY}, capabilities: {{ key_value_store: back }} }}\n          back: {{ type: extension:local_kv }}\n"
    ));
    assert_eq!(
        single_recording(&text),
        (
            format!("{P}.extensions.back.type"),
            8,
            "extension `back` (extension:local_kv) is local-only, but extension `front`, which binds its `key_value_store`, runs shared (a shared node binds it); bind an extension type with a shared variant".to_owned()
        )
    );
}

#[test]
fn a_local_extension_binding_a_shared_one_resolves_and_each_side_records_the_other() {
    let text = binding_extensions(&format!(
        "          front: {{ type: extension:local_recorder, {READY}, capabilities: {{ key_value_store: back }} }}\n          back: {{ type: extension:recorder, {READY} }}\n"
    ));
    let registry = otap_df_tests::recording::registry();
    let resolved = load_with_env(&text, "test.yaml", &registry, &|_| None).expect("valid");
    let plan = &resolved.pipelines[0];
    type Summary<'a> = (&'a str, ExecutionModel, Vec<(String, bool)>);
    let summary: Vec<Summary<'_>> = plan
        .extensions
        .iter()
        .map(|e| {
            let consumers = e
                .consumers
                .iter()
                .map(|c| (c.node.clone(), c.extension))
                .collect();
            (e.id.as_str(), e.execution, consumers)
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "back",
                ExecutionModel::Shared,
                vec![("front".to_owned(), true)]
            ),
            (
                "front",
                ExecutionModel::Local,
                vec![("in".to_owned(), false)]
            ),
        ]
    );
    assert_eq!(
        plan.extensions[1].bindings,
        [otap_df_core::capability::Binding {
            capability: CapabilityId::KeyValueStore,
            extension: "back".to_owned()
        }]
    );
}
