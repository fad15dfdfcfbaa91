//! The bearer-token hot path of `azure_auth` next to `bearer_auth`'s: reading the current
//! token per request, as a concrete type, as a shared capability (`Arc<dyn …>`) and through
//! the shared-as-local adapter. `cargo bench -p otap-df-integration-tests --bench token_providers`.
//!
//! The `azure_auth` instance gets its token from a managed identity endpoint on loopback
//! through the real `azure_identity` client. The credential reads the endpoint from the
//! environment, so the bench starts the endpoint, then runs itself again as a child process
//! with that environment; the child does the measuring.

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

// The azure-auth crate's own test support (a managed identity endpoint on loopback): this
// crate is never packaged, so it may reach into a sibling's test files.
#[path = "../../../extensions/azure-auth/tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;

use criterion::Criterion;
use otap_df_core::capability::{BearerTokenProvider, Capability, local, shared};
use otap_df_core::config::{ComponentConfig, PositionIndex, YamlPath};
use otap_df_extension_bearer_auth::{BearerAuth, BearerAuthConfig};
use support::{CHILD, Reply, TokenEndpoint, managed_identity};

const BENCH_CHILD: &str = "token-bench";

fn bearer_auth() -> Arc<BearerAuth> {
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&format!("token: {}", "t".repeat(64))).expect("yaml");
    let path = YamlPath::root().key("config");
    let positions = PositionIndex::default();
    let config =
        BearerAuthConfig::decode(&ComponentConfig::new(&value, &path, &positions), &|_| None)
            .expect("config");
    Arc::new(BearerAuth::new("bench", &config).expect("extension"))
}

/// Benchmarks one provider three ways, under `name/…`.
fn provider<P: shared::BearerTokenProvider + 'static>(
    c: &mut Criterion,
    name: &str,
    concrete: Arc<P>,
) {
    let mut group = c.benchmark_group("current_token");
    assert!(concrete.current_token().is_some(), "{name} serves a token");
    let shared: Arc<dyn shared::BearerTokenProvider> = concrete.clone();
    let adapted: Rc<dyn local::BearerTokenProvider> =
        BearerTokenProvider::shared_as_local(shared.clone());
    group.bench_function(format!("{name}/concrete"), |b| {
        b.iter(|| black_box(concrete.as_ref()).current_token())
    });
    group.bench_function(format!("{name}/shared"), |b| {
        b.iter(|| black_box(&shared).current_token())
    });
    group.bench_function(format!("{name}/shared_as_local"), |b| {
        b.iter(|| black_box(&adapted).current_token())
    });
    group.finish();
}

fn main() {
    if std::env::var(CHILD).as_deref() != Ok(BENCH_CHILD) {
        let endpoint = TokenEndpoint::start(&[], Reply::Token(24 * 3600));
        let status = Command::new(std::env::current_exe().expect("bench binary"))
            .args(std::env::args_os().skip(1))
            .env(CHILD, BENCH_CHILD)
            .envs(endpoint.env())
            .status()
            .expect("run the bench");
        std::process::exit(status.code().unwrap_or(1));
    }
    let azure = support::running(&managed_identity(""));
    let mut criterion = Criterion::default().configure_from_args();
    provider(&mut criterion, "bearer_auth", bearer_auth());
    provider(&mut criterion, "azure_auth", azure.auth.tokens().clone());
    criterion.final_summary();
}
