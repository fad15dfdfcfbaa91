//! The capabilities bound to one node, as its constructor claims them.

use std::any::Any;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use crate::capability::{Binding, Capability, CapabilityId};
use crate::extension::{
    LocalProvision, LocalProvisions, LocalSource, SharedProvision, SharedProvisions, SharedSource,
};

/// A node's bound capabilities could not be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The node asked for a capability its configuration does not bind.
    #[error(
        "node `{node}` has no `{capability}` binding; add `capabilities: {{ {capability}: \
         <extension id> }}` to its configuration"
    )]
    NotBound {
        /// The node.
        node: String,
        /// The capability.
        capability: CapabilityId,
    },
    /// The node claimed the same binding before.
    #[error(
        "node `{node}` already claimed `{capability}` (from extension `{extension}`); claim each binding once"
    )]
    AlreadyClaimed {
        /// The node.
        node: String,
        /// The capability.
        capability: CapabilityId,
        /// The extension bound to it.
        extension: String,
    },
    /// A shared capability was asked of a local extension instance.
    #[error(
        "node `{node}` asked for a shared `{capability}`, but extension `{extension}` runs local; \
         ask for the local variant or bind an extension with a shared variant"
    )]
    LocalOnly {
        /// The node.
        node: String,
        /// The capability.
        capability: CapabilityId,
        /// The extension bound to it.
        extension: String,
    },
    /// The extension instance does not carry the capability under the expected type (an
    /// inconsistent extension build; not caused by configuration).
    #[error("extension `{extension}` does not carry `{capability}` as the capability's type")]
    TypeMismatch {
        /// The capability.
        capability: CapabilityId,
        /// The extension bound to it.
        extension: String,
    },
}

enum Provision {
    Local(LocalProvision),
    Shared(SharedProvision),
}

struct Bound {
    capability: CapabilityId,
    extension: String,
    provision: Provision,
    claimed: bool,
}

/// The capabilities bound to one node, handed to its constructor. Each binding can be claimed
/// once; after construction, [`unclaimed`](Self::unclaimed) tells which were not.
pub struct Capabilities {
    node: String,
    bound: Vec<Bound>,
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field("node", &self.node)
            .field(
                "bound",
                &self
                    .bound
                    .iter()
                    .map(|b| (b.capability, &b.extension, b.claimed))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Capabilities {
    /// Capabilities for `node` from instantiated extensions, following its plan's bindings.
    /// An id is looked up innermost first, as resolution bound it: `local` (the pipeline's
    /// local instances), then `shared` in order (the pipeline's shared instances, then its
    /// group's, then the engine's).
    pub fn for_node(
        node: &str,
        bindings: &[Binding],
        local: &[impl AsRef<LocalProvisions>],
        shared: &[impl AsRef<SharedProvisions>],
    ) -> Self {
        let mut bound = Vec::new();
        for Binding {
            capability,
            extension: extension_id,
        } in bindings
        {
            let from_local = local
                .iter()
                .map(AsRef::as_ref)
                .find(|e| &e.extension_id == extension_id)
                .map(|e| {
                    e.provisions
                        .iter()
                        .find(|(c, _)| c == capability)
                        .map(|(_, p)| Provision::Local(p.clone()))
                });
            let provision = from_local.unwrap_or_else(|| {
                shared
                    .iter()
                    .map(AsRef::as_ref)
                    .find(|e| &e.extension_id == extension_id)
                    .and_then(|e| e.provisions.iter().find(|(c, _)| c == capability))
                    .map(|(_, p)| Provision::Shared(p.clone()))
            });
            if let Some(provision) = provision {
                bound.push(Bound {
                    capability: *capability,
                    extension: extension_id.clone(),
                    provision,
                    claimed: false,
                });
            }
        }
        Self {
            node: node.to_owned(),
            bound,
        }
    }

    /// No capabilities, for `consumer` (a node or an extension that binds none).
    pub fn none(consumer: &str) -> Self {
        Self {
            node: consumer.to_owned(),
            bound: Vec::new(),
        }
    }

    /// The node (or extension) these capabilities belong to.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn claim(&mut self, capability: CapabilityId) -> Result<Option<&mut Bound>, CapabilityError> {
        let node = &self.node;
        match self.bound.iter_mut().find(|b| b.capability == capability) {
            None => Ok(None),
            Some(bound) if bound.claimed => Err(CapabilityError::AlreadyClaimed {
                node: node.clone(),
                capability,
                extension: bound.extension.clone(),
            }),
            Some(bound) => {
                bound.claimed = true;
                Ok(Some(bound))
            }
        }
    }

    /// The local variant of `C`; a shared extension serves it through
    /// [`SharedAsLocal`](crate::capability::SharedAsLocal). `Ok(None)` when not bound.
    pub fn optional_local<C: Capability>(
        &mut self,
    ) -> Result<Option<Rc<C::Local>>, CapabilityError> {
        let Some(bound) = self.claim(C::ID)? else {
            return Ok(None);
        };
        let mismatch = || CapabilityError::TypeMismatch {
            capability: C::ID,
            extension: bound.extension.clone(),
        };
        match &bound.provision {
            Provision::Local(provision) => {
                let source = (provision.as_ref() as &dyn Any)
                    .downcast_ref::<LocalSource<C::Local>>()
                    .ok_or_else(mismatch)?;
                Ok(Some(source.get()))
            }
            Provision::Shared(provision) => {
                let source = (provision.as_ref() as &dyn Any)
                    .downcast_ref::<SharedSource<C::Shared>>()
                    .ok_or_else(mismatch)?;
                Ok(Some(C::shared_as_local(source.get())))
            }
        }
    }

    /// The shared variant of `C`. `Ok(None)` when not bound; an error when the bound
    /// extension runs local.
    pub fn optional_shared<C: Capability>(
        &mut self,
    ) -> Result<Option<Arc<C::Shared>>, CapabilityError> {
        let node = self.node.clone();
        let Some(bound) = self.claim(C::ID)? else {
            return Ok(None);
        };
        match &bound.provision {
            Provision::Shared(provision) => {
                let source = (provision.as_ref() as &dyn Any)
                    .downcast_ref::<SharedSource<C::Shared>>()
                    .ok_or_else(|| CapabilityError::TypeMismatch {
                        capability: C::ID,
                        extension: bound.extension.clone(),
                    })?;
                Ok(Some(source.get()))
            }
            Provision::Local(_) => {
                bound.claimed = false;
                Err(CapabilityError::LocalOnly {
                    node,
                    capability: C::ID,
                    extension: bound.extension.clone(),
                })
            }
        }
    }

    /// The local variant of `C`, which the configuration must bind.
    pub fn require_local<C: Capability>(&mut self) -> Result<Rc<C::Local>, CapabilityError> {
        self.optional_local::<C>()?
            .ok_or_else(|| CapabilityError::NotBound {
                node: self.node.clone(),
                capability: C::ID,
            })
    }

    /// The shared variant of `C`, which the configuration must bind.
    pub fn require_shared<C: Capability>(&mut self) -> Result<Arc<C::Shared>, CapabilityError> {
        self.optional_shared::<C>()?
            .ok_or_else(|| CapabilityError::NotBound {
                node: self.node.clone(),
                capability: C::ID,
            })
    }

    /// Bindings the node did not claim: `(capability, extension id)`. The engine reports them
    /// and does not start an extension nobody claimed.
    pub fn unclaimed(&self) -> Vec<(CapabilityId, &str)> {
        self.bound
            .iter()
            .filter(|b| !b.claimed)
            .map(|b| (b.capability, b.extension.as_str()))
            .collect()
    }
}
