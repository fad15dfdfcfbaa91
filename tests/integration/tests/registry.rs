//! Registration: explicit and through `linkme`, sorted, idempotent for one factory, an error
//! naming both crates for two factories under one name.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use otap_df_core::capability::CapabilityId;
use otap_df_core::config::ComponentKind;
use otap_df_core::extension::ExtensionFactory;
use otap_df_core::node::NodeFactory;
use otap_df_core::registry::{DuplicateRegistration, Registry};
use otap_df_tests::fixtures;

static LINKED: ExtensionFactory = ExtensionFactory::new("linked_ext", "linked-crate")
    .provides(&[CapabilityId::KeyValueStore])
    .local(|context, _| Err(context.error("not constructed in this test")))
    .build();
otap_df_core::submit_extension!(LINKED);

static LINKED_NODE: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "linked_sink", "linked-crate");
otap_df_core::submit_node!(LINKED_NODE);

static IMPOSTOR: ExtensionFactory = ExtensionFactory::new("memory_kv", "impostor-crate")
    .provides(&[CapabilityId::KeyValueStore])
    .local(|context, _| Err(context.error("never built")))
    .build();

#[test]
fn linked_factories_are_picked_up_without_explicit_registration() {
    let mut registry = Registry::new();
    registry.register_linked();
    let registry = registry.finish().expect("no duplicates");
    assert_eq!(
        registry.extension("linked_ext").map(|f| f.registrant()),
        Some("linked-crate")
    );
    assert!(
        registry
            .node(ComponentKind::Exporter, "linked_sink")
            .is_some()
    );
}

#[test]
fn registering_the_same_factory_twice_is_harmless() {
    let mut registry = Registry::new();
    registry.register_extension(&LINKED);
    registry.register_linked();
    registry.register_extension(&LINKED);
    let registry = registry
        .finish()
        .expect("the same static twice is not a duplicate");
    assert_eq!(registry.names(ComponentKind::Extension), vec!["linked_ext"]);
}

#[test]
fn two_factories_under_one_name_are_an_error_naming_both_crates() {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    registry.register_extension(&IMPOSTOR);
    let error = registry.finish().expect_err("duplicate name");
    assert_eq!(
        error.duplicates,
        vec![DuplicateRegistration {
            kind: ComponentKind::Extension,
            name: "memory_kv".into(),
            first: "otap-df-core".into(),
            second: "impostor-crate".into(),
        }]
    );
    assert_eq!(
        error.to_string(),
        "extension type `memory_kv` is registered twice: by crate `otap-df-core` and by crate \
         `impostor-crate`; remove one of them or rename its type"
    );
}

#[test]
fn entries_are_listed_sorted_by_name_whatever_the_registration_order() {
    let registry = fixtures::registry();
    let names: Vec<&str> = registry.extensions().map(|f| f.name()).collect();
    assert_eq!(names, vec!["fixed_token", "local_kv", "memory_kv"]);
    assert_eq!(
        registry.names(ComponentKind::Processor),
        vec!["local_kv_user", "shared_kv_user"]
    );
}
