//! What the redis-kv test files share.

#![allow(dead_code, clippy::expect_used)] // each test file uses a part; a failure is a test failure

use std::time::Duration;

use otap_df_core::config::{ComponentConfig, PositionIndex, YamlPath};
use otap_df_core::registry::Registry;
use otap_df_core::resolve::load_with_env;
use otap_df_core::runtime::engine::{Engine, Failure, RunOptions};
use otap_df_extension_redis_kv::RedisKvConfig;

/// Decodes a `config:` block of `extension:redis_kv`.
pub fn config(yaml: &str) -> RedisKvConfig {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    let path = YamlPath::root().key("config");
    let positions = PositionIndex::default();
    RedisKvConfig::decode(&ComponentConfig::new(&value, &path, &positions)).expect("config")
}

/// A two-worker runtime for calls outside an engine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Built-ins, the nodes and `extension:redis_kv`.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    otap_df_extension_redis_kv::register(&mut registry);
    registry.finish().expect("registry")
}

/// How a pipeline failed to start because its store `store` was not ready.
#[derive(Debug)]
pub struct NotReady {
    /// The timeout reported.
    pub timeout: Duration,
    /// What the probe last reported.
    pub reason: String,
    /// The error as shown to users (`Display` and `Debug`).
    pub shown: String,
}

/// Runs a dedup pipeline whose store `store` has `config:` `store_config` and a `startup_timeout`
/// of 1s, and returns why it did not start (panics when it starts, or fails in several ways).
pub fn start_expecting_failure(store_config: &str) -> Failure {
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          store:
            type: extension:redis_kv
            startup_timeout: 1s
            config: {store_config}
        nodes:
          gen: {{ type: receiver:generator, config: {{ count: 1 }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: store }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: gen, to: dedup }}
          - {{ from: dedup, to: out }}
"
    );
    let resolved = load_with_env(&text, "redis.yaml", &registry(), &|_| None).expect("valid");
    let error = Engine::new(resolved, RunOptions::default())
        .run()
        .expect_err("the store is not ready");
    let [failure] = error.0.as_slice() else {
        panic!("one failure expected: {error:?}");
    };
    failure.clone()
}

/// Like [`start_expecting_failure`], for a readiness timeout.
pub fn start_expecting_not_ready(store_config: &str) -> NotReady {
    let failure = start_expecting_failure(store_config);
    let Failure::ReadinessTimeout {
        extension,
        timeout,
        reason,
        ..
    } = &failure
    else {
        panic!("{failure:?}");
    };
    assert_eq!(extension, "store");
    NotReady {
        timeout: *timeout,
        reason: reason.clone().expect("what the probe saw"),
        shown: format!("{failure} {failure:?}"),
    }
}
