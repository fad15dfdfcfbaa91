//! Benchmarks of the static half: configuration resolution and the memory key/value store
//! through its capability (local, shared, shared-as-local). `cargo xtask bench`.

#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use otap_df_core::capability::{Capability, CapabilityId, KeyValueStore, local, shared};
use otap_df_core::config::{ComponentKind, parse_with_env};
use otap_df_core::memory_kv::{LocalMemoryKv, MemoryKvConfig, SharedMemoryKv};
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::registry::Registry;
use otap_df_core::resolve::{load_with_env, resolve};

static SOURCE: NodeFactory = NodeFactory::new(ComponentKind::Receiver, "source", "bench");
static USER: NodeFactory = NodeFactory::new(ComponentKind::Processor, "user", "bench")
    .accepts(&[CapabilityRequirement::required(CapabilityId::KeyValueStore)]);
static SINK: NodeFactory = NodeFactory::new(ComponentKind::Exporter, "sink", "bench");

fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    registry.register_node(&SOURCE);
    registry.register_node(&USER);
    registry.register_node(&SINK);
    registry.finish().expect("registry")
}

/// A pipeline of `nodes` processors, each bound to one of `extensions` memory stores, fed by
/// one receiver and feeding one exporter.
fn config(nodes: usize, extensions: usize) -> String {
    let mut text = String::from(
        "version: otap_df/v1\ngroups:\n  g:\n    pipelines:\n      p:\n        extensions:\n",
    );
    for e in 0..extensions {
        text.push_str(&format!(
            "          kv{e}: {{ type: extension:memory_kv, config: {{ max_entries: 1000 }} }}\n"
        ));
    }
    text.push_str(
        "        nodes:\n          src: { type: receiver:source }\n          sink: { type: exporter:sink }\n",
    );
    for n in 0..nodes {
        text.push_str(&format!(
            "          n{n}: {{ type: processor:user, capabilities: {{ key_value_store: kv{} }} }}\n",
            n % extensions
        ));
    }
    text.push_str("        connections:\n");
    for n in 0..nodes {
        text.push_str(&format!("          - {{ from: src, to: n{n} }}\n"));
        text.push_str(&format!("          - {{ from: n{n}, to: sink }}\n"));
    }
    text
}

fn resolution(c: &mut Criterion) {
    let registry = registry();
    let mut group = c.benchmark_group("resolve");
    group.sample_size(20);
    for nodes in [100, 1_000, 10_000] {
        let text = config(nodes, 100);
        let document = parse_with_env(&text, "bench.yaml", &|_| None).expect("valid");
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(
            BenchmarkId::new("resolve_only", nodes),
            &document,
            |b, document| {
                b.iter_batched(
                    || document.clone(),
                    |document| black_box(resolve(document, &registry).expect("resolves")),
                    criterion::BatchSize::LargeInput,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new("parse_and_resolve", nodes),
            &text,
            |b, text| {
                b.iter(|| {
                    black_box(
                        load_with_env(text, "bench.yaml", &registry, &|_| None).expect("loads"),
                    )
                })
            },
        );
    }
    group.finish();

    // Where parsing time goes, for the 1000-node document.
    let text = config(1_000, 100);
    let mut group = c.benchmark_group("parse_1000_nodes");
    group.sample_size(20);
    group.bench_function("serde_yaml_ng_value", |b| {
        b.iter(|| black_box(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).expect("yaml")))
    });
    group.bench_function("position_index", |b| {
        b.iter(|| black_box(otap_df_core::config::PositionIndex::build(&text)))
    });
    group.bench_function("parse", |b| {
        b.iter(|| black_box(parse_with_env(&text, "bench.yaml", &|_| None).expect("valid")))
    });
    group.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Times `iters` calls of `op` inside one `block_on`, so the runtime's entry cost is not
/// counted per call.
macro_rules! per_call {
    ($b:expr, $runtime:expr, $store:expr, |$s:ident, $i:ident| $op:expr) => {
        $b.iter_custom(|iters| {
            let $s = $store.clone();
            $runtime.block_on(async move {
                let started = Instant::now();
                for $i in 0..iters {
                    black_box($op.await.expect("memory store"));
                }
                started.elapsed()
            })
        })
    };
}

fn key(i: u64) -> [u8; 8] {
    (i % 4096).to_le_bytes()
}

fn key_value(c: &mut Criterion) {
    let runtime = runtime();
    let config = MemoryKvConfig::default();
    let local_store: Rc<dyn local::KeyValueStore> = Rc::new(LocalMemoryKv::new("bench", &config));
    let shared_store: Arc<dyn shared::KeyValueStore> =
        Arc::new(SharedMemoryKv::new("bench", &config));
    let adapted: Rc<dyn local::KeyValueStore> = KeyValueStore::shared_as_local(Arc::new(
        SharedMemoryKv::new("bench", &config),
    )
        as Arc<dyn shared::KeyValueStore>);
    let mut group = c.benchmark_group("memory_kv");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let value = [7u8; 64];
    for (variant, store) in [("local", &local_store), ("shared_as_local", &adapted)] {
        group.bench_function(BenchmarkId::new("set", variant), |b| {
            per_call!(b, runtime, store, |s, i| s.set(&key(i), &value, None))
        });
        group.bench_function(BenchmarkId::new("get", variant), |b| {
            per_call!(b, runtime, store, |s, i| s.get(&key(i)))
        });
    }
    group.bench_function(BenchmarkId::new("set", "shared"), |b| {
        per_call!(b, runtime, shared_store, |s, i| s.set(
            &key(i),
            &value,
            None
        ))
    });
    group.bench_function(BenchmarkId::new("get", "shared"), |b| {
        per_call!(b, runtime, shared_store, |s, i| s.get(&key(i)))
    });
    // What `processor:dedup` asks for each batch, through the adapter its node holds: a key
    // never seen (written, with a TTL; a full store evicts the oldest), and one it holds.
    let ttl = Some(Duration::from_secs(60));
    let next = std::cell::Cell::new(0u64);
    let fresh = || {
        next.set(next.get() + 1);
        (u64::MAX - next.get()).to_le_bytes()
    };
    group.bench_function(
        BenchmarkId::new("set_if_absent_new", "shared_as_local"),
        |b| {
            per_call!(b, runtime, adapted, |s, _i| s.set_if_absent(
                &fresh(),
                b"",
                ttl
            ))
        },
    );
    group.bench_function(
        BenchmarkId::new("set_if_absent_held", "shared_as_local"),
        |b| {
            per_call!(b, runtime, adapted, |s, i| s.set_if_absent(
                &key(i),
                b"",
                ttl
            ))
        },
    );
    group.finish();
}

criterion_group!(benches, resolution, key_value);
criterion_main!(benches);
