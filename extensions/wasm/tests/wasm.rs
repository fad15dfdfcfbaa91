//! `extension:wasm` with guests written in WebAssembly text (`tests/guests/`): the kit's
//! authorizer suite, each decision of the ABI, a module checked against what it is said to
//! provide, and the sandbox failing closed (a loop for ever, a memory limit, a trap, an answer
//! outside the ABI) while the extension keeps serving.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::rc::Rc;

use otap_df_core::capability::{AuthzDecision, DenyReason, Identity, local};
use otap_df_core::secret::Credential;
use otap_df_extension_wasm::{WASM, Wasm, WasmConfig, WasmError};
use otap_df_tests::bearer_suite::{self, AuthorizerUnderTest};

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
    bearer_suite::run_authorizer("wasm authorizer.wat", || AuthorizerUnderTest {
        authorizer: authorizer("authorizer.wat", ""),
        accepted: vec!["alpha-token".to_owned(), "beta-token".to_owned()],
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
             offers only `otap.log(i32, i32, i32)`, `otap.monotonic_ns() -> i64`, and of WASI \
             preview 1 what a language runtime needs to start (no arguments, environment, \
             files or network): args_get, args_sizes_get, environ_get, environ_sizes_get, \
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
