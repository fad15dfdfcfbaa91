//! What the redis-kv test files share.

#![allow(dead_code, clippy::expect_used)] // each test file uses a part; a failure is a test failure

use otap_df_extension_redis_kv::RedisKvConfig;

/// Decodes a `config:` block of `extension:redis_kv`.
pub fn config(yaml: &str) -> RedisKvConfig {
    otap_df_tests::config::decode(yaml, RedisKvConfig::decode)
}

/// A two-worker runtime for calls outside an engine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
