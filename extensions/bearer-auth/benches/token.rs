//! The bearer-token hot path: reading the cached client token per request, and deciding on an
//! incoming token. `cargo bench -p otap-df-extension-bearer-auth --bench token`.

#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use otap_df_core::capability::{BearerTokenProvider, Capability, local, shared};
use otap_df_core::config::{ComponentConfig, PositionIndex, YamlPath};
use otap_df_core::secret::BearerToken;
use otap_df_extension_bearer_auth::{BearerAuth, BearerAuthConfig};

fn auth(yaml: &str) -> Arc<BearerAuth> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    let path = YamlPath::root().key("config");
    let positions = PositionIndex::default();
    let config =
        BearerAuthConfig::decode(&ComponentConfig::new(&value, &path, &positions), &|_| None)
            .expect("config");
    Arc::new(BearerAuth::new("bench", &config).expect("extension"))
}

/// A 64-character token, different per `i`.
fn token(i: usize) -> String {
    format!("{i:04}{}", "t".repeat(60))
}

fn current_token(c: &mut Criterion) {
    let mut group = c.benchmark_group("current_token");
    let concrete = auth(&format!("token: {}", token(0)));
    let shared: Arc<dyn shared::BearerTokenProvider> = concrete.clone();
    let adapted: Rc<dyn local::BearerTokenProvider> =
        BearerTokenProvider::shared_as_local(shared.clone());
    group.bench_function("concrete", |b| {
        b.iter(|| shared::BearerTokenProvider::current_token(black_box(concrete.as_ref())))
    });
    group.bench_function("shared_dyn", |b| {
        b.iter(|| black_box(&shared).current_token())
    });
    group.bench_function("shared_as_local", |b| {
        b.iter(|| black_box(&adapted).current_token())
    });
    // What `exporter:otlp_http` does per request while the token has not changed: compare
    // the provider's generation with the one its rendered header was made from.
    let seen = adapted.token_generation();
    group.bench_function("generation_check_shared_as_local", |b| {
        b.iter(|| black_box(&adapted).token_generation() == black_box(seen))
    });
    let (_sender, receiver) = tokio::sync::watch::channel(Some(BearerToken::new(token(0))));
    group.bench_function("baseline_watch_borrow_clone", |b| {
        b.iter(|| black_box(&receiver).borrow().clone())
    });
    let mutex = Arc::new(tokio::sync::Mutex::new(Some(BearerToken::new(token(0)))));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    group.bench_function("baseline_tokio_mutex_lock_clone", |b| {
        b.iter(|| runtime.block_on(async { black_box(&mutex).lock().await.clone() }))
    });
    group.finish();
}

fn authorize(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorize");
    for accepted in [1usize, 10, 1000] {
        let tokens: Vec<String> = (0..accepted).map(token).collect();
        let authorizer: Arc<dyn shared::BearerTokenAuthorizer> =
            auth(&format!("tokens: [{}]", tokens.join(", ")));
        let last = BearerToken::new(tokens[accepted - 1].clone());
        let wrong = BearerToken::new(token(9999));
        group.bench_with_input(BenchmarkId::new("allow", accepted), &last, |b, t| {
            b.iter(|| authorizer.authorize(black_box(t.credential())))
        });
        group.bench_with_input(BenchmarkId::new("deny", accepted), &wrong, |b, t| {
            b.iter(|| authorizer.authorize(black_box(t.credential())))
        });
    }
    group.finish();
}

/// One decision while another thread decides as fast as it can on the same instance: what
/// the cores of a gateway do at once. Shared cache lines (counters, the identity's reference
/// count) show here and not in `authorize`.
fn authorize_contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorize_contended");
    let tokens: Vec<String> = (0..10).map(token).collect();
    let authorizer: Arc<dyn shared::BearerTokenAuthorizer> =
        auth(&format!("tokens: [{}]", tokens.join(", ")));
    let last = BearerToken::new(tokens[9].clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = std::thread::spawn({
        let authorizer = authorizer.clone();
        let token = last.clone();
        let stop = stop.clone();
        move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..1000 {
                    black_box(authorizer.authorize(black_box(token.credential())).ok());
                }
            }
        }
    });
    group.bench_function("allow/10", |b| {
        b.iter(|| authorizer.authorize(black_box(last.credential())))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    other.join().expect("the other thread");
    group.finish();
}

criterion_group!(benches, current_token, authorize, authorize_contended);
criterion_main!(benches);
