//! The facade's registry holds exactly core's built-ins plus the enabled features' extensions.
//! Run with other features (`cargo test -p otap-df --no-default-features`) to check the others.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use otap_df::FIRST_PARTY_EXTENSIONS;
use otap_df::core::config::ComponentKind;

#[test]
fn registry_holds_the_builtins_and_exactly_the_enabled_extensions_and_declares_the_others() {
    let registry = otap_df::registry().expect("consistent registry");
    let mut registered: Vec<&str> = registry.extensions().map(|f| f.name()).collect();
    registered.sort_unstable();
    // Written out per feature, not derived from the facade's own table.
    let enabled = [
        ("azure_auth", cfg!(feature = "extension-azure-auth")),
        ("bearer_auth", cfg!(feature = "extension-bearer-auth")),
        ("disk_kv", cfg!(feature = "extension-disk-kv")),
        ("disk_queue", cfg!(feature = "extension-disk-queue")),
        ("oauth2_client", cfg!(feature = "extension-oauth2")),
        ("oidc_auth", cfg!(feature = "extension-oauth2")),
        ("redis_kv", cfg!(feature = "extension-redis-kv")),
        ("wasm", cfg!(feature = "extension-wasm")),
    ];
    let mut expected: Vec<&str> = enabled
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .chain(["memory_kv"])
        .collect();
    expected.sort_unstable();
    assert_eq!(registered, expected);
    let left_out: Vec<(ComponentKind, &str, &str)> = registry.not_compiled_in().collect();
    let expected_left_out: Vec<(ComponentKind, &str, &str)> = FIRST_PARTY_EXTENSIONS
        .iter()
        .zip(enabled)
        .filter(|(_, (_, on))| !on)
        .map(|(e, _)| (ComponentKind::Extension, e.name, e.feature))
        .collect();
    assert_eq!(left_out, expected_left_out);
    let nodes: Vec<String> = registry
        .nodes()
        .map(|f| format!("{}:{}", f.kind(), f.name()))
        .collect();
    assert_eq!(
        nodes,
        vec![
            "receiver:generator",
            "receiver:otlp",
            "receiver:otlp_grpc",
            "receiver:otlp_http",
            "processor:dedup",
            "processor:identity_filter",
            "exporter:debug",
            "exporter:file",
            "exporter:noop",
            "exporter:otlp_grpc",
            "exporter:otlp_http"
        ]
    );
}
