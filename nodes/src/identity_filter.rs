//! `processor:identity_filter`: keeps (or drops) payloads by who sent them, the identity the
//! receiver's authorizer gave them. Each output of a node receives every payload, so a
//! filter at the head of each branch routes by sender: one branch per tenant, each with its
//! own exporter.
//!
//! A payload dropped is dropped on purpose: counted (`records_dropped`) and settled, as good
//! as kept for its sender.

use std::collections::BTreeMap;

use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
use otap_df_core::data::OtlpPayload;
use otap_df_core::extension::Capabilities;
use otap_df_core::node::NodeFactory;
use otap_df_core::node::{
    LocalProcessor, NodeContext, NodeCounters, NodeError, NodeInstance, Outputs,
};
use serde::Deserialize;

/// `config:` of `processor:identity_filter`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFilterConfig {
    /// What a sender's identity must have to match: for each attribute named (`name`: the
    /// identity's name), one of the values listed. A payload without an identity never
    /// matches.
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, Vec<String>>,
    /// `keep` (the default): forward what matches, drop the rest; `drop`: the opposite.
    #[serde(default)]
    pub action: Action,
}

/// What becomes of a payload that matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forwarded; the others dropped.
    #[default]
    Keep,
    /// Dropped; the others forwarded.
    Drop,
}

impl IdentityFilterConfig {
    /// Decodes and checks the block.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if decoded.matches.is_empty() {
            return Err(config.invalid(
                "match",
                "`match` names no attribute; give one such as `tenant: [acme]`",
            ));
        }
        if let Some((attribute, _)) = decoded.matches.iter().find(|(_, v)| v.is_empty()) {
            return Err(config.invalid(
                &format!("match.{attribute}"),
                "list the values that match (one at least)",
            ));
        }
        Ok(decoded)
    }

    /// Whether `data`'s sender matches.
    pub fn matches(&self, data: &OtlpPayload) -> bool {
        data.identity()
            .is_some_and(|identity| identity.matches(&self.matches))
    }
}

/// `processor:identity_filter`.
pub static IDENTITY_FILTER: NodeFactory = NodeFactory::new(
    ComponentKind::Processor,
    "identity_filter",
    env!("CARGO_PKG_NAME"),
)
.description("keeps or drops payloads by their sender's identity (routing per tenant)")
.validate_config(|config| IdentityFilterConfig::decode(config).map(drop))
.forwards_acknowledgements()
.create(create);

fn create(
    _: &NodeContext,
    config: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = IdentityFilterConfig::decode(config)?;
    Ok(NodeInstance::Processor(Box::new(IdentityFilter { config })))
}

struct IdentityFilter {
    config: IdentityFilterConfig,
}

#[otap_df_core::async_trait(?Send)]
impl LocalProcessor for IdentityFilter {
    async fn process(&mut self, data: OtlpPayload, outputs: &Outputs) -> Result<(), NodeError> {
        let forward = self.config.matches(&data) == (self.config.action == Action::Keep);
        if forward {
            return outputs.send(data).await;
        }
        NodeCounters::add(&outputs.counters().records_dropped, data.records());
        data.settle();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use otap_df_core::capability::Identity;
    use otap_df_core::data::Signal;

    use super::*;

    #[test]
    fn a_sender_matches_when_each_attribute_named_has_a_listed_value() {
        let config = IdentityFilterConfig {
            matches: BTreeMap::from([
                (
                    "tenant".to_owned(),
                    vec!["acme".to_owned(), "initech".to_owned()],
                ),
                ("groups".to_owned(), vec!["writers".to_owned()]),
            ]),
            action: Action::Keep,
        };
        let payload = crate::otlp::synthetic(Signal::Logs, 1, "l", 1);
        let with = |identity: Identity| payload.clone().with_identity(identity);
        assert!(config.matches(&with(Identity::with_attributes(
            "a",
            [("tenant", "acme"), ("groups", "ops"), ("groups", "writers")]
        ))));
        assert!(!config.matches(&with(Identity::with_attributes(
            "b",
            [("tenant", "globex"), ("groups", "writers")]
        ))));
        assert!(!config.matches(&with(Identity::with_attributes("c", [("tenant", "acme")]))));
        assert!(!config.matches(&payload));
        let by_name = IdentityFilterConfig {
            matches: BTreeMap::from([("name".to_owned(), vec!["svc".to_owned()])]),
            action: Action::Drop,
        };
        assert!(by_name.matches(&with(Identity::from_static("svc"))));
    }
}
