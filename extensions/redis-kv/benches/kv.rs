//! `key_value_store` on Redis through the capability against the raw `redis` crate, on the
//! same server and connection settings: one caller, one operation at a time (the latency a
//! processor sees). `cargo bench -p otap-df-extension-redis-kv --bench kv`; needs
//! `redis-server`.

#![allow(missing_docs, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otap_df_core::capability::shared;
use otap_df_core::config::{ComponentConfig, PositionIndex, YamlPath};
use otap_df_core::extension::ExtensionContext;
use otap_df_extension_redis_kv::connect;
use otap_df_extension_redis_kv::{REDIS_KV, RedisKvConfig};
use otap_df_tests::redis_server;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

fn kv(c: &mut Criterion) {
    // Without redis-server there is nothing to measure: `require` says so loudly (and fails
    // where Redis is required: CI, `cargo xtask test`) instead of panicking here.
    let Some(server) = redis_server::require("redis-kv bench") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&format!("url: '{}'", server.url())).expect("yaml");
    let path = YamlPath::root().key("config");
    let positions = PositionIndex::default();
    let config =
        RedisKvConfig::decode(&ComponentConfig::new(&value, &path, &positions)).expect("config");
    let context = ExtensionContext::new(&REDIS_KV, "bench", "g", "p", None);
    let store: Arc<dyn shared::KeyValueStore> =
        Arc::new(connect(&context, &config).expect("store"));
    // The raw client, with the settings the extension uses.
    let raw_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_number_of_retries(config.max_retries);
    let mut raw = runtime.block_on(async {
        ConnectionManager::new_with_config(
            redis::Client::open(server.url()).expect("client"),
            raw_config,
        )
        .await
        .expect("raw connection")
    });
    let value = [7u8; 64];
    runtime.block_on(async {
        store.set(b"key", &value, None).await.expect("set");
        redis::cmd("SET")
            .arg(b"otap-df:g/p/bench:key")
            .arg(&value[..])
            .query_async::<()>(&mut raw)
            .await
            .expect("raw set");
    });

    let mut group = c.benchmark_group("redis_kv");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("get_capability", |b| {
        b.iter(|| runtime.block_on(store.get(b"key")).expect("get"))
    });
    group.bench_function("get_raw_redis", |b| {
        b.iter(|| {
            runtime
                .block_on(
                    redis::cmd("GET")
                        .arg(b"otap-df:g/p/bench:key")
                        .query_async::<Option<Vec<u8>>>(&mut raw),
                )
                .expect("raw get")
        })
    });
    group.bench_function("set_capability", |b| {
        b.iter(|| {
            runtime
                .block_on(store.set(b"key", &value, None))
                .expect("set")
        })
    });
    group.bench_function("set_raw_redis", |b| {
        b.iter(|| {
            runtime
                .block_on(
                    redis::cmd("SET")
                        .arg(b"otap-df:g/p/bench:key")
                        .arg(&value[..])
                        .query_async::<()>(&mut raw),
                )
                .expect("raw set")
        })
    });
    group.finish();
    eprintln!(
        "redis-benchmark -p {} -c 1 -d 64 -t get,set -n 100000 -q",
        server.port()
    );
    if let Ok(output) = std::process::Command::new("redis-benchmark")
        .args(["-p", &server.port().to_string(), "-c", "1", "-d", "64"])
        .args(["-t", "get,set", "-n", "100000", "-q"])
        .output()
    {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    }
}

criterion_group!(benches, kv);
criterion_main!(benches);
