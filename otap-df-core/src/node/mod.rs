//! Nodes: what a receiver, processor or exporter type declares, and the model it runs by.
//!
//! A [`NodeFactory`] declares the node's kind, its execution model, the capabilities it accepts
//! (each required or optional), a config validator and its constructor. Binding resolution
//! checks every `capabilities:` entry of a node against this declaration before anything runs.
//! The model (`model.rs`, re-exported here): the local and shared node traits, what a
//! constructor gets (`NodeContext`, the node's `Capabilities`), outputs, counters and the
//! shutdown signal.

mod model;

pub use model::*;

use crate::capability::CapabilityId;
use crate::config::ComponentKind;
use crate::extension::{ConfigValidator, ExecutionModel};

/// A capability a node type accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilityRequirement {
    /// The capability.
    pub capability: CapabilityId,
    /// Whether the node cannot work without it.
    pub required: bool,
}

impl CapabilityRequirement {
    /// The node needs `capability` bound.
    pub const fn required(capability: CapabilityId) -> Self {
        Self {
            capability,
            required: true,
        }
    }

    /// The node uses `capability` when bound.
    pub const fn optional(capability: CapabilityId) -> Self {
        Self {
            capability,
            required: false,
        }
    }
}

/// The addresses a node's `config:` listens on, each with the config field that names it
/// (relative to `config`, dotted: `listen`); `None` where the block does not decode (the
/// validator reports that).
pub type ListenAddresses =
    fn(&crate::config::ComponentConfig<'_>) -> Option<Vec<(&'static str, std::net::SocketAddr)>>;

/// Describes one node type. Declared as a `static` and registered with
/// [`Registry::register_node`](crate::registry::Registry::register_node) or
/// [`submit_node!`](crate::submit_node).
#[derive(Debug)]
pub struct NodeFactory {
    kind: ComponentKind,
    name: &'static str,
    registrant: &'static str,
    description: &'static str,
    execution: ExecutionModel,
    accepts: &'static [CapabilityRequirement],
    validate_config: ConfigValidator,
    listens: Option<ListenAddresses>,
    counts_delivered: bool,
    acknowledges_with: Option<CapabilityId>,
    acknowledges_always: bool,
    forwards_acknowledgements: bool,
    create: Option<NodeConstructor>,
}

fn accept_any_config(
    _: &crate::config::ComponentConfig<'_>,
) -> Result<(), crate::config::ConfigError> {
    Ok(())
}

impl NodeFactory {
    /// A factory for `<kind>:<name>`, registered by crate `registrant`. Local by default.
    /// A `kind` of [`ComponentKind::Extension`] fails to compile in a `static`.
    pub const fn new(kind: ComponentKind, name: &'static str, registrant: &'static str) -> Self {
        if matches!(kind, ComponentKind::Extension) {
            panic!("a node factory must be a receiver, processor or exporter");
        }
        Self {
            kind,
            name,
            registrant,
            description: "",
            execution: ExecutionModel::Local,
            accepts: &[],
            validate_config: accept_any_config,
            listens: None,
            counts_delivered: false,
            acknowledges_with: None,
            acknowledges_always: false,
            forwards_acknowledgements: false,
            create: None,
        }
    }

    /// Sets the one-line description.
    #[must_use]
    pub const fn description(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// Sets the execution model (local by default). A shared node receives shared
    /// capabilities only.
    #[must_use]
    pub const fn execution(mut self, execution: ExecutionModel) -> Self {
        self.execution = execution;
        self
    }

    /// Declares the capabilities the node accepts.
    #[must_use]
    pub const fn accepts(mut self, accepts: &'static [CapabilityRequirement]) -> Self {
        self.accepts = accepts;
        self
    }

    /// Sets the config validator.
    #[must_use]
    pub const fn validate_config(mut self, validator: ConfigValidator) -> Self {
        self.validate_config = validator;
        self
    }

    /// Declares the addresses the node listens on, so that validation refuses two nodes
    /// anywhere in a configuration that would listen on one address.
    #[must_use]
    pub const fn listens(mut self, addresses: ListenAddresses) -> Self {
        self.listens = Some(addresses);
        self
    }

    /// Declares an exporter that delivers after [`export`](crate::node::LocalExporter::export)
    /// returns (it keeps requests in flight, with retries): it counts
    /// [`records_out`](crate::node::NodeCounters::records_out) itself, when its records are
    /// delivered, and the engine counts only what comes in. Without it, the engine counts a
    /// payload `out` once `export` returns `Ok`. Either way `out` means delivered, and
    /// `in - out - failed` is what the exporter still holds.
    #[must_use]
    pub const fn counts_delivered(mut self) -> Self {
        self.counts_delivered = true;
        self
    }

    /// Whether the node counts `records_out` itself ([`counts_delivered`](Self::counts_delivered)).
    pub fn counts_own_output(&self) -> bool {
        self.counts_delivered
    }

    /// Declares an exporter that, when it binds `capability` (a durable queue), settles each
    /// payload's [`Acknowledgement`](crate::data::Acknowledgement) itself, once it has kept
    /// it for good: the receivers upstream of such a node attach one to every payload and
    /// answer their senders only when it is settled
    /// ([`NodeContext::awaits_acknowledgement`](crate::node::NodeContext::awaits_acknowledgement)).
    /// Any other exporter's payloads are settled by the engine as they enter it.
    #[must_use]
    pub const fn acknowledges_with(mut self, capability: CapabilityId) -> Self {
        self.acknowledges_with = Some(capability);
        self
    }

    /// Declares an exporter that settles each payload's acknowledgement itself whatever it
    /// binds: one that hands payloads to another runtime and settles them on its answer (the
    /// Collector bridge's outlet). Otherwise as [`acknowledges_with`](Self::acknowledges_with).
    #[must_use]
    pub const fn acknowledges_always(mut self) -> Self {
        self.acknowledges_always = true;
        self
    }

    /// Whether a node of this type with `bindings` settles acknowledgements itself
    /// ([`acknowledges_with`](Self::acknowledges_with),
    /// [`acknowledges_always`](Self::acknowledges_always)).
    pub fn acknowledges(&self, bindings: &[crate::capability::Binding]) -> bool {
        self.acknowledges_always
            || self
                .acknowledges_with
                .is_some_and(|capability| bindings.iter().any(|b| b.capability == capability))
    }

    /// Declares a processor that hands on the payloads it takes as they are (their
    /// acknowledgements with them) and settles the ones it drops; without it, the engine
    /// settles a payload's acknowledgement as the processor takes it.
    #[must_use]
    pub const fn forwards_acknowledgements(mut self) -> Self {
        self.forwards_acknowledgements = true;
        self
    }

    /// Whether it forwards acknowledgements ([`forwards_acknowledgements`](Self::forwards_acknowledgements)).
    pub fn forwards_acknowledgement(&self) -> bool {
        self.forwards_acknowledgements
    }

    /// Sets the constructor the engine runs the node with. A type without one can be
    /// validated but not run.
    #[must_use]
    pub const fn create(mut self, constructor: NodeConstructor) -> Self {
        self.create = Some(constructor);
        self
    }

    /// The constructor, if the type can run.
    pub fn constructor(&self) -> Option<NodeConstructor> {
        self.create
    }

    /// Its kind.
    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    /// Its type name (`otlp_http`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The crate that registered it.
    pub fn registrant(&self) -> &'static str {
        self.registrant
    }

    /// The one-line description.
    pub fn description_text(&self) -> &'static str {
        self.description
    }

    /// Its execution model.
    pub fn execution_model(&self) -> ExecutionModel {
        self.execution
    }

    /// The capabilities it accepts.
    pub fn accepted(&self) -> &'static [CapabilityRequirement] {
        self.accepts
    }

    /// How it accepts `capability`, if it does.
    pub fn requirement(&self, capability: CapabilityId) -> Option<CapabilityRequirement> {
        self.accepts
            .iter()
            .copied()
            .find(|r| r.capability == capability)
    }

    /// The addresses a node of this type with `config` listens on (see [`Self::listens`]).
    pub fn listen_addresses(
        &self,
        config: &crate::config::ComponentConfig<'_>,
    ) -> Vec<(&'static str, std::net::SocketAddr)> {
        self.listens
            .and_then(|addresses| addresses(config))
            .unwrap_or_default()
    }

    /// Validates a `config:` block.
    pub fn validate(
        &self,
        config: &crate::config::ComponentConfig<'_>,
    ) -> Result<(), crate::config::ConfigError> {
        (self.validate_config)(config)
    }
}
