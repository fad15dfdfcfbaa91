//! Handing capabilities to nodes: claims, variants, the shared-as-local adapter, and the
//! checks an extension's build makes against its factory.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::rc::Rc;
use std::sync::Arc;

use otap_df_core::capability::{
    AuthzDecision, BearerTokenAuthorizer, BearerTokenProvider, CapabilityId, DenyReason, Identity,
    KeyValueStore, local, shared,
};
use otap_df_core::extension::{Capabilities, CapabilityError};
use otap_df_core::extension::{
    ExecutionModel, ExtensionBuildError, ExtensionContext, ExtensionFactory, LifecycleKind,
};
use otap_df_core::memory_kv::{LocalMemoryKv, MemoryKvConfig};
use otap_df_core::resolve::{ResolvedConfig, load_with_env};
use otap_df_core::secret::Credential;
use otap_df_tests::fixtures;

/// A pipeline of `nodes` (one `id: {...}` per line), each connected so that data can flow
/// through it: from a receiver `src` into every processor and exporter, and from every
/// receiver and processor into an exporter `sink` (both declared after `nodes`).
fn resolve(nodes: &str) -> ResolvedConfig {
    let mut connections = String::new();
    for line in nodes.lines() {
        let (id, rest) = line.trim().split_once(':').expect("`id: {...}`");
        if !rest.contains("type: receiver:") {
            connections.push_str(&format!("          - {{ from: src, to: {id} }}\n"));
        }
        if !rest.contains("type: exporter:") {
            connections.push_str(&format!("          - {{ from: {id}, to: sink }}\n"));
        }
    }
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          store: {{ type: extension:memory_kv, config: {{ per_core: true }} }}
          one_store: {{ type: extension:memory_kv }}
          local_store: {{ type: extension:local_kv }}
          token: {{ type: extension:fixed_token }}
        nodes:
{nodes}          src: {{ type: receiver:probe }}
          sink: {{ type: exporter:probe, config: {{ path: x }} }}
        connections:
{connections}"
    );
    load_with_env(&text, "test.yaml", &fixtures::registry(), &|_| None)
        .expect("valid configuration")
}

/// Instantiates the pipeline's extensions (core 0) and returns the capabilities of `node`.
fn capabilities(resolved: &ResolvedConfig, node: &str) -> Capabilities {
    let plan = &resolved.pipelines[0];
    let shared = plan
        .create_shared_extensions(&resolved.source, &[])
        .expect("shared extensions");
    let local = plan
        .create_local_extensions(0, &resolved.source, &[])
        .expect("local extensions");
    let node = plan
        .nodes
        .iter()
        .find(|n| n.id == node)
        .expect("node in plan");
    Capabilities::for_node(&node.id, &node.bindings, &local, &shared)
}

/// No shared extension instances.
const NO_SHARED: &[otap_df_core::extension::SharedProvisions] = &[];

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn local_consumers_get_the_local_variant_of_a_dual_extension() {
    let resolved = resolve(
        "          d: { type: processor:local_kv_user, capabilities: { key_value_store: store } }\n",
    );
    let plan = &resolved.pipelines[0];
    assert_eq!(plan.extensions[0].id, "store");
    assert_eq!(plan.extensions[0].execution, ExecutionModel::Local);
    let mut caps = capabilities(&resolved, "d");
    let store = caps.require_local::<KeyValueStore>().expect("local store");
    block_on(async {
        store.set(b"k", b"v", None).await.expect("set");
        assert_eq!(store.get(b"k").await.expect("get"), Some(b"v".to_vec()));
    });
}

#[test]
fn a_shared_consumer_makes_the_extension_shared_for_everyone() {
    let resolved = resolve(
        "          a: { type: processor:local_kv_user, capabilities: { key_value_store: store } }
          b: { type: processor:shared_kv_user, capabilities: { key_value_store: store } }\n",
    );
    let plan = &resolved.pipelines[0];
    assert_eq!(plan.extensions[0].execution, ExecutionModel::Shared);
    let shared = plan
        .create_shared_extensions(&resolved.source, &[])
        .expect("shared");
    let local = plan
        .create_local_extensions(0, &resolved.source, &[])
        .expect("local");
    assert_eq!(shared.len(), 1);
    assert!(local.is_empty());
    let mut a = Capabilities::for_node(&plan.nodes[0].id, &plan.nodes[0].bindings, &local, &shared);
    let mut b = Capabilities::for_node(&plan.nodes[1].id, &plan.nodes[1].bindings, &local, &shared);
    // The local consumer is served through the shared-as-local adapter: same store.
    let as_local = a.require_local::<KeyValueStore>().expect("shared-as-local");
    let as_shared = b.require_shared::<KeyValueStore>().expect("shared");
    block_on(async {
        as_shared
            .set(b"k", b"from-shared", None)
            .await
            .expect("set");
        assert_eq!(
            as_local.get(b"k").await.expect("get"),
            Some(b"from-shared".to_vec())
        );
    });
}

#[test]
fn shared_only_extension_serves_a_local_consumer_through_the_adapter() {
    let resolved = resolve(
        "          out: { type: exporter:probe, config: { path: x }, capabilities: { bearer_token_provider: token } }
          in: { type: receiver:probe, capabilities: { bearer_token_authorizer: token } }\n",
    );
    assert_eq!(
        resolved.pipelines[0].extensions[0].execution,
        ExecutionModel::Shared
    );
    let mut out = capabilities(&resolved, "out");
    let provider: Rc<dyn local::BearerTokenProvider> = out
        .require_local::<BearerTokenProvider>()
        .expect("provider");
    let token = provider.current_token().expect("a token");
    assert_eq!(token.secret().expose(), "fixed-token");
    assert_eq!(provider.header().name(), "authorization");
    let fresh = block_on(provider.fresh_token()).expect("fresh token");
    assert_eq!(fresh.secret().expose(), "fixed-token");

    let mut input = capabilities(&resolved, "in");
    let authorizer = input
        .require_local::<BearerTokenAuthorizer>()
        .expect("authorizer");
    assert_eq!(
        authorizer.authorize(Credential::new("fixed-token")),
        Ok(AuthzDecision::Allow {
            identity: Identity::from_static("fixed")
        })
    );
    assert_eq!(
        authorizer.authorize(Credential::new("other")),
        Ok(AuthzDecision::Deny {
            reason: DenyReason::Invalid
        })
    );
}

#[test]
fn a_binding_can_be_claimed_once() {
    let resolved = resolve(
        "          d: { type: processor:local_kv_user, capabilities: { key_value_store: store } }\n",
    );
    let mut caps = capabilities(&resolved, "d");
    assert_eq!(
        caps.unclaimed(),
        vec![(CapabilityId::KeyValueStore, "store")]
    );
    caps.require_local::<KeyValueStore>().expect("first claim");
    assert!(caps.unclaimed().is_empty());
    assert_eq!(
        caps.require_local::<KeyValueStore>().err(),
        Some(CapabilityError::AlreadyClaimed {
            node: "d".into(),
            capability: CapabilityId::KeyValueStore,
            extension: "store".into()
        })
    );
}

#[test]
fn asking_for_an_unbound_capability_says_how_to_bind_it() {
    let resolved = resolve(
        "          d: { type: processor:local_kv_user, capabilities: { key_value_store: store } }\n",
    );
    let mut caps = capabilities(&resolved, "d");
    assert!(
        caps.optional_local::<BearerTokenProvider>()
            .expect("optional")
            .is_none()
    );
    let error = caps
        .require_shared::<BearerTokenProvider>()
        .err()
        .expect("not bound");
    assert_eq!(
        error,
        CapabilityError::NotBound {
            node: "d".into(),
            capability: CapabilityId::BearerTokenProvider
        }
    );
    assert_eq!(
        error.to_string(),
        "node `d` has no `bearer_token_provider` binding; add `capabilities: { \
         bearer_token_provider: <extension id> }` to its configuration"
    );
}

#[test]
fn a_local_instance_cannot_be_claimed_as_shared() {
    let resolved = resolve(
        "          d: { type: processor:local_kv_user, capabilities: { key_value_store: local_store } }\n",
    );
    let mut caps = capabilities(&resolved, "d");
    assert_eq!(
        caps.require_shared::<KeyValueStore>().err(),
        Some(CapabilityError::LocalOnly {
            node: "d".into(),
            capability: CapabilityId::KeyValueStore,
            extension: "local_store".into()
        })
    );
    // The failed shared claim does not use up the binding.
    caps.require_local::<KeyValueStore>()
        .expect("local claim still possible");
}

#[test]
fn a_dual_extension_runs_the_variant_its_config_prefers_for_local_consumers() {
    let resolved = resolve(
        "          d: { type: processor:local_kv_user, capabilities: { key_value_store: one_store } }\n",
    );
    let plan = &resolved.pipelines[0];
    let one_store = plan
        .extensions
        .iter()
        .find(|e| e.id == "one_store")
        .expect("bound");
    // memory_kv without `per_core`: one store for all cores, served to the local node
    // through the shared-as-local adapter.
    assert_eq!(one_store.execution, ExecutionModel::Shared);
}

#[test]
fn local_extensions_are_instantiated_per_core() {
    let resolved = resolve(
        "          d: { type: processor:local_kv_user, capabilities: { key_value_store: store } }\n",
    );
    let plan = &resolved.pipelines[0];
    let core0 = plan
        .create_local_extensions(0, &resolved.source, &[])
        .expect("core 0");
    let core1 = plan
        .create_local_extensions(1, &resolved.source, &[])
        .expect("core 1");
    let store0 = Capabilities::for_node(
        &plan.nodes[0].id,
        &plan.nodes[0].bindings,
        &core0,
        NO_SHARED,
    )
    .require_local::<KeyValueStore>()
    .expect("core 0 store");
    let store1 = Capabilities::for_node(
        &plan.nodes[0].id,
        &plan.nodes[0].bindings,
        &core1,
        NO_SHARED,
    )
    .require_local::<KeyValueStore>()
    .expect("core 1 store");
    block_on(async {
        store0.set(b"k", b"core0", None).await.expect("set");
        assert_eq!(
            store1.get(b"k").await.expect("get"),
            None,
            "each core has its own local store"
        );
    });
}

static TWO_CAPS: ExtensionFactory = ExtensionFactory::new("two_caps", "test")
    .provides(&[
        CapabilityId::KeyValueStore,
        CapabilityId::BearerTokenProvider,
    ])
    .local(|context, _| Err(context.error("not used")))
    .build();

fn kv() -> Rc<dyn local::KeyValueStore> {
    Rc::new(LocalMemoryKv::new("kv", &MemoryKvConfig::default()))
}

#[test]
fn building_an_extension_checks_its_factory_declaration() {
    let context = ExtensionContext::new(&TWO_CAPS, "x", "g", "p", Some(0));
    assert_eq!(
        context
            .local_builder()
            .provide::<KeyValueStore>(kv())
            .passive()
            .err(),
        Some(ExtensionBuildError::Missing {
            extension: "x".into(),
            extension_type: "two_caps",
            capability: CapabilityId::BearerTokenProvider,
        })
    );
    let authorizer: Rc<dyn local::BearerTokenAuthorizer> = Rc::new(shared_as_local_authorizer());
    assert_eq!(
        context
            .local_builder()
            .provide::<BearerTokenAuthorizer>(authorizer)
            .passive()
            .err(),
        Some(ExtensionBuildError::Undeclared {
            extension: "x".into(),
            extension_type: "two_caps",
            capability: CapabilityId::BearerTokenAuthorizer,
            declared: vec!["key_value_store", "bearer_token_provider"],
        })
    );
    assert_eq!(
        context
            .local_builder()
            .provide::<KeyValueStore>(kv())
            .provide_per_consumer::<KeyValueStore>(kv)
            .passive()
            .err(),
        Some(ExtensionBuildError::Duplicate {
            extension: "x".into(),
            extension_type: "two_caps",
            capability: CapabilityId::KeyValueStore,
        })
    );
}

fn shared_as_local_authorizer()
-> otap_df_core::capability::SharedAsLocal<dyn shared::BearerTokenAuthorizer> {
    let fixed: Arc<dyn shared::BearerTokenAuthorizer> = Arc::new(fixtures::FixedToken::new("t"));
    otap_df_core::capability::SharedAsLocal(fixed)
}

static PER_CONSUMER: ExtensionFactory = ExtensionFactory::new("per_consumer", "test")
    .provides(&[CapabilityId::KeyValueStore])
    .local(|context, _| {
        Ok(context
            .local_builder()
            .provide_per_consumer::<KeyValueStore>(kv)
            .passive()?)
    })
    .build();

#[test]
fn per_consumer_provision_builds_a_new_object_for_each_consumer() {
    let context = ExtensionContext::new(&PER_CONSUMER, "pc", "g", "p", Some(0));
    let config = serde_yaml_ng::Value::Mapping(Default::default());
    let path = otap_df_core::config::YamlPath::root();
    let positions = otap_df_core::config::PositionIndex::default();
    let component = otap_df_core::config::ComponentConfig::new(&config, &path, &positions);
    let constructor = PER_CONSUMER.local_constructor().expect("local constructor");
    let extension = constructor(&context, &component).expect("built");
    assert_eq!(extension.lifecycle_kind(), LifecycleKind::Passive);
    let node = |id: &str| otap_df_core::resolve::NodePlan {
        id: id.into(),
        factory: &fixtures::LOCAL_KV_USER,
        config: config.clone(),
        path: path.clone(),
        bindings: vec![otap_df_core::capability::Binding {
            capability: CapabilityId::KeyValueStore,
            extension: "pc".into(),
        }],
    };
    let extensions = [extension];
    let a = Capabilities::for_node(&node("a").id, &node("a").bindings, &extensions, NO_SHARED)
        .require_local::<KeyValueStore>()
        .expect("a");
    let b = Capabilities::for_node(&node("b").id, &node("b").bindings, &extensions, NO_SHARED)
        .require_local::<KeyValueStore>()
        .expect("b");
    block_on(async {
        a.set(b"k", b"a", None).await.expect("set");
        assert_eq!(
            b.get(b"k").await.expect("get"),
            None,
            "each consumer has its own store"
        );
    });
}

/// An extension type whose instances provide what their `config:` names (`provides: [...]`)
/// of the two it declares.
static CONFIGURED_CAPS: ExtensionFactory = ExtensionFactory::new("configured_caps", "test")
    .provides(&[
        CapabilityId::KeyValueStore,
        CapabilityId::BearerTokenProvider,
    ])
    .provides_configured(|config| {
        let names: Vec<String> = config
            .value()
            .get("provides")?
            .as_sequence()?
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect();
        Some(
            names
                .iter()
                .filter_map(|n| CapabilityId::from_name(n))
                .collect(),
        )
    })
    .local(|context, _| {
        Ok(context
            .local_builder()
            .provide::<KeyValueStore>(kv())
            .passive()?)
    })
    .build();

#[test]
fn an_instance_that_names_what_it_provides_is_bound_and_built_by_that() {
    let registry = || {
        let mut registry = fixtures::registry();
        registry.register_extension(&CONFIGURED_CAPS);
        registry
    };
    let yaml = |provides: &str| {
        format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          some: {{ type: extension:configured_caps, config: {{ provides: [{provides}] }} }}
        nodes:
          src: {{ type: receiver:probe }}
          dedup: {{ type: processor:local_kv_user, capabilities: {{ key_value_store: some }} }}
          sink: {{ type: exporter:probe, config: {{ path: x }} }}
        connections:
          - {{ from: src, to: dedup }}
          - {{ from: dedup, to: sink }}
"
        )
    };
    let resolved = load_with_env(&yaml("key_value_store"), "t.yaml", &registry(), &|_| None)
        .expect("the store it names is bound");
    assert_eq!(
        resolved.pipelines[0].extensions[0].provides,
        [CapabilityId::KeyValueStore]
    );
    let error = load_with_env(
        &yaml("bearer_token_provider"),
        "t.yaml",
        &registry(),
        &|_| None,
    )
    .expect_err("a store it does not name");
    let text = error.to_string();
    assert!(
        text.contains("does not provide `key_value_store`")
            && text.contains("bearer_token_provider"),
        "{text}"
    );
    // The instance provides a subset of the declared capabilities: its build is not held to
    // all of them.
    let context = ExtensionContext::new(&CONFIGURED_CAPS, "some", "g", "p", Some(0));
    let built = context
        .local_builder()
        .provide::<KeyValueStore>(kv())
        .passive();
    assert!(built.is_ok(), "{:?}", built.err());
}
