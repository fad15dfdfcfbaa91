//! `extension:wasm` beside the native providers doing the same job: an authorizer decision
//! through a WebAssembly guest against `bearer_auth`'s (the same two accepted tokens), and a
//! key/value store in a Go guest against `memory_kv`. `cargo bench -p
//! otap-df-integration-tests --bench wasm` (the Go guest needs Go on PATH; its group is left
//! out, said on standard error, without it).

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;

use criterion::Criterion;
use otap_df_core::capability::{BearerTokenAuthorizer, Capability, local, shared};
use otap_df_core::config::{ComponentConfig, PositionIndex, YamlPath};
use otap_df_core::memory_kv::{LocalMemoryKv, MemoryKvConfig};
use otap_df_core::secret::Credential;
use otap_df_extension_bearer_auth::{BearerAuth, BearerAuthConfig};
use otap_df_extension_wasm::{Wasm, WasmConfig};

fn decode<T>(
    yaml: &str,
    decode: impl FnOnce(&ComponentConfig<'_>) -> Result<T, otap_df_core::config::ConfigError>,
) -> T {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    let path = YamlPath::root().key("config");
    let positions = PositionIndex::default();
    decode(&ComponentConfig::new(&value, &path, &positions)).expect("config")
}

fn guests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../extensions/wasm/tests/guests")
}

fn wasm_config(module: &std::path::Path, provides: &str, config: &str) -> WasmConfig {
    decode(
        &format!(
            "{{ module: '{}', provides: [{provides}], config: {config}, compile_cache: null }}",
            module.display()
        ),
        WasmConfig::decode,
    )
}

fn wasm(module: &std::path::Path, provides: &str, config: &str) -> Wasm {
    Wasm::new("bench", &wasm_config(module, provides, config)).expect("the guest starts")
}

fn authorizers(c: &mut Criterion) {
    let native: Arc<BearerAuth> = Arc::new(
        BearerAuth::new(
            "bench",
            &decode("tokens: [alpha-token, beta-token]", |c| {
                BearerAuthConfig::decode(c, &|_| None)
            }),
        )
        .expect("bearer_auth"),
    );
    let native: Rc<dyn local::BearerTokenAuthorizer> =
        BearerTokenAuthorizer::shared_as_local(native as Arc<dyn shared::BearerTokenAuthorizer>);
    let instance = wasm(
        &guests().join("authorizer.wat"),
        "bearer_token_authorizer",
        "null",
    );
    eprintln!(
        "authorizer.wat: {} bytes of linear memory per instance",
        instance.memory_bytes()
    );
    let guest = instance.authorizer().expect("an authorizer");
    let shared_guest = BearerTokenAuthorizer::shared_as_local(shared_authorizer());
    let mut group = c.benchmark_group("authorize");
    for (name, authorizer) in [
        ("bearer_auth", &native),
        ("wasm_wat", &guest),
        ("wasm_wat_shared", &shared_guest),
    ] {
        for (case, token) in [("accepted", "alpha-token"), ("denied", "alpha-tokeX")] {
            group.bench_function(format!("{name}/{case}"), |b| {
                b.iter(|| black_box(authorizer).authorize(Credential::new(black_box(token))))
            });
        }
    }
    group.finish();
}

/// `authorizer.wat` as the shared variant builds it (what a pipeline's authorizer runs as, and
/// one of the engine or a group): the calling thread's instance decides.
fn shared_authorizer() -> Arc<dyn shared::BearerTokenAuthorizer> {
    use otap_df_core::capability::Binding;
    use otap_df_core::extension::{Capabilities, ExtensionContext, LocalProvisions};
    let config = format!(
        "{{ module: '{}', provides: [bearer_token_authorizer], compile_cache: null }}",
        guests().join("authorizer.wat").display()
    );
    let provisions = decode(&config, |config| {
        let context = ExtensionContext::new(&otap_df_extension_wasm::WASM, "bench", "", "", None);
        let constructor = otap_df_extension_wasm::WASM
            .shared_constructor()
            .expect("a shared variant");
        constructor(&context, config)
            .map(|extension| extension.into_parts().0)
            .map_err(|e| config.invalid("module", e.to_string()))
    });
    let binding = Binding {
        capability: BearerTokenAuthorizer::ID,
        extension: "bench".to_owned(),
    };
    let no_local: &[LocalProvisions] = &[];
    Capabilities::for_node("bench", &[binding], no_local, &[provisions])
        .require_shared::<BearerTokenAuthorizer>()
        .expect("bound")
}

/// The Go guest built into the target's temporary folder, or `None` without Go.
fn go_guest() -> Option<PathBuf> {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm/go-guest");
    let out = std::env::temp_dir().join(format!(
        "otap-df-bench-go-guest-{}.wasm",
        std::process::id()
    ));
    let built = Command::new("go")
        .args(["build", "-buildmode=c-shared", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&source)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .status();
    match built {
        Ok(status) if status.success() => Some(out),
        other => {
            eprintln!("the Go guest's group is left out: `go build` did not run ({other:?})");
            None
        }
    }
}

fn stores(c: &mut Criterion) {
    let Some(module) = go_guest() else { return };
    let native: Rc<dyn local::KeyValueStore> =
        Rc::new(LocalMemoryKv::new("bench", &MemoryKvConfig::default()));
    let instance = wasm(&module, "key_value_store", "{ tokens: {} }");
    eprintln!(
        "go-guest: {} bytes of linear memory per instance after its start",
        instance.memory_bytes()
    );
    let guest = instance.store().expect("a store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("key_value");
    // The host's own cost: a guest that does no work.
    let fixed = wasm(&guests().join("fixed-store.wat"), "key_value_store", "null")
        .store()
        .expect("a store");
    // A guest over a store granted to it: each call crosses into the guest (on a fiber) and
    // back out to `memory_kv`.
    let backing: Rc<dyn local::KeyValueStore> =
        Rc::new(LocalMemoryKv::new("backing", &MemoryKvConfig::default()));
    let prefixing = wasm_config(
        &guests().join("prefixing-store.wat"),
        "key_value_store",
        "null",
    );
    let granted = Wasm::granted("bench", &prefixing, backing)
        .expect("the guest starts")
        .store()
        .expect("a store");
    for (name, store) in [
        ("memory_kv", &native),
        ("wasm_go", &guest),
        ("wasm_fixed", &fixed),
        ("wasm_granted", &granted),
    ] {
        runtime
            .block_on(store.set(b"present-key-0123456789", b"value-0123456789abcdef", None))
            .expect("set");
        group.bench_function(format!("{name}/get"), |b| {
            b.iter(|| runtime.block_on(store.get(black_box(b"present-key-0123456789"))))
        });
        group.bench_function(format!("{name}/set"), |b| {
            b.iter(|| {
                runtime.block_on(store.set(
                    black_box(b"written-key-0123456789"),
                    black_box(b"value-0123456789abcdef"),
                    None,
                ))
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_file(module);
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    authorizers(&mut criterion);
    stores(&mut criterion);
    criterion.final_summary();
}
