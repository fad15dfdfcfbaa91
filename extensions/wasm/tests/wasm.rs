//! `extension:wasm` with guests written in WebAssembly text (`tests/guests/`): the kit's
//! authorizer suite, each decision of the ABI, a module checked against what it is said to
//! provide, and the sandbox failing closed (a loop for ever, a memory limit, a trap, an answer
//! outside the ABI) while the extension keeps serving.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::rc::Rc;

use std::time::Duration;

use otap_df_core::capability::{AuthzDecision, DenyReason, Identity, KvError, local};
use otap_df_core::memory_kv::{LocalMemoryKv, MemoryKvConfig};
use otap_df_core::secret::Credential;
use otap_df_extension_wasm::{WASM, Wasm, WasmConfig, WasmError};
use otap_df_tests::bearer_suite::{self, AuthorizerUnderTest};
use otap_df_tests::key_value_suite;

/// The path of guest `name` (`tests/guests/<name>`).
fn guest(name: &str) -> String {
    format!("{}/tests/guests/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `config:` decoded from `yaml` (a flow mapping's entries, `module:` first), compiled
/// modules kept in memory only (no cache folder written by the tests).
fn config(yaml: &str) -> WasmConfig {
    otap_df_tests::config::decode(
        &format!("{{ {yaml}, compile_cache: null }}"),
        WasmConfig::decode,
    )
}

/// The authorizer of an instance of guest `name` with `more` options.
fn authorizer(name: &str, more: &str) -> Rc<dyn local::BearerTokenAuthorizer> {
    let config = config(&format!(
        "module: '{}', provides: [bearer_token_authorizer]{more}",
        guest(name)
    ));
    Wasm::new("guest", &config)
        .expect("the guest starts")
        .authorizer()
        .expect("an authorizer")
}

fn decide(authorizer: &dyn local::BearerTokenAuthorizer, token: &str) -> AuthzDecision {
    authorizer
        .authorize(Credential::new(token))
        .expect("a WebAssembly authorizer always decides")
}

fn denied(reason: DenyReason) -> AuthzDecision {
    AuthzDecision::Deny { reason }
}

/// The `validate` of a `config:` block: the options, then the module against them.
fn validate(yaml: &str) -> Result<(), String> {
    otap_df_tests::config::try_decode(&format!("{{ {yaml}, compile_cache: null }}"), |c| {
        WASM.validate(c)
    })
}

#[test]
fn a_wat_authorizer_passes_the_authorizer_suite() {
    bearer_suite::run_authorizer("wasm authorizer.wat", || {
        AuthorizerUnderTest::local(
            authorizer("authorizer.wat", ""),
            &["alpha-token", "beta-token"],
        )
    });
}

#[test]
fn each_answer_of_the_abi_is_its_decision() {
    let authorizer = authorizer("authorizer.wat", "");
    assert_eq!(
        decide(&*authorizer, "alpha-token"),
        AuthzDecision::Allow {
            identity: Identity::from("guest:alpha")
        }
    );
    // No identity named: the extension's id.
    assert_eq!(
        decide(&*authorizer, "beta-token"),
        AuthzDecision::Allow {
            identity: Identity::from("guest")
        }
    );
    assert_eq!(
        decide(&*authorizer, "old-token"),
        denied(DenyReason::Expired)
    );
    assert_eq!(decide(&*authorizer, "nope"), denied(DenyReason::Invalid));
    assert_eq!(decide(&*authorizer, ""), denied(DenyReason::Missing));
    // A credential longer than the buffer the guest first handed over: a bigger one asked.
    let long = "x".repeat(100_000);
    assert_eq!(decide(&*authorizer, &long), denied(DenyReason::Invalid));
    assert_eq!(
        decide(&*authorizer, "alpha-token"),
        AuthzDecision::Allow {
            identity: Identity::from("guest:alpha")
        }
    );
    assert_eq!(authorizer.header().name(), "authorization");
    assert_eq!(authorizer.header().scheme(), "Bearer");
}

#[test]
fn the_guest_is_handed_its_config_at_start_and_may_refuse_it() {
    let authorizer = authorizer("from-config.wat", ", config: 12345");
    assert_eq!(
        decide(&*authorizer, "12345"),
        AuthzDecision::Allow {
            identity: Identity::from("guest")
        }
    );
    assert_eq!(decide(&*authorizer, "1234"), denied(DenyReason::Invalid));
    let refused = Wasm::new(
        "guest",
        &config(&format!(
            "module: '{}', provides: [bearer_token_authorizer]",
            guest("from-config.wat")
        )),
    )
    .err()
    .expect("no config: refused");
    assert_eq!(
        refused,
        WasmError::Start("the module refused its `config:` (`otap_start` returned 7)".to_owned())
    );
}

#[test]
fn a_module_is_checked_against_what_it_is_said_to_provide_before_it_runs() {
    let provides = "provides: [bearer_token_authorizer]";
    assert_eq!(
        validate(&format!(
            "module: '{}', {provides}",
            guest("authorizer.wat")
        )),
        Ok(())
    );
    for (module, said) in [
        (
            guest("no-authorize.wat"),
            "at `config.module`: the module does not export what it must to provide \
             bearer_token_authorizer (ABI version 1): missing or of another type: \
             `otap_authorize(i32, i32) -> i64`",
        ),
        (
            guest("wasi.wat"),
            "the module imports `wasi_snapshot_preview1.path_open` (a function (i32, i32, i32, \
             i32, i32, i64, i64, i32, i32) -> i32), which the host does not offer; the host \
             offers only `otap.log(i32, i32, i32)`, `otap.monotonic_ns() -> i64`; with a \
             `key_value_store` bound in the extension's `capabilities:`, `otap.kv_get(i32, \
             i32, i32, i32) -> i64`, `otap.kv_value(i32, i32) -> i64`, `otap.kv_set(i32, i32, \
             i32, i32, i64) -> i32`, `otap.kv_set_if_absent(i32, i32, i32, i32, i64) -> i32`, \
             `otap.kv_delete(i32, i32) -> i32`; and of WASI preview 1 what a language runtime \
             needs to start (no arguments, environment, files or network): args_get, args_sizes_get, environ_get, environ_sizes_get, \
             clock_time_get, fd_write, fd_close, fd_fdstat_get, fd_fdstat_set_flags, \
             fd_prestat_get, fd_prestat_dir_name, random_get, poll_oneoff, sched_yield, \
             proc_exit",
        ),
        (guest("missing.wat"), "cannot read the module"),
        (
            format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR")),
            "is not a valid WebAssembly module",
        ),
    ] {
        let error = validate(&format!("module: '{module}', {provides}")).expect_err(&module);
        assert!(error.contains(said), "{module}:\n{error}\nexpected: {said}");
    }
    for (yaml, said) in [
        (
            "provides: []",
            "at `config.provides`: `provides` names no capability; a module can provide: \
             bearer_token_authorizer, key_value_store",
        ),
        (
            "provides: [key_value_storage]",
            "at `config.provides[0]`: `key_value_storage` is not a capability a WebAssembly \
             module can provide",
        ),
        (
            "provides: [bearer_token_authorizer, bearer_token_authorizer]",
            "at `config.provides[1]`: `bearer_token_authorizer` is named twice",
        ),
        (
            "provides: [bearer_token_authorizer], limits: { fuel_per_call: 10 }",
            "at `config.limits.fuel_per_call`: `limits.fuel_per_call` must be at least 1000",
        ),
        (
            "provides: [bearer_token_authorizer], limits: { max_memory_bytes: 100 }",
            "`limits.max_memory_bytes` must be between 65536",
        ),
        (
            "provides: [bearer_token_authorizer], fuel: 5",
            "unknown field `fuel`",
        ),
    ] {
        let error =
            validate(&format!("module: '{}', {yaml}", guest("authorizer.wat"))).expect_err(yaml);
        assert!(error.contains(said), "{yaml}:\n{error}\nexpected: {said}");
    }
    let other_version = Wasm::new(
        "guest",
        &config(&format!("module: '{}', {provides}", guest("abi-v2.wat"))),
    )
    .err()
    .expect("another ABI version");
    assert_eq!(
        other_version,
        WasmError::Start(
            "the module speaks guest ABI version 2; this host speaks version 1".to_owned()
        )
    );
}

#[test]
fn a_guest_that_loops_for_ever_runs_out_of_fuel_and_every_call_is_denied() {
    let authorizer = authorizer("spin.wat", ", limits: { fuel_per_call: 100000 }");
    for _ in 0..3 {
        assert_eq!(decide(&*authorizer, "any"), denied(DenyReason::Invalid));
    }
}

#[test]
fn a_guest_that_grows_past_its_memory_limit_traps_and_is_denied() {
    // 2 MiB more than its one page: past a 1 MiB limit, within a 4 MiB one.
    let limited = authorizer("grow.wat", ", limits: { max_memory_bytes: 1048576 }");
    assert_eq!(decide(&*limited, "any"), denied(DenyReason::Invalid));
    assert_eq!(decide(&*limited, "any"), denied(DenyReason::Invalid));
    let roomy = authorizer("grow.wat", ", limits: { max_memory_bytes: 4194304 }");
    assert_eq!(
        decide(&*roomy, "any"),
        AuthzDecision::Allow {
            identity: Identity::from("guest")
        }
    );
}

#[test]
fn after_a_trap_the_next_call_gets_a_fresh_instance() {
    let authorizer = authorizer("flaky.wat", "");
    let allowed = AuthzDecision::Allow {
        identity: Identity::from("guest"),
    };
    assert_eq!(decide(&*authorizer, "a"), allowed);
    // Its second call traps: denied.
    assert_eq!(decide(&*authorizer, "a"), denied(DenyReason::Invalid));
    // A fresh instance, its counter at zero again: allowed, then trapping again.
    assert_eq!(decide(&*authorizer, "a"), allowed);
    assert_eq!(decide(&*authorizer, "a"), denied(DenyReason::Invalid));
}

#[test]
fn an_answer_outside_the_guests_memory_is_denied() {
    let authorizer = authorizer("out-of-bounds.wat", "");
    assert_eq!(decide(&*authorizer, "a"), denied(DenyReason::Invalid));
}

fn provider(name: &str) -> std::rc::Rc<dyn local::BearerTokenProvider> {
    let config = config(&format!(
        "module: '{}', provides: [bearer_token_provider]",
        guest(name)
    ));
    Wasm::new("guest", &config)
        .expect("the guest starts")
        .provider()
        .expect("a provider")
}

#[test]
fn a_wat_provider_passes_the_provider_suite() {
    bearer_suite::run_provider("wasm provider.wat", || {
        otap_df_tests::bearer_suite::ProviderUnderTest {
            provider: provider("provider.wat"),
            token: "wat-token".to_owned(),
            rotate: None,
            keep_alive: None,
        }
    });
}

#[test]
fn a_provider_serves_the_guests_token_with_its_validity_and_asks_again_when_told() {
    let provider = provider("rotating.wat");
    let first = provider.current_token().expect("a token from the start");
    assert_eq!(first.secret().expose(), "tok-1");
    let expires = first.expires_at().expect("valid for a minute");
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .expect("in the future");
    assert!(left > std::time::Duration::from_secs(50), "{left:?}");
    let generation = provider.token_generation();
    let mut subscription = provider.subscribe();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fresh = runtime
        .block_on(provider.fresh_token())
        .expect("a fresh token");
    assert_eq!(fresh.secret().expose(), "tok-2");
    assert_eq!(provider.current_token().unwrap().secret().expose(), "tok-2");
    assert!(provider.token_generation() > generation);
    let seen = runtime.block_on(subscription.next()).expect("a token");
    assert_eq!(seen.secret().expose(), "tok-2");
}

/// A store over which `prefixing-store.wat` keeps its entries, and the guest's store.
fn prefixing_store() -> (Rc<dyn local::KeyValueStore>, Rc<dyn local::KeyValueStore>) {
    let backing: Rc<dyn local::KeyValueStore> =
        Rc::new(LocalMemoryKv::new("backing", &MemoryKvConfig::default()));
    let config = config(&format!(
        "module: '{}', provides: [key_value_store]",
        guest("prefixing-store.wat")
    ));
    let wasm = Wasm::granted("guest", &config, backing.clone()).expect("the guest starts");
    (backing, wasm.store().expect("a store"))
}

/// Runs `future` on a current-thread runtime, where the guest and its granted store live.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn a_wat_store_over_a_granted_store_passes_the_key_value_suite() {
    key_value_suite::run_local("wasm prefixing-store.wat over memory_kv", || {
        prefixing_store().1
    });
}

#[test]
fn a_guest_keeps_its_entries_in_the_granted_store_under_its_own_keys() {
    let (backing, store) = prefixing_store();
    block_on(async {
        store.set(b"k", b"v", None).await.unwrap();
        assert_eq!(backing.get(b"wasm:k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(backing.get(b"k").await.unwrap(), None);
        // A value larger than the guest's memory holds is handed over once it has grown.
        let large = vec![7u8; 300 * 1024];
        store.set(b"large", &large, None).await.unwrap();
        assert_eq!(store.get(b"large").await.unwrap(), Some(large));
        assert!(store.set_if_absent(b"k2", b"x", None).await.unwrap());
        assert!(!store.set_if_absent(b"k2", b"y", None).await.unwrap());
        assert!(store.delete(b"k2").await.unwrap());
        assert_eq!(backing.get(b"wasm:k2").await.unwrap(), None);
    });
}

#[test]
fn a_granted_store_called_where_the_engine_does_not_wait_answers_not_here() {
    // The guest's `otap_start` writes `started` and starts only if that answered -4: the
    // engine does not wait while it builds the extension.
    let (backing, _store) = prefixing_store();
    assert_eq!(block_on(backing.get(b"started")).unwrap(), None);
}

/// An authorizer whose tokens live in a granted `memory_kv` (`store-authorizer.wat`), and
/// that store.
fn store_authorizer(backing: Rc<dyn local::KeyValueStore>) -> Rc<dyn local::BearerTokenAuthorizer> {
    let config = config(&format!(
        "module: '{}', provides: [bearer_token_authorizer]",
        guest("store-authorizer.wat")
    ));
    Wasm::granted("guest", &config, backing)
        .expect("the guest starts")
        .authorizer()
        .expect("an authorizer")
}

#[test]
fn an_authorizer_whose_tokens_live_in_a_granted_store_decides_where_the_caller_waits() {
    let backing: Rc<dyn local::KeyValueStore> =
        Rc::new(LocalMemoryKv::new("backing", &MemoryKvConfig::default()));
    let authorizer = store_authorizer(backing.clone());
    assert!(authorizer.waits(), "it waits for its store");
    block_on(async {
        backing.set(b"alpha-key", b"tenant-a", None).await.unwrap();
        backing.set(b"beta-key", b"", None).await.unwrap();
        let decide = |token: &'static str| authorizer.authorize_waiting(Credential::new(token));
        assert_eq!(
            decide("alpha-key").await.unwrap(),
            AuthzDecision::Allow {
                identity: Identity::from("tenant-a")
            }
        );
        assert_eq!(
            decide("beta-key").await.unwrap(),
            AuthzDecision::Allow {
                identity: Identity::from("guest")
            }
        );
        assert_eq!(decide("nope").await.unwrap(), denied(DenyReason::Invalid));
        // Revoked in the store: refused from the next request on, no reload.
        backing.delete(b"alpha-key").await.unwrap();
        assert_eq!(
            decide("alpha-key").await.unwrap(),
            denied(DenyReason::Invalid)
        );
    });
    // Asked without waiting, it cannot decide: callers fail closed.
    let error = authorizer
        .authorize(Credential::new("beta-key"))
        .expect_err("no decision without waiting");
    assert_eq!(
        error.message,
        "its guest reads a granted store, and decides only where the caller waits \
         (`authorize_waiting`)"
    );
}

#[test]
fn an_authorizer_whose_store_is_down_cannot_decide_and_says_so() {
    let authorizer = store_authorizer(Rc::new(Failing { transient: true }));
    let error = block_on(authorizer.authorize_waiting(Credential::new("alpha-key")))
        .expect_err("no decision");
    assert_eq!(
        error.message,
        "the guest could not decide now (`otap_authorize` answered -4)"
    );
}

/// A store that fails every call, transiently or not.
struct Failing {
    transient: bool,
}

#[otap_df_core::async_trait(?Send)]
impl local::KeyValueStore for Failing {
    async fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Err(self.error())
    }
    async fn set(&self, _: &[u8], _: &[u8], _: Option<Duration>) -> Result<(), KvError> {
        Err(self.error())
    }
    async fn set_if_absent(
        &self,
        _: &[u8],
        _: &[u8],
        _: Option<Duration>,
    ) -> Result<bool, KvError> {
        Err(self.error())
    }
    async fn delete(&self, _: &[u8]) -> Result<bool, KvError> {
        Err(self.error())
    }
}

impl Failing {
    fn error(&self) -> KvError {
        if self.transient {
            KvError::Unavailable {
                store: "backing".into(),
                message: "down".into(),
            }
        } else {
            KvError::Refused {
                store: "backing".into(),
                message: "no".into(),
            }
        }
    }
}

#[test]
fn a_granted_stores_failure_reaches_the_caller_as_transient_or_permanent() {
    let config = config(&format!(
        "module: '{}', provides: [key_value_store]",
        guest("prefixing-store.wat")
    ));
    for (transient, expected) in [
        (
            true,
            KvError::Unavailable {
                store: "guest".into(),
                message: "`otap_kv_get` answered -2: the guest's store is unavailable".into(),
            },
        ),
        (
            false,
            KvError::Refused {
                store: "guest".into(),
                message: "`otap_kv_get` answered -3".into(),
            },
        ),
    ] {
        let wasm = Wasm::granted("guest", &config, Rc::new(Failing { transient }))
            .expect("the guest starts");
        let store = wasm.store().expect("a store");
        assert_eq!(block_on(store.get(b"k")).unwrap_err(), expected);
        let set = block_on(store.set(b"k", b"v", None)).unwrap_err();
        assert_eq!(set.is_transient(), transient, "{set}");
    }
}

#[test]
fn a_module_that_calls_a_granted_store_does_not_start_without_one() {
    let config = config(&format!(
        "module: '{}', provides: [key_value_store]",
        guest("prefixing-store.wat")
    ));
    let Err(WasmError::Module(message)) = Wasm::new("guest", &config) else {
        panic!("started without a store");
    };
    assert_eq!(
        message,
        "the module imports `otap.kv_get`, `otap.kv_value`, `otap.kv_set`, \
         `otap.kv_set_if_absent`, `otap.kv_delete`, which call the `key_value_store` granted \
         to it, and the extension binds none: add `capabilities: { key_value_store: <extension \
         id> }` to it"
    );
}

/// A store that suspends its caller once before each answer, as a store across a network
/// does.
struct Yielding(LocalMemoryKv);

#[otap_df_core::async_trait(?Send)]
impl local::KeyValueStore for Yielding {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        tokio::task::yield_now().await;
        self.0.get(key).await
    }
    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        tokio::task::yield_now().await;
        self.0.set(key, value, ttl).await
    }
    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        tokio::task::yield_now().await;
        self.0.set_if_absent(key, value, ttl).await
    }
    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        tokio::task::yield_now().await;
        self.0.delete(key).await
    }
}

fn yielding_store() -> Rc<dyn local::KeyValueStore> {
    let config = config(&format!(
        "module: '{}', provides: [key_value_store]",
        guest("prefixing-store.wat")
    ));
    let backing = Yielding(LocalMemoryKv::new("backing", &MemoryKvConfig::default()));
    Wasm::granted("guest", &config, Rc::new(backing))
        .expect("the guest starts")
        .store()
        .expect("a store")
}

#[test]
fn a_guest_suspended_on_its_granted_store_passes_the_key_value_suite() {
    key_value_suite::run_local("wasm prefixing-store.wat over a store that waits", || {
        yielding_store()
    });
}

#[test]
fn calls_that_overlap_while_the_guest_waits_each_get_their_answer() {
    let store = yielding_store();
    let local = tokio::task::LocalSet::new();
    let answers = block_on(local.run_until(async {
        for i in 0..32u8 {
            store.set(&[i], &[i, i], None).await.unwrap();
        }
        // Every get suspends the guest in `otap.kv_get`; the others run meanwhile, each on an
        // instance of its own.
        let gets: Vec<_> = (0..32u8)
            .map(|i| {
                let store = store.clone();
                tokio::task::spawn_local(async move { (i, store.get(&[i]).await.unwrap()) })
            })
            .collect();
        let mut answers = Vec::new();
        for get in gets {
            answers.push(get.await.unwrap());
        }
        answers
    }));
    let expected: Vec<(u8, Option<Vec<u8>>)> = (0..32u8).map(|i| (i, Some(vec![i, i]))).collect();
    assert_eq!(answers, expected);
}

/// The shared variant of `extension:wasm` with guest `name` providing `provides`, as an
/// extension of the engine (or one a shared node binds) is built, and its provisions.
fn shared_instance(name: &str, provides: &str) -> otap_df_core::extension::SharedProvisions {
    use otap_df_core::extension::ExtensionContext;
    let yaml = format!(
        "{{ module: '{}', provides: [{provides}], compile_cache: null }}",
        guest(name)
    );
    otap_df_tests::config::try_decode(&yaml, |config| {
        let context = ExtensionContext::new(&WASM, "guest", "", "", None);
        let constructor = WASM.shared_constructor().expect("a shared variant");
        let extension =
            constructor(&context, config).map_err(|e| config.invalid("module", e.to_string()))?;
        Ok(extension.into_parts().0)
    })
    .expect("the shared instance starts")
}

/// Capability `C` of `provisions`, as a node bound to it gets it.
fn bound<C: otap_df_core::capability::Capability>(
    provisions: otap_df_core::extension::SharedProvisions,
) -> std::sync::Arc<C::Shared> {
    use otap_df_core::capability::Binding;
    use otap_df_core::extension::{Capabilities, LocalProvisions};
    let binding = Binding {
        capability: C::ID,
        extension: "guest".to_owned(),
    };
    let no_local: &[LocalProvisions] = &[];
    Capabilities::for_node("node", &[binding], no_local, &[provisions])
        .require_shared::<C>()
        .expect("bound")
}

#[test]
fn the_shared_variant_passes_the_authorizer_suite_with_an_instance_per_thread() {
    use otap_df_core::capability::BearerTokenAuthorizer;
    bearer_suite::run_authorizer("wasm authorizer.wat, shared", || {
        let authorizer = bound::<BearerTokenAuthorizer>(shared_instance(
            "authorizer.wat",
            "bearer_token_authorizer",
        ));
        AuthorizerUnderTest::shared(authorizer, &["alpha-token", "beta-token"])
    });
    // Threads each get their own instance, and all decide the same.
    let authorizer = bound::<BearerTokenAuthorizer>(shared_instance(
        "authorizer.wat",
        "bearer_token_authorizer",
    ));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let authorizer = authorizer.clone();
            scope.spawn(move || {
                for _ in 0..100 {
                    assert_eq!(
                        authorizer
                            .authorize(Credential::new("alpha-token"))
                            .unwrap(),
                        AuthzDecision::Allow {
                            identity: Identity::from("guest:alpha")
                        }
                    );
                    assert_eq!(
                        authorizer.authorize(Credential::new("nope")).unwrap(),
                        denied(DenyReason::Invalid)
                    );
                }
            });
        }
    });
}

#[test]
fn the_shared_variant_passes_the_provider_suite() {
    use otap_df_core::capability::BearerTokenProvider;
    bearer_suite::run_provider("wasm provider.wat, shared", || {
        let provider =
            bound::<BearerTokenProvider>(shared_instance("provider.wat", "bearer_token_provider"));
        otap_df_tests::bearer_suite::ProviderUnderTest::shared(provider, "wat-token", None)
    });
}

#[test]
fn the_shared_variant_refuses_to_serve_a_store() {
    let yaml = format!(
        "{{ module: '{}', provides: [key_value_store], compile_cache: null }}",
        guest("fixed-store.wat")
    );
    let error = otap_df_tests::config::try_decode(&yaml, |config| {
        let context = otap_df_core::extension::ExtensionContext::new(&WASM, "guest", "", "", None);
        let constructor = WASM.shared_constructor().expect("a shared variant");
        constructor(&context, config)
            .map(drop)
            .map_err(|e| config.invalid("module", e.to_string()))
    })
    .expect_err("a store runs one instance per core");
    assert!(
        error.ends_with(
            "a shared node binds it, and a WebAssembly key_value_store, like a guest granted a \
             store, runs one instance per core (its state is each instance's own): bind it from \
             local nodes only"
        ),
        "{error}"
    );
}
