//! memory_kv passes the `key_value_store` behaviour suite in every variant.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::rc::Rc;
use std::sync::Arc;

use otap_df_core::capability::{KeyValueStore, local, shared};
use otap_df_core::memory_kv::{LocalMemoryKv, MemoryKvConfig, SharedMemoryKv};
use otap_df_tests::key_value_suite;

fn config() -> MemoryKvConfig {
    MemoryKvConfig::default()
}

#[test]
fn memory_kv_local_variant_passes_the_suite() {
    key_value_suite::run_local("memory_kv", || -> Rc<dyn local::KeyValueStore> {
        Rc::new(LocalMemoryKv::new("kv", &config()))
    });
}

#[test]
fn memory_kv_shared_variant_passes_the_suite() {
    key_value_suite::run_shared("memory_kv", || -> Arc<dyn shared::KeyValueStore> {
        Arc::new(SharedMemoryKv::new("kv", &config()))
    });
}

#[test]
fn memory_kv_shared_as_local_passes_the_suite() {
    key_value_suite::run_local("memory_kv (shared as local)", || {
        let store: Arc<dyn shared::KeyValueStore> = Arc::new(SharedMemoryKv::new("kv", &config()));
        <KeyValueStore as otap_df_core::capability::Capability>::shared_as_local(store)
    });
}

/// A store that forgets everything must fail the suite, naming the cases: the suite can fail.
#[test]
fn a_broken_store_fails_the_suite_with_the_failing_cases() {
    struct Forgetful;

    #[otap_df_core::async_trait(?Send)]
    impl local::KeyValueStore for Forgetful {
        async fn get(
            &self,
            _: &[u8],
        ) -> Result<Option<Vec<u8>>, otap_df_core::capability::KvError> {
            Ok(None)
        }
        async fn set(
            &self,
            _: &[u8],
            _: &[u8],
            _: Option<std::time::Duration>,
        ) -> Result<(), otap_df_core::capability::KvError> {
            Ok(())
        }
        async fn set_if_absent(
            &self,
            _: &[u8],
            _: &[u8],
            _: Option<std::time::Duration>,
        ) -> Result<bool, otap_df_core::capability::KvError> {
            Ok(true)
        }
        async fn delete(&self, _: &[u8]) -> Result<bool, otap_df_core::capability::KvError> {
            Ok(false)
        }
    }

    let outcome = std::panic::catch_unwind(|| {
        key_value_suite::run_local("forgetful", || -> Rc<dyn local::KeyValueStore> {
            Rc::new(Forgetful)
        })
    });
    let message = match outcome {
        Ok(()) => panic!("a store that forgets everything passed the suite"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    };
    assert!(
        message.starts_with("forgetful (local) failed 7 of 9"),
        "{message}"
    );
    assert!(
        message.contains(
            "keys_and_values_are_arbitrary_bytes: get binary: got None, want Some(70000 bytes"
        ),
        "{message}"
    );
    for case in [
        "set_then_get_returns_the_value",
        "set_if_absent_stores_only_the_first_value",
        "concurrent_set_if_absent_has_exactly_one_winner",
    ] {
        assert!(message.contains(case), "{case} missing from: {message}");
    }
}
