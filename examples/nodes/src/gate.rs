//! `receiver:acme_gate`: emits `batches` synthetic log batches, but only when the bound
//! `bearer_token_authorizer` accepts its configured `credential` — a stand-in for a receiver
//! that checks each caller. A denial or *no decision* (an authorizer error) fails the node:
//! the gate fails closed, as the capability's contract requires.

use otap_df::node::serde::Deserialize;
use otap_df::node::{
    AuthzDecision, BearerToken, BearerTokenAuthorizer, Capabilities, CapabilityId,
    CapabilityRequirement, ComponentConfig, ComponentKind, ConfigError, ControlMessage,
    LocalReceiver, NodeContext, NodeCounters, NodeError, NodeFactory, NodeInstance,
    ReceiverContext, Signal, async_trait, local,
};
use std::rc::Rc;

/// `config:` of `receiver:acme_gate`.
#[derive(Deserialize)]
#[serde(crate = "otap_df::node::serde", deny_unknown_fields)]
pub struct GateConfig {
    /// The credential presented to the authorizer (write `${env:NAME}` to keep it out of the
    /// file).
    pub credential: String,
    /// How many batches of 10 log records to emit once admitted.
    pub batches: u64,
}

impl std::fmt::Debug for GateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateConfig")
            .field("credential", &"<redacted>")
            .field("batches", &self.batches)
            .finish()
    }
}

impl GateConfig {
    /// Decodes and checks the ranges.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if !(1..=1_000_000).contains(&decoded.batches) {
            return Err(config.invalid("batches", "`batches` must be between 1 and 1000000"));
        }
        Ok(decoded)
    }
}

/// `receiver:acme_gate`.
pub static GATE: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "acme_gate", env!("CARGO_PKG_NAME"))
        .description("emits batches once a bearer token authorizer accepts its credential")
        .accepts(&[CapabilityRequirement::required(
            CapabilityId::BearerTokenAuthorizer,
        )])
        .validate_config(|config| GateConfig::decode(config).map(drop))
        .create(create);

otap_df::node::submit_node!(GATE);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = GateConfig::decode(config)?;
    let authorizer = capabilities.require_local::<BearerTokenAuthorizer>()?;
    Ok(NodeInstance::Receiver(Box::new(Gate {
        context: context.clone(),
        authorizer,
        credential: BearerToken::new(config.credential),
        batches: config.batches,
    })))
}

struct Gate {
    context: NodeContext,
    authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    credential: BearerToken,
    batches: u64,
}

#[async_trait(?Send)]
impl LocalReceiver for Gate {
    async fn run(self: Box<Self>, mut context: ReceiverContext) -> Result<(), NodeError> {
        match self.authorizer.authorize(self.credential.credential()) {
            Ok(AuthzDecision::Allow { .. }) => {}
            Ok(AuthzDecision::Deny { reason }) => {
                return Err(self
                    .context
                    .error(format!("the credential is denied ({})", reason.as_str())));
            }
            // No decision is a refusal: fail closed.
            Err(error) => {
                return Err(self
                    .context
                    .error(format!("no decision on the credential, refusing: {error}")));
            }
        }
        for batch in 0..self.batches {
            if let Some(ControlMessage::Shutdown { .. }) = context.control.try_recv() {
                return Ok(());
            }
            let payload = otap_df::nodes::otlp::synthetic(
                Signal::Logs,
                10,
                &format!("gate-{}-{batch}", self.context.core),
                0,
            );
            let records = payload.records();
            context.outputs.send(payload).await?;
            NodeCounters::add(&context.outputs.counters().records_in, records);
        }
        Ok(())
    }
}
