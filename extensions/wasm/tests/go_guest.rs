//! A real guest in another language than Rust: `examples/wasm/go-guest` (Go, `GOOS=wasip1`,
//! `//go:wasmexport`), built by this test with the Go toolchain, passes the kit's authorizer
//! and key/value suites unchanged, through the same ABI as the WebAssembly text guests, with
//! Go's runtime started on the host's WASI (nothing opened).
//!
//! Go is required when `OTAP_DF_REQUIRE_GO` is set (`cargo xtask test` sets it); otherwise a
//! machine without Go skips these tests, saying so on standard error.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use otap_df_extension_wasm::{Wasm, WasmConfig};
use otap_df_tests::bearer_suite::{self, AuthorizerUnderTest};
use otap_df_tests::key_value_suite;

/// The guest, built once per test process into the target's temporary folder; `None` (said
/// loudly) when Go is missing and not required.
fn go_guest() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let source =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm/go-guest");
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-guest.wasm");
            let built = Command::new("go")
                .args(["build", "-buildmode=c-shared", "-o"])
                .arg(&out)
                .arg(".")
                .current_dir(&source)
                .env("GOOS", "wasip1")
                .env("GOARCH", "wasm")
                .env("GOFLAGS", "-mod=mod")
                .output();
            match built {
                Ok(output) if output.status.success() => Some(out),
                Ok(output) => panic!(
                    "`go build` of {} failed: {}",
                    source.display(),
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(error) if std::env::var_os("OTAP_DF_REQUIRE_GO").is_none() => {
                    eprintln!(
                        "SKIPPED: the Go guest tests need Go 1.24 or newer on PATH ({error}); \
                         `cargo xtask test` requires it"
                    );
                    None
                }
                Err(error) => panic!("Go is required (OTAP_DF_REQUIRE_GO) but cannot run: {error}"),
            }
        })
        .clone()
}

fn instance(module: &std::path::Path) -> Wasm {
    let config: WasmConfig = otap_df_tests::config::decode(
        &format!(
            "{{ module: '{}', provides: [bearer_token_authorizer, key_value_store], \
             config: {{ tokens: {{ go-token: 'go:alice', other-token: 'go:bob' }} }}, \
             compile_cache: null }}",
            module.display()
        ),
        WasmConfig::decode,
    );
    Wasm::new("go", &config).expect("the Go guest starts")
}

#[test]
fn the_go_guest_passes_the_authorizer_suite() {
    let Some(module) = go_guest() else { return };
    bearer_suite::run_authorizer("wasm go-guest", || {
        AuthorizerUnderTest::local(
            instance(&module).authorizer().expect("an authorizer"),
            &["go-token", "other-token"],
        )
    });
}

#[test]
fn the_go_guest_passes_the_key_value_suite() {
    let Some(module) = go_guest() else { return };
    key_value_suite::run_local("wasm go-guest", || {
        instance(&module).store().expect("a store")
    });
}

#[test]
fn the_go_guest_names_its_callers() {
    use otap_df_core::capability::{AuthzDecision, Identity};
    use otap_df_core::secret::Credential;
    let Some(module) = go_guest() else { return };
    let authorizer = instance(&module).authorizer().expect("an authorizer");
    assert_eq!(
        authorizer.authorize(Credential::new("go-token")).unwrap(),
        AuthzDecision::Allow {
            identity: Identity::from("go:alice")
        }
    );
}
