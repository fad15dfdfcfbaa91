//! `extension:disk_kv` on real files: the kit's key/value suites, what survives a reopen
//! (values, TTLs), the size cap, concurrent writers sharing commits, a file that is not a
//! store, and the configuration's checks.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otap_df_core::capability::{KeyValueStore, KvError, shared};
use otap_df_extension_disk_kv::{DISK_KV, DiskKv, DiskKvConfig, DiskKvError};
use otap_df_tests::key_value_suite;
use otap_df_tests::temp::TempDir;

/// A store in a fresh file of `dir`, named `name`.
fn store(dir: &TempDir, name: &str) -> DiskKv {
    DiskKv::open("disk", &DiskKvConfig::at(dir.path(name))).expect("opens")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn disk_kv_passes_the_shared_key_value_suite() {
    let dir = TempDir::new("disk-kv-suite-shared");
    let next = std::cell::Cell::new(0);
    key_value_suite::run_shared("disk_kv", || {
        next.set(next.get() + 1);
        Arc::new(store(&dir, &format!("{}.redb", next.get()))) as Arc<dyn shared::KeyValueStore>
    });
}

#[test]
fn disk_kv_passes_the_local_key_value_suite_through_the_adapter() {
    use otap_df_core::capability::Capability;
    let dir = TempDir::new("disk-kv-suite-local");
    let next = std::cell::Cell::new(0);
    key_value_suite::run_local("disk_kv", || {
        next.set(next.get() + 1);
        let shared: Arc<dyn shared::KeyValueStore> =
            Arc::new(store(&dir, &format!("{}.redb", next.get())));
        let local: Rc<dyn otap_df_core::capability::local::KeyValueStore> =
            KeyValueStore::shared_as_local(shared);
        local
    });
}

#[test]
fn values_and_their_ttls_survive_a_reopen() {
    use otap_df_core::capability::shared::KeyValueStore as _;
    let dir = TempDir::new("disk-kv-reopen");
    let runtime = runtime();
    runtime.block_on(async {
        let first = store(&dir, "s.redb");
        first.set(b"kept", b"value", None).await.unwrap();
        first
            .set(b"for-an-hour", b"h", Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        first
            .set(b"brief", b"b", Some(Duration::from_millis(200)))
            .await
            .unwrap();
        assert_eq!(first.usage().1, 3);
    });
    // Closed: the next open is a restart of the store.
    runtime.block_on(async {
        let again = store(&dir, "s.redb");
        assert_eq!(again.usage().1, 3, "the entries are counted at open");
        assert_eq!(again.get(b"kept").await.unwrap(), Some(b"value".to_vec()));
        assert_eq!(
            again.get(b"for-an-hour").await.unwrap(),
            Some(b"h".to_vec())
        );
        // The 200 ms TTL runs on the wall clock, across the reopen.
        let deadline = Instant::now() + Duration::from_secs(5);
        while again.get(b"brief").await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the brief entry never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The sweep drops it from the file.
        again.sweep().await.unwrap();
        assert_eq!(again.usage().1, 2);
    });
}

#[test]
fn a_write_past_max_bytes_is_refused_until_expired_entries_make_room() {
    use otap_df_core::capability::shared::KeyValueStore as _;
    let dir = TempDir::new("disk-kv-full");
    let config = DiskKvConfig {
        max_bytes: 1 << 20,
        ..DiskKvConfig::at(dir.path("full.redb"))
    };
    let store = DiskKv::open("disk", &config).unwrap();
    let value = vec![7u8; 100 * 1024];
    runtime().block_on(async {
        // Each entry costs its 2-byte key, its 100 KiB value and 8 bytes of expiry: ten fit
        // in 1 MiB, the eleventh does not.
        for i in 0..10u8 {
            let ttl = (i < 3).then_some(Duration::from_millis(100));
            store.set(&[b'k', i], &value, ttl).await.unwrap();
        }
        let refused = store.set(b"kA", &value, None).await.unwrap_err();
        assert_eq!(
            refused,
            KvError::Refused {
                store: "disk".into(),
                message: "the store is full: 1048576 bytes of keys and values (`max_bytes`) \
                          with no expired entry to drop; raise `max_bytes`, or give entries a \
                          TTL (`default_ttl`)"
                    .into(),
            }
        );
        // Overwriting a present key in place fits.
        store.set(&[b'k', 9], &value, None).await.unwrap();
        // Once the three short-lived entries expire (the last written last), room is made by
        // dropping them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.get(&[b'k', 2]).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.set(b"kA", &value, None).await.unwrap();
        assert_eq!(store.usage().1, 8);
    });
}

#[test]
fn concurrent_writers_share_commits_and_set_if_absent_has_one_winner() {
    use otap_df_core::capability::shared::KeyValueStore as _;
    let dir = TempDir::new("disk-kv-concurrent");
    let store = Arc::new(store(&dir, "c.redb"));
    let runtime = runtime();
    let winners: usize = runtime.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|i: u32| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.set(&i.to_be_bytes(), b"mine", None).await.unwrap();
                    store
                        .set_if_absent(b"contested", &i.to_be_bytes(), None)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        winners
    });
    assert_eq!(winners, 1, "one set_if_absent stored the contested key");
    assert_eq!(store.usage().1, 65);
}

#[test]
fn two_instances_of_one_file_in_a_process_share_it() {
    use otap_df_core::capability::shared::KeyValueStore as _;
    let dir = TempDir::new("disk-kv-shared-file");
    let (a, b) = (store(&dir, "one.redb"), store(&dir, "one.redb"));
    runtime().block_on(async {
        a.set(b"k", b"v", None).await.unwrap();
        assert_eq!(b.get(b"k").await.unwrap(), Some(b"v".to_vec()));
    });
}

#[test]
fn a_file_that_is_not_a_store_is_refused_naming_it_and_left_as_it_is() {
    let dir = TempDir::new("disk-kv-foreign");
    let path = dir.path("notes.txt");
    let text = b"these are someone's notes, not a store\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let error = DiskKv::open("disk", &DiskKvConfig::at(&path))
        .err()
        .expect("refused");
    let DiskKvError::Unreadable { path: named, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(named.file_name(), path.file_name());
    assert!(
        error
            .to_string()
            .ends_with("it is left as it is: name another file, or move this one away"),
        "{error}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), text, "the file is untouched");
}

#[test]
fn each_bad_option_is_refused_where_it_is() {
    let dir = TempDir::new("disk-kv-config");
    let file = dir.path("s.redb");
    let check = |yaml: String| {
        otap_df_tests::config::try_decode(&yaml, |config| DISK_KV.validate(config))
            .expect_err(&yaml)
    };
    let at = file.display();
    assert!(
        check(format!("{{ path: '{at}', max_bytes: 1024 }}"))
            .contains("`max_bytes` must be between 1048576 (1 MiB) and 1099511627776 (1 TiB)")
    );
    assert!(
        check(format!("{{ path: '{at}', sweep_interval: 10ms }}"))
            .contains("`sweep_interval` must be between 1s and 1d")
    );
    assert!(check(format!("{{ path: '{at}', default_ttl: 0s }}")).contains("`default_ttl`"));
    let missing = dir.path("missing/s.redb");
    let error = check(format!("{{ path: '{}' }}", missing.display()));
    assert!(
        error.contains("of `path` does not exist; create it, or name a file in one that does"),
        "{error}"
    );
    assert!(check("{ max_bytes: 1048576 }".to_owned()).contains("path"));
    otap_df_tests::config::try_decode(&format!("{{ path: '{at}' }}"), |config| {
        DISK_KV.validate(config)
    })
    .expect("valid");
    assert!(!file.exists(), "validating creates nothing");
}
