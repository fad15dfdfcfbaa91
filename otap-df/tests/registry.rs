//! The facade's registry holds exactly core's built-ins plus the enabled features' extensions.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use otap_df::FIRST_PARTY_EXTENSIONS;
use otap_df::core::config::ComponentKind;

#[test]
fn registry_holds_the_builtins_and_declares_every_first_party_extension_left_out() {
    let registry = otap_df::registry().expect("consistent registry");
    let registered: Vec<&str> = registry.extensions().map(|f| f.name()).collect();
    // No extension feature exists yet: only core's built-ins are registered.
    assert_eq!(registered, vec!["memory_kv"]);
    let left_out: Vec<(ComponentKind, &str, &str)> = registry.not_compiled_in().collect();
    let expected: Vec<(ComponentKind, &str, &str)> = FIRST_PARTY_EXTENSIONS
        .iter()
        .map(|e| (ComponentKind::Extension, e.name, e.feature))
        .collect();
    assert_eq!(left_out, expected);
    let nodes: Vec<String> = registry
        .nodes()
        .map(|f| format!("{}:{}", f.kind(), f.name()))
        .collect();
    assert_eq!(
        nodes,
        vec![
            "receiver:generator",
            "processor:dedup",
            "exporter:debug",
            "exporter:file",
            "exporter:noop"
        ]
    );
}
