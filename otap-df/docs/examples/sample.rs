//! `processor:acme_sample`: keeps one payload in `every` per signal, counting in the bound
//! `key_value_store`. The node author's guide (`otap_df::node`) shows this file in full, and
//! `examples/nodes` runs it in pipelines.

use std::rc::Rc;

use otap_df::node::serde::Deserialize;
use otap_df::node::{
    Capabilities, CapabilityId, CapabilityRequirement, ComponentConfig, ComponentKind, ConfigError,
    KeyValueStore, LocalProcessor, NodeContext, NodeCounters, NodeError, NodeFactory, NodeInstance,
    OtlpPayload, Outputs, async_trait, local,
};

/// `config:` of `processor:acme_sample`.
#[derive(Debug, Deserialize)]
#[serde(crate = "otap_df::node::serde", deny_unknown_fields)]
pub struct SampleConfig {
    /// Keep one payload in `every`, per signal.
    pub every: u64,
}

impl SampleConfig {
    /// Decodes and checks the range.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if !(1..=1_000_000).contains(&decoded.every) {
            return Err(config.invalid("every", "`every` must be between 1 and 1000000"));
        }
        Ok(decoded)
    }
}

/// `processor:acme_sample`.
pub static SAMPLE: NodeFactory = NodeFactory::new(
    ComponentKind::Processor,
    "acme_sample",
    env!("CARGO_PKG_NAME"),
)
.description("keeps one payload in `every` per signal, counting in a key/value store")
.accepts(&[CapabilityRequirement::required(CapabilityId::KeyValueStore)])
.validate_config(|config| SampleConfig::decode(config).map(drop))
.create(create);

otap_df::node::submit_node!(SAMPLE);

fn create(
    _: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let every = SampleConfig::decode(config)?.every;
    let store = capabilities.require_local::<KeyValueStore>()?;
    Ok(NodeInstance::Processor(Box::new(Sample { every, store })))
}

struct Sample {
    every: u64,
    store: Rc<dyn local::KeyValueStore>,
}

#[async_trait(?Send)]
impl LocalProcessor for Sample {
    async fn process(&mut self, data: OtlpPayload, outputs: &Outputs) -> Result<(), NodeError> {
        let key = format!("acme_sample:{}", data.signal()).into_bytes();
        // A store that cannot answer keeps the payload: sampling fails open, no data is lost.
        let seen = match self.store.get(&key).await {
            Ok(value) => value
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_be_bytes),
            Err(_) => {
                NodeCounters::add(&outputs.counters().errors, 1);
                return outputs.send(data).await;
            }
        };
        if self
            .store
            .set(&key, &(seen + 1).to_be_bytes(), None)
            .await
            .is_err()
        {
            NodeCounters::add(&outputs.counters().errors, 1);
        }
        if seen % self.every == 0 {
            outputs.send(data).await
        } else {
            NodeCounters::add(&outputs.counters().records_dropped, data.records());
            Ok(())
        }
    }
}
