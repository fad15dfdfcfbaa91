//! `extension:disk_kv`: the factory, and the task that drops expired entries.

use std::sync::Arc;

use otap_df_core::capability::{CapabilityId, KeyValueStore, shared};
use otap_df_core::config::ComponentConfig;
use otap_df_core::extension::{
    ExtensionContext, ExtensionControl, ExtensionError, ExtensionFactory, ExtensionMessage,
    Readiness, SharedExtension, SharedTask,
};

use crate::config::DiskKvConfig;
use crate::store::DiskKv;

/// `extension:disk_kv`.
pub static DISK_KV: ExtensionFactory = ExtensionFactory::new("disk_kv", env!("CARGO_PKG_NAME"))
    .description("key/value store on local disk (redb): kept across restarts, TTL, bounded")
    .provides(&[CapabilityId::KeyValueStore])
    .validate_config(|config| DiskKvConfig::decode(config).map(drop))
    .shared(create)
    .build();

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let config = DiskKvConfig::decode(config)?;
    let id = context.extension_id();
    let store =
        Arc::new(DiskKv::open(id, &config).map_err(|error| ExtensionError::typed(id, error))?);
    let sweeper = Sweeper {
        store: store.clone(),
        every: config.sweep_interval,
        bytes: context.gauge("bytes"),
        entries: context.gauge("entries"),
    };
    sweeper.show();
    let provided: Arc<dyn shared::KeyValueStore> = store;
    Ok(context
        .shared_builder()
        .provide::<KeyValueStore>(provided)
        .active(Box::new(sweeper), Readiness::Immediate)?)
}

/// Drops expired entries every `sweep_interval`, and shows the store's size.
struct Sweeper {
    store: Arc<DiskKv>,
    every: std::time::Duration,
    bytes: Arc<std::sync::atomic::AtomicI64>,
    entries: Arc<std::sync::atomic::AtomicI64>,
}

impl Sweeper {
    fn show(&self) {
        let (bytes, entries) = self.store.usage();
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.bytes
            .store(gauge(bytes), std::sync::atomic::Ordering::Relaxed);
        self.entries
            .store(gauge(entries), std::sync::atomic::Ordering::Relaxed);
    }
}

#[otap_df_core::async_trait]
impl SharedTask for Sweeper {
    async fn run(self: Box<Self>, mut control: ExtensionControl) -> Result<(), ExtensionError> {
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                    Some(_) => {}
                },
                _ = ticks.tick() => {
                    if let Err(error) = self.store.sweep().await {
                        tracing::warn!(%error, "dropping expired entries failed; trying again later");
                    }
                    self.show();
                }
            }
        }
    }
}
