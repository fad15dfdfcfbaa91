//! `extension:acme_kv`: a third-party `key_value_store`, to show the path an extension crate
//! outside this repository takes. It depends on `otap-df-core` only, registers itself through
//! `linkme`, and a binary picks it up by naming the crate (see `collector/`).
//!
//! The store is local (one per core, no locks): a hash map with per-entry expiry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use otap_df_core::capability::{CapabilityId, KeyValueStore, KvError, key_value, local};
use otap_df_core::config::{ComponentConfig, ConfigError};
use otap_df_core::extension::{ExtensionContext, ExtensionError, ExtensionFactory, LocalExtension};
use otap_df_core::registry::Registry;
use serde::Deserialize;

/// `config:` of `extension:acme_kv`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeKvConfig {
    /// Expiry of entries written without a TTL; none when absent.
    #[serde(default, with = "humantime_serde")]
    pub default_ttl: Option<Duration>,
}

impl AcmeKvConfig {
    /// Decodes and checks the block.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        // The range every `key_value_store` accepts (1ms to 10 years).
        if let Some(reason) = decoded
            .default_ttl
            .and_then(|ttl| key_value::ttl_out_of_range("default_ttl", ttl))
        {
            return Err(config.invalid("default_ttl", reason));
        }
        Ok(decoded)
    }
}

/// `extension:acme_kv`.
pub static ACME_KV: ExtensionFactory = ExtensionFactory::new("acme_kv", env!("CARGO_PKG_NAME"))
    .description("third-party example: a local key/value store")
    .provides(&[CapabilityId::KeyValueStore])
    .validate_config(|config| AcmeKvConfig::decode(config).map(drop))
    .local(create)
    .build();

// Self-registration: found by `Registry::register_linked` in any binary that links this crate.
otap_df_core::submit_extension!(ACME_KV);

/// Registers `extension:acme_kv` explicitly.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&ACME_KV);
}

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<LocalExtension, ExtensionError> {
    let config = AcmeKvConfig::decode(config)?;
    let store: Rc<dyn local::KeyValueStore> = Rc::new(AcmeKv::new(config));
    Ok(context
        .local_builder()
        .provide::<KeyValueStore>(store)
        .passive()?)
}

/// Value and expiry, by key.
type Entries = HashMap<Vec<u8>, (Vec<u8>, Option<Instant>)>;

/// The store.
#[derive(Debug, Default)]
pub struct AcmeKv {
    config: AcmeKvConfig,
    entries: RefCell<Entries>,
}

impl AcmeKv {
    /// An empty store.
    pub fn new(config: AcmeKvConfig) -> Self {
        Self {
            config,
            entries: RefCell::default(),
        }
    }

    fn expiry(&self, ttl: Option<Duration>) -> Option<Instant> {
        ttl.or(self.config.default_ttl)
            .map(|ttl| Instant::now() + ttl)
    }

    /// Drops `key` if it has expired; whether a live entry remains.
    fn live(entries: &mut Entries, key: &[u8]) -> bool {
        match entries.get(key) {
            Some((_, Some(at))) if *at <= Instant::now() => {
                entries.remove(key);
                false
            }
            Some(_) => true,
            None => false,
        }
    }
}

#[otap_df_core::async_trait(?Send)]
impl local::KeyValueStore for AcmeKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let mut entries = self.entries.borrow_mut();
        Ok(Self::live(&mut entries, key)
            .then(|| entries.get(key).map(|(value, _)| value.clone()))
            .flatten())
    }

    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        let expiry = self.expiry(ttl);
        self.entries
            .borrow_mut()
            .insert(key.to_vec(), (value.to_vec(), expiry));
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let mut entries = self.entries.borrow_mut();
        if Self::live(&mut entries, key) {
            return Ok(false);
        }
        entries.insert(key.to_vec(), (value.to_vec(), self.expiry(ttl)));
        Ok(true)
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        let mut entries = self.entries.borrow_mut();
        let live = Self::live(&mut entries, key);
        entries.remove(key);
        Ok(live)
    }
}
