//! `disk_kv` beside `memory_kv`: a get, a durable set (one writer: a commit and a sync each),
//! and writes per second with many writers sharing commits.

#![allow(clippy::expect_used)] // a bench that cannot set up has nothing to measure

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::Criterion;
use otap_df_core::capability::shared;
use otap_df_core::memory_kv::{MemoryKvConfig, SharedMemoryKv};
use otap_df_extension_disk_kv::{DiskKv, DiskKvConfig};
use otap_df_tests::temp::TempDir;

fn stores(c: &mut Criterion, dir: &TempDir) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let disk: Arc<dyn shared::KeyValueStore> =
        Arc::new(DiskKv::open("bench", &DiskKvConfig::at(dir.path("bench.redb"))).expect("opens"));
    let memory: Arc<dyn shared::KeyValueStore> =
        Arc::new(SharedMemoryKv::new("bench", &MemoryKvConfig::default()));
    let mut group = c.benchmark_group("key_value");
    for (name, store) in [("memory_kv", &memory), ("disk_kv", &disk)] {
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
}

/// Writes per second with `writers` tasks each writing `each` new keys, on two threads.
fn concurrent(dir: &TempDir, writers: u32, each: u32) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let store = Arc::new(
        DiskKv::open(
            "bench",
            &DiskKvConfig::at(dir.path(&format!("c{writers}.redb"))),
        )
        .expect("opens"),
    );
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    use otap_df_core::capability::shared::KeyValueStore as _;
                    for i in 0..each {
                        let key = (w * 1_000_000 + i).to_be_bytes();
                        store
                            .set(&key, b"value-0123456789abcdef", None)
                            .await
                            .expect("set");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
    });
    f64::from(writers * each) / started.elapsed().as_secs_f64()
}

fn main() {
    let dir = TempDir::new("disk-kv-bench");
    let mut criterion = Criterion::default().configure_from_args();
    stores(&mut criterion, &dir);
    criterion.final_summary();
    // `cargo test --all-targets` runs this binary once without `--bench`: the timed loops are
    // for benchmarking only.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    for writers in [1, 8, 64, 256] {
        let each = 4_000 / writers.min(64) + 16;
        let rates: Vec<String> = (0..3)
            .map(|_| format!("{:.0}", concurrent(&dir, writers, each)))
            .collect();
        eprintln!(
            "disk_kv: {writers} writers: {} writes/s (three runs)",
            rates.join(", ")
        );
    }
}
