//! The config loader never panics: arbitrary bytes, arbitrary YAML documents, and documents
//! shaped like configurations (where the deeper checks run) all give `Ok` or errors.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use otap_df_core::resolve::load_with_env;
use otap_df_tests::fixtures;
use proptest::prelude::*;
use serde_yaml_ng::{Mapping, Value};

fn load(text: &str) {
    let registry = fixtures::registry();
    let lookup = |name: &str| name.len().is_multiple_of(2).then(|| "7".to_owned());
    match load_with_env(text, "fuzz.yaml", &registry, &lookup) {
        Ok(resolved) => {
            let _ = resolved.warnings.len();
        }
        Err(errors) => {
            assert!(
                !errors.errors.is_empty(),
                "an Err carries at least one error"
            );
            let _ = errors.to_string();
        }
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z_:${}.]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "otap_df/v1",
            "extension:memory_kv",
            "receiver:probe",
            "processor:local_kv_user",
            "processor:shared_kv_user",
            "exporter:probe",
            "extension:fixed_token",
            "extension:local_kv",
            "urn:otap:extension:azure_auth",
            "${env:AB}",
            "${env:A}",
            "key_value_store",
            "bearer_token_provider",
            "store",
            "in",
            "out",
        ])
        .prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "version",
        "engine",
        "cores",
        "groups",
        "g",
        "pipelines",
        "p",
        "extensions",
        "nodes",
        "connections",
        "type",
        "config",
        "capabilities",
        "from",
        "to",
        "store",
        "in",
        "out",
        "key_value_store",
        "bearer_token_provider",
        "bearer_token_authorizer",
        "max_entries",
        "default_ttl",
        "path",
        "startup_timeout",
        "x",
    ])
    .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..6).prop_map(|entries| {
                let mut map = Mapping::new();
                for (k, v) in entries {
                    map.insert(Value::String(k), v);
                }
                Value::Mapping(map)
            }),
        ]
    })
}

fn config_shaped() -> impl Strategy<Value = String> {
    (value(), value(), value(), value()).prop_map(|(extensions, nodes, connections, engine)| {
        let mut pipeline = Mapping::new();
        pipeline.insert("extensions".into(), extensions);
        pipeline.insert("nodes".into(), nodes);
        pipeline.insert("connections".into(), connections);
        let mut pipelines = Mapping::new();
        pipelines.insert("p".into(), Value::Mapping(pipeline));
        let mut group = Mapping::new();
        group.insert("pipelines".into(), Value::Mapping(pipelines));
        let mut groups = Mapping::new();
        groups.insert("g".into(), Value::Mapping(group));
        let mut root = Mapping::new();
        root.insert("version".into(), "otap_df/v1".into());
        root.insert("engine".into(), engine);
        root.insert("groups".into(), Value::Mapping(groups));
        serde_yaml_ng::to_string(&Value::Mapping(root)).unwrap_or_default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_yaml_documents_never_panic(document in value()) {
        load(&serde_yaml_ng::to_string(&document).unwrap_or_default());
    }

    #[test]
    fn config_shaped_documents_never_panic(text in config_shaped()) {
        load(&text);
    }
}
