//! `extension:memory_kv`: the in-memory `key_value_store` every build has.
//!
//! Bounded by `max_entries`. When a write of a new key finds the store full, expired entries
//! are dropped first; if it is still full, the least recently *written* entry is evicted
//! (reads do not refresh an entry). Each entry may carry a time-to-live; an expired entry is
//! never returned and is dropped when next touched or when room is needed.
//!
//! Two variants: **shared** (the default: one store per pipeline for all cores, behind a
//! mutex held only for the map operation) and **local** (`per_core: true`: one store per
//! pipeline instance, `RefCell`, no lock). Shared is the default because a store is expected
//! to hold one truth: with one store per core, a duplicate that lands on another core than
//! its original is not recognised. A shared node binding the store makes it shared anyway.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::capability::{CapabilityId, KeyValueStore, KvError, key_value, local, shared};
use crate::config::{ComponentConfig, ConfigError};
use crate::extension::{
    ExecutionModel, ExtensionContext, ExtensionError, ExtensionFactory, LocalExtension,
    SharedExtension,
};

/// `config:` of `extension:memory_kv`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryKvConfig {
    /// Most entries held at once (default 100000, at least 1).
    #[serde(default = "MemoryKvConfig::default_max_entries")]
    pub max_entries: usize,
    /// Time-to-live of entries written without one (default: none, entries live until evicted).
    #[serde(default, with = "humantime_serde")]
    pub default_ttl: Option<Duration>,
    /// One store per core (no lock) instead of one for all cores. Each core then sees only
    /// what was written on it.
    #[serde(default)]
    pub per_core: bool,
}

impl MemoryKvConfig {
    fn default_max_entries() -> usize {
        100_000
    }

    fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if decoded.max_entries == 0 {
            return Err(config.invalid("max_entries", "`max_entries` must be at least 1"));
        }
        if let Some(reason) = decoded
            .default_ttl
            .and_then(|ttl| key_value::ttl_out_of_range("default_ttl", ttl))
        {
            return Err(config.invalid("default_ttl", format!("{reason}; omit it for no expiry")));
        }
        Ok(decoded)
    }
}

impl Default for MemoryKvConfig {
    fn default() -> Self {
        Self {
            max_entries: Self::default_max_entries(),
            default_ttl: None,
            per_core: false,
        }
    }
}

/// The `memory_kv` extension type.
pub static MEMORY_KV: ExtensionFactory = ExtensionFactory::new("memory_kv", env!("CARGO_PKG_NAME"))
    .description("in-memory key/value store: bounded, per-entry TTL, local or shared")
    .provides(&[CapabilityId::KeyValueStore])
    .validate_config(|config| MemoryKvConfig::decode(config).map(drop))
    .local(create_local)
    .shared(create_shared)
    .preferred_model(|config, _| match MemoryKvConfig::decode(config) {
        Ok(MemoryKvConfig { per_core: true, .. }) => ExecutionModel::Local,
        // Shared, also for an invalid config (validation reports it).
        _ => ExecutionModel::Shared,
    })
    .build();

fn create_local(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<LocalExtension, ExtensionError> {
    let config = MemoryKvConfig::decode(config)?;
    let store = LocalMemoryKv::new(context.extension_id(), &config);
    store.store.borrow_mut().metrics = StoreMetrics::of(context);
    let store: Rc<dyn local::KeyValueStore> = Rc::new(store);
    Ok(context
        .local_builder()
        .provide::<KeyValueStore>(store)
        .passive()?)
}

fn create_shared(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let config = MemoryKvConfig::decode(config)?;
    let store = SharedMemoryKv::new(context.extension_id(), &config);
    store.store().metrics = StoreMetrics::of(context);
    let store: Arc<dyn shared::KeyValueStore> = Arc::new(store);
    Ok(context
        .shared_builder()
        .provide::<KeyValueStore>(store)
        .passive()?)
}

struct Entry {
    value: Box<[u8]>,
    written: u64,
    expires_at: Option<Instant>,
}

/// The store itself, without any synchronisation.
struct Store {
    entries: HashMap<Arc<[u8]>, Entry>,
    by_write: BTreeMap<u64, Arc<[u8]>>,
    by_expiry: BTreeMap<(Instant, u64), Arc<[u8]>>,
    next_write: u64,
    max_entries: usize,
    default_ttl: Option<Duration>,
    metrics: StoreMetrics,
}

/// What a store shows the admin endpoint: `entries` (a gauge, expired entries not yet dropped
/// included) and `evictions` (entries dropped to make room while still live).
#[derive(Debug, Default)]
struct StoreMetrics {
    entries: Arc<AtomicI64>,
    evictions: Arc<AtomicU64>,
}

impl StoreMetrics {
    fn of(context: &ExtensionContext) -> Self {
        Self {
            entries: context.gauge("entries"),
            evictions: context.counter("evictions"),
        }
    }
}

impl Store {
    fn new(config: &MemoryKvConfig) -> Self {
        Self {
            entries: HashMap::new(),
            by_write: BTreeMap::new(),
            by_expiry: BTreeMap::new(),
            next_write: 0,
            max_entries: config.max_entries,
            default_ttl: config.default_ttl,
            metrics: StoreMetrics::default(),
        }
    }

    /// Keeps the `entries` gauge in step after a change.
    fn counted(&self) {
        let len = i64::try_from(self.entries.len()).unwrap_or(i64::MAX);
        self.metrics.entries.store(len, Ordering::Relaxed);
    }

    fn is_live(entry: &Entry, now: Instant) -> bool {
        entry.expires_at.is_none_or(|at| now < at)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.by_write.remove(&entry.written);
        if let Some(at) = entry.expires_at {
            self.by_expiry.remove(&(at, entry.written));
        }
        self.counted();
        Some(entry)
    }

    fn get(&mut self, key: &[u8], now: Instant) -> Option<Vec<u8>> {
        match self.entries.get(key) {
            Some(entry) if Self::is_live(entry, now) => Some(entry.value.to_vec()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        }
    }

    fn make_room(&mut self, now: Instant) {
        while self.entries.len() >= self.max_entries {
            let expired = self
                .by_expiry
                .first_key_value()
                .filter(|((at, _), _)| *at <= now);
            let victim = match expired {
                Some((_, key)) => key.clone(),
                None => match self.by_write.first_key_value() {
                    Some((_, key)) => {
                        self.metrics.evictions.fetch_add(1, Ordering::Relaxed);
                        key.clone()
                    }
                    None => return,
                },
            };
            self.remove(&victim);
        }
    }

    fn insert(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>, now: Instant) {
        self.remove(key);
        self.insert_absent(key, value, ttl, now);
    }

    /// Writes `key`, which the store does not hold, making room for it first.
    fn insert_absent(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>, now: Instant) {
        self.make_room(now);
        let written = self.next_write;
        self.next_write += 1;
        let key: Arc<[u8]> = Arc::from(key);
        let expires_at = ttl
            .or(self.default_ttl)
            .and_then(|ttl| now.checked_add(ttl));
        if let Some(at) = expires_at {
            self.by_expiry.insert((at, written), key.clone());
        }
        self.by_write.insert(written, key.clone());
        self.entries.insert(
            key,
            Entry {
                value: value.into(),
                written,
                expires_at,
            },
        );
        self.counted();
    }

    fn set_if_absent(
        &mut self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        now: Instant,
    ) -> bool {
        // One lookup for a key it holds (a duplicate, for dedup), two for one it writes; an
        // expired entry is dropped and written anew.
        match self.entries.get(key) {
            Some(entry) if Self::is_live(entry, now) => return false,
            Some(_) => {
                self.remove(key);
            }
            None => {}
        }
        self.insert_absent(key, value, ttl, now);
        true
    }

    fn delete(&mut self, key: &[u8], now: Instant) -> bool {
        self.remove(key)
            .is_some_and(|entry| Self::is_live(&entry, now))
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The local variant: one store per pipeline instance, no lock.
pub struct LocalMemoryKv {
    store: RefCell<Store>,
}

impl LocalMemoryKv {
    /// A store named `_extension_id` (the name is kept for symmetry with errors of other
    /// stores; the memory store never fails).
    pub fn new(_extension_id: &str, config: &MemoryKvConfig) -> Self {
        Self {
            store: RefCell::new(Store::new(config)),
        }
    }

    /// How many entries it holds, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.store.borrow().len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[crate::async_trait(?Send)]
impl local::KeyValueStore for LocalMemoryKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.store.borrow_mut().get(key, Instant::now()))
    }

    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.store
            .borrow_mut()
            .insert(key, value, ttl, Instant::now());
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        Ok(self
            .store
            .borrow_mut()
            .set_if_absent(key, value, ttl, Instant::now()))
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        Ok(self.store.borrow_mut().delete(key, Instant::now()))
    }
}

/// The shared variant: one store for every core, behind a mutex.
pub struct SharedMemoryKv {
    store: Mutex<Store>,
}

impl SharedMemoryKv {
    /// A store for `_extension_id`.
    pub fn new(_extension_id: &str, config: &MemoryKvConfig) -> Self {
        Self {
            store: Mutex::new(Store::new(config)),
        }
    }

    // No store operation panics while holding the lock, so a poisoned lock still guards a
    // consistent store.
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many entries it holds, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.store().len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[crate::async_trait]
impl shared::KeyValueStore for SharedMemoryKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.store().get(key, Instant::now()))
    }

    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.store().insert(key, value, ttl, Instant::now());
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        Ok(self.store().set_if_absent(key, value, ttl, Instant::now()))
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        Ok(self.store().delete(key, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_ttl_outside_what_every_store_holds_is_refused() {
        for ttl in ["0s", "18446744073709551615s"] {
            let value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&format!("default_ttl: {ttl}")).expect("yaml");
            let path = crate::config::YamlPath::root().key("config");
            let positions = crate::config::PositionIndex::default();
            let error = MemoryKvConfig::decode(&ComponentConfig::new(&value, &path, &positions))
                .expect_err(ttl)
                .to_string();
            assert!(
                error.contains(
                    "`default_ttl` must be between 1ms and 3650 days (10 years); omit it for no expiry"
                ),
                "{ttl}: {error}"
            );
        }
    }

    fn store(max_entries: usize) -> Store {
        Store::new(&MemoryKvConfig {
            max_entries,
            ..MemoryKvConfig::default()
        })
    }

    #[test]
    fn full_store_evicts_the_least_recently_written_entry() {
        let now = Instant::now();
        let mut s = store(2);
        s.insert(b"a", b"1", None, now);
        s.insert(b"b", b"2", None, now);
        s.insert(b"a", b"1bis", None, now); // rewriting `a` makes `b` the oldest write
        s.insert(b"c", b"3", None, now);
        assert_eq!(s.get(b"b", now), None);
        assert_eq!(s.get(b"a", now), Some(b"1bis".to_vec()));
        assert_eq!(s.get(b"c", now), Some(b"3".to_vec()));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn the_store_counts_entries_and_evictions_of_live_entries_only() {
        let context = ExtensionContext::new(&MEMORY_KV, "m", "g", "p", None);
        let now = Instant::now();
        let mut s = store(2);
        s.metrics = StoreMetrics::of(&context);
        s.insert(b"short", b"1", Some(Duration::from_secs(1)), now);
        s.insert(b"a", b"2", None, now);
        let later = now + Duration::from_secs(2);
        s.insert(b"b", b"3", None, later); // drops the expired `short`: not an eviction
        s.insert(b"c", b"4", None, later); // evicts the live `a`
        s.delete(b"b", later);
        let snapshot = context.metrics().snapshot();
        assert_eq!(snapshot.counters, [("evictions", 1)]);
        assert_eq!(snapshot.gauges, [("entries", 1)]);
    }

    #[test]
    fn full_store_drops_expired_entries_before_live_ones() {
        let now = Instant::now();
        let mut s = store(2);
        s.insert(b"old", b"1", None, now);
        s.insert(b"short", b"2", Some(Duration::from_secs(1)), now);
        let later = now + Duration::from_secs(2);
        s.insert(b"new", b"3", None, later);
        assert_eq!(s.get(b"old", later), Some(b"1".to_vec()));
        assert_eq!(s.get(b"short", later), None);
        assert_eq!(s.get(b"new", later), Some(b"3".to_vec()));
    }

    #[test]
    fn expired_entries_are_absent_for_every_operation() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut s = store(10);
        s.insert(b"k", b"v", Some(Duration::from_secs(5)), now);
        assert_eq!(s.get(b"k", now), Some(b"v".to_vec()));
        assert!(!s.delete(b"k", later), "an expired entry is not live");
        s.insert(b"k", b"v", Some(Duration::from_secs(5)), now);
        assert!(s.set_if_absent(b"k", b"w", None, later));
        assert_eq!(
            s.get(b"k", later + Duration::from_secs(3600)),
            Some(b"w".to_vec())
        );
    }

    #[test]
    fn default_ttl_applies_when_a_write_has_none() {
        let now = Instant::now();
        let mut s = Store::new(&MemoryKvConfig {
            max_entries: 10,
            default_ttl: Some(Duration::from_secs(60)),
            per_core: false,
        });
        s.insert(b"k", b"v", None, now);
        s.insert(b"own", b"v", Some(Duration::from_secs(600)), now);
        let later = now + Duration::from_secs(61);
        assert_eq!(s.get(b"k", later), None);
        assert_eq!(s.get(b"own", later), Some(b"v".to_vec()));
    }
}
