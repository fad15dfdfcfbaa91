//! `processor:dedup`: drops batches already seen within a TTL.
//!
//! The key of a batch is its signal and a 128-bit hash of its bytes, stored with
//! `set_if_absent` in the bound `key_value_store`: the first writer forwards the batch, later
//! ones drop it. When the store fails, the batch is **forwarded** (fail open): a store outage
//! may let duplicates through, it never loses data. Such batches are counted as errors and the
//! first failure and the recovery are logged.
//!
//! A batch whose sender waits for it to be kept downstream (a durable queue: the payload
//! carries an acknowledgement) is remembered only if it is: when the queue refuses it (full)
//! or it is lost on the way, its key is deleted before the sender is told to send it again,
//! so that the retry is not dropped as a duplicate of a batch nobody kept. A batch that is
//! kept settles the sender's acknowledgement where it settles (no task waits for it); only
//! the keys to forget go to the node's task that deletes them.

use std::rc::Rc;
use std::time::Duration;

use otap_df_core::capability::{CapabilityId, KeyValueStore, key_value, local};
use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
use otap_df_core::data::{Acknowledgement, NotAccepted, OtlpPayload};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::node::{
    LocalProcessor, NodeContext, NodeCounters, NodeError, NodeInstance, Outputs,
};
use serde::Deserialize;

/// `config:` of `processor:dedup`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// How long a batch's hash is remembered.
    #[serde(default = "DedupConfig::default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

impl DedupConfig {
    fn default_ttl() -> Duration {
        Duration::from_secs(600)
    }

    /// Decodes and checks ranges.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if let Some(reason) = key_value::ttl_out_of_range("ttl", decoded.ttl) {
            return Err(config.invalid("ttl", reason));
        }
        Ok(decoded)
    }
}

/// `processor:dedup`.
pub static DEDUP: NodeFactory =
    NodeFactory::new(ComponentKind::Processor, "dedup", env!("CARGO_PKG_NAME"))
        .description("drops batches already seen within a TTL, using a key/value store")
        .accepts(&[CapabilityRequirement::required(CapabilityId::KeyValueStore)])
        .validate_config(|config| DedupConfig::decode(config).map(drop))
        .forwards_acknowledgements()
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = DedupConfig::decode(config)?;
    let store = capabilities.require_local::<KeyValueStore>()?;
    Ok(NodeInstance::Processor(Box::new(Dedup {
        node: context.node_id.clone(),
        store,
        ttl: config.ttl,
        store_failing: false,
        forget: None,
    })))
}

struct Dedup {
    node: String,
    store: Rc<dyn local::KeyValueStore>,
    ttl: Duration,
    store_failing: bool,
    /// What the node's task forgets (started with the first batch that needs it).
    forget: Option<tokio::sync::mpsc::UnboundedSender<Unkept>>,
}

/// A remembered batch that was not kept: its key, and the sender to tell why once it is
/// forgotten.
type Unkept = (Vec<u8>, Acknowledgement, NotAccepted);

impl Dedup {
    /// Where the keys of batches not kept go (the node's task, started on first use).
    fn forgetting(&mut self) -> tokio::sync::mpsc::UnboundedSender<Unkept> {
        self.forget
            .get_or_insert_with(|| {
                let (forget, unkept) = tokio::sync::mpsc::unbounded_channel();
                tokio::task::spawn_local(forget_unkept(self.store.clone(), unkept));
                forget
            })
            .clone()
    }
}

/// The store key of a payload: `dedup:<signal>:` and the 128-bit hash of its bytes.
pub fn key(payload: &OtlpPayload) -> Vec<u8> {
    const PREFIX: &[u8] = b"dedup:";
    let signal = payload.signal().as_str().as_bytes();
    // One allocation, of the key's size, for every batch.
    let mut key = Vec::with_capacity(PREFIX.len() + signal.len() + 1 + 16);
    key.extend_from_slice(PREFIX);
    key.extend_from_slice(signal);
    key.push(b':');
    key.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(payload.bytes()).to_be_bytes());
    key
}

#[otap_df_core::async_trait(?Send)]
impl LocalProcessor for Dedup {
    async fn process(&mut self, mut data: OtlpPayload, outputs: &Outputs) -> Result<(), NodeError> {
        let key = key(&data);
        let remembered = match self.store.set_if_absent(&key, b"", Some(self.ttl)).await {
            Ok(first) => {
                if self.store_failing {
                    self.store_failing = false;
                    tracing::info!(node = %self.node, "key/value store answers again; deduplicating");
                }
                if !first {
                    // Dropped on purpose: as good as kept, for the sender.
                    NodeCounters::add(&outputs.counters().records_dropped, data.records());
                    data.settle();
                    return Ok(());
                }
                true
            }
            Err(error) => {
                NodeCounters::add(&outputs.counters().errors, 1);
                if !self.store_failing {
                    self.store_failing = true;
                    tracing::warn!(node = %self.node, %error, "key/value store failed; forwarding batches without deduplication until it recovers");
                }
                false
            }
        };
        if remembered && let Some(sender) = data.take_acknowledgement() {
            // Kept, the sender is told at once where it settles; not kept, the key is
            // forgotten first (by the node's task), so that the retry passes.
            let forget = self.forgetting();
            data = data.with_acknowledgement(Acknowledgement::then(move |kept| match kept {
                Ok(()) => sender.settle(),
                Err(why) => {
                    if let Err(tokio::sync::mpsc::error::SendError((_, sender, why))) =
                        forget.send((key, sender, why))
                    {
                        // The node is gone: nothing can forget the key.
                        sender.refuse(why);
                    }
                }
            }));
        }
        outputs.send(data).await
    }
}

/// Forgets the keys of batches that were not kept, then tells their senders why, so that a
/// retry is not dropped as a duplicate of a batch nobody kept (each on a task of its own: a
/// slow store answers them side by side).
async fn forget_unkept(
    store: Rc<dyn local::KeyValueStore>,
    mut unkept: tokio::sync::mpsc::UnboundedReceiver<Unkept>,
) {
    while let Some((key, sender, why)) = unkept.recv().await {
        let store = store.clone();
        tokio::task::spawn_local(async move {
            if let Err(error) = store.delete(&key).await {
                tracing::warn!(%error, "cannot forget a batch that was not kept; its retry will be dropped as a duplicate until the TTL passes");
            }
            sender.refuse(why);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<DedupConfig, String> {
        otap_df_tests::config::try_decode(yaml, DedupConfig::decode)
    }

    #[test]
    fn ttls_no_store_can_hold_are_config_errors() {
        for ttl in ["0s", "18446744073709551615s", "3651days"] {
            let error = decode(&format!("ttl: {ttl}")).expect_err(ttl);
            assert!(
                error.contains("`ttl` must be between 1ms and 3650 days (10 years)"),
                "{ttl}: {error}"
            );
        }
        for ttl in ["1ms", "10m", "3650days"] {
            assert!(decode(&format!("ttl: {ttl}")).is_ok(), "{ttl}");
        }
    }
}
