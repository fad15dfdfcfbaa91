//! Records per second through whole pipelines on one core: `generator -> noop` and
//! `generator -> dedup(memory_kv) -> noop`; their ratio is the cost of one capability hop on
//! the data path. `cargo bench -p otap-df-nodes --bench pipeline`.

#![allow(missing_docs, clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otap_df_core::registry::Registry;
use otap_df_core::resolve::{ResolvedConfig, load_with_env};
use otap_df_core::runtime::{Engine, RunOptions};

/// `(batches, records per batch)`: records/s with realistic batches, and the per-batch cost
/// of the engine and the hop with one-record batches.
const SHAPES: [(u64, u64); 2] = [(2_000, 100), (20_000, 1)];

fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    registry.finish().expect("registry")
}

fn config(with_dedup: bool, batches: u64, batch_size: u64) -> String {
    let (extensions, dedup, connections) = if with_dedup {
        (
            "        extensions:\n          store: { type: extension:memory_kv }\n",
            "          dedup: { type: processor:dedup, capabilities: { key_value_store: store } }\n",
            "          - { from: gen, to: dedup }\n          - { from: dedup, to: sink }\n",
        )
    } else {
        ("", "", "          - { from: gen, to: sink }\n")
    };
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
{extensions}        nodes:
          gen: {{ type: receiver:generator, config: {{ batch_size: {batch_size}, count: {batches} }} }}
{dedup}          sink: {{ type: exporter:noop }}
        connections:
{connections}"
    )
}

fn resolved(text: &str, registry: &Registry) -> ResolvedConfig {
    load_with_env(text, "bench.yaml", registry, &|_| None).expect("valid bench configuration")
}

fn pipelines(c: &mut Criterion) {
    let registry = registry();
    for (batches, batch_size) in SHAPES {
        let mut group = c.benchmark_group(format!("pipeline_one_core_batch_{batch_size}"));
        group.throughput(Throughput::Elements(batches * batch_size));
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(10));
        for (name, with_dedup) in [
            ("generator_noop", false),
            ("generator_dedup_memory_kv_noop", true),
        ] {
            let text = config(with_dedup, batches, batch_size);
            group.bench_function(name, |b| {
                b.iter_batched(
                    || resolved(&text, &registry),
                    |resolved| {
                        let options = RunOptions {
                            cores: Some(1),
                            ..RunOptions::default()
                        };
                        Engine::new(resolved, options).run().expect("clean run");
                    },
                    criterion::BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }
}

criterion_group!(benches, pipelines);
criterion_main!(benches);
