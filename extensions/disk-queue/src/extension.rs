//! `extension:disk_queue`: the factory, and the task that keeps its gauges current.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use otap_df_core::capability::{CapabilityId, DurableQueue, shared};
use otap_df_core::config::ComponentConfig;
use otap_df_core::extension::{
    ExtensionContext, ExtensionControl, ExtensionError, ExtensionFactory, ExtensionMessage,
    Readiness, SharedExtension, SharedTask,
};

use crate::config::DiskQueueConfig;
use crate::store::DiskQueue;

/// How often the gauges are brought up to date.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// `extension:disk_queue`.
pub static DISK_QUEUE: ExtensionFactory = ExtensionFactory::new(
    "disk_queue",
    env!("CARGO_PKG_NAME"),
)
.description(
    "durable queues on local disk (segment files, group commit): exporters' persistent queues",
)
.provides(&[CapabilityId::DurableQueue])
.validate_config(|config| DiskQueueConfig::decode(config).map(drop))
.shared(create)
.build();

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let config = DiskQueueConfig::decode(config)?;
    let id = context.extension_id();
    let queues =
        Arc::new(DiskQueue::open(id, &config).map_err(|error| ExtensionError::typed(id, error))?);
    let gauges = Gauges {
        queues: queues.clone(),
        entries: context.gauge("entries"),
        bytes: context.gauge("bytes"),
        oldest_age_seconds: context.gauge("oldest_age_seconds"),
        torn_tail_bytes: context.counter("torn_tail_bytes"),
        corrupt_entries: context.counter("corrupt_entries"),
    };
    gauges.show();
    let provided: Arc<dyn shared::DurableQueue> = queues;
    Ok(context
        .shared_builder()
        .provide::<DurableQueue>(provided)
        .active(Box::new(gauges), Readiness::Immediate)?)
}

/// What the queues hold, shown in the extension's gauges and counters.
struct Gauges {
    queues: Arc<DiskQueue>,
    entries: Arc<AtomicI64>,
    bytes: Arc<AtomicI64>,
    oldest_age_seconds: Arc<AtomicI64>,
    torn_tail_bytes: Arc<AtomicU64>,
    corrupt_entries: Arc<AtomicU64>,
}

impl Gauges {
    fn show(&self) {
        let totals = self.queues.totals();
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.entries.store(gauge(totals.entries), Ordering::Relaxed);
        self.bytes.store(gauge(totals.bytes), Ordering::Relaxed);
        let age = totals.oldest.map_or(0, |age| age.as_secs());
        self.oldest_age_seconds.store(gauge(age), Ordering::Relaxed);
        let (torn, corrupt) = self.queues.damage();
        self.torn_tail_bytes.store(torn, Ordering::Relaxed);
        self.corrupt_entries.store(corrupt, Ordering::Relaxed);
    }
}

#[otap_df_core::async_trait]
impl SharedTask for Gauges {
    async fn run(self: Box<Self>, mut control: ExtensionControl) -> Result<(), ExtensionError> {
        let mut ticks = tokio::time::interval(GAUGE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                    Some(_) => {}
                },
                _ = ticks.tick() => {
                    self.show();
                    self.queues.checkpoint();
                }
            }
        }
    }
}
