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
    let store = Arc::new(
        DiskKv::open(id, &config)
            .map_err(|error| ExtensionError::typed(id, error))?
            .with_gauges(context.gauge("bytes"), context.gauge("entries")),
    );
    let sweeper = Sweeper {
        store: store.clone(),
        every: config.sweep_interval,
    };
    let provided: Arc<dyn shared::KeyValueStore> = store;
    Ok(context
        .shared_builder()
        .provide::<KeyValueStore>(provided)
        .active(Box::new(sweeper), Readiness::Immediate)?)
}

/// Drops expired entries every `sweep_interval`.
struct Sweeper {
    store: Arc<DiskKv>,
    every: std::time::Duration,
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
                }
            }
        }
    }
}
