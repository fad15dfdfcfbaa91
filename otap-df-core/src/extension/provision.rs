//! What an extension instance hands out: its capabilities by id, one instance for all
//! consumers or one per consumer.

use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;

use super::{ExtensionBuildError, ExtensionFactory};
use crate::capability::CapabilityId;

/// How a local capability reaches consumers: one instance for all, or one per consumer.
pub(crate) enum LocalSource<T: ?Sized> {
    Instance(Rc<T>),
    PerConsumer(Rc<dyn Fn() -> Rc<T>>),
}

impl<T: ?Sized> LocalSource<T> {
    pub(crate) fn get(&self) -> Rc<T> {
        match self {
            LocalSource::Instance(instance) => instance.clone(),
            LocalSource::PerConsumer(make) => make(),
        }
    }
}

/// How a shared capability reaches consumers: one instance for all, or one per consumer.
pub(crate) enum SharedSource<T: ?Sized> {
    Instance(Arc<T>),
    PerConsumer(Arc<dyn Fn() -> Arc<T> + Send + Sync>),
}

impl<T: ?Sized> SharedSource<T> {
    pub(crate) fn get(&self) -> Arc<T> {
        match self {
            SharedSource::Instance(instance) => instance.clone(),
            SharedSource::PerConsumer(make) => make(),
        }
    }
}

/// A type-erased `LocalSource<C::Local>`.
pub(crate) type LocalProvision = Rc<dyn Any>;
/// A type-erased `SharedSource<C::Shared>`.
pub(crate) type SharedProvision = Arc<dyn Any + Send + Sync>;

/// The capabilities one extension instance hands out, without its task: what nodes are built
/// from. Shared ones are `Send + Sync`, so every core's nodes can be built from one set.
pub struct ExtensionProvisions<P> {
    pub(crate) extension_id: String,
    pub(crate) provisions: Vec<(CapabilityId, P)>,
    pub(crate) updater: Option<Arc<dyn super::ConfigUpdater>>,
}

impl<P> ExtensionProvisions<P> {
    /// The extension id.
    pub fn extension_id(&self) -> &str {
        &self.extension_id
    }

    /// The capabilities provided.
    pub fn capabilities(&self) -> Vec<CapabilityId> {
        self.provisions.iter().map(|(c, _)| *c).collect()
    }

    /// What takes a changed `config:` into the running instance, if it takes one.
    pub fn updater(&self) -> Option<&Arc<dyn super::ConfigUpdater>> {
        self.updater.as_ref()
    }
}

impl<P> AsRef<ExtensionProvisions<P>> for ExtensionProvisions<P> {
    fn as_ref(&self) -> &Self {
        self
    }
}

impl<P> std::fmt::Debug for ExtensionProvisions<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionProvisions")
            .field("extension_id", &self.extension_id)
            .field("capabilities", &self.capabilities())
            .finish()
    }
}

/// Capabilities of a local extension instance.
pub type LocalProvisions = ExtensionProvisions<LocalProvision>;
/// Capabilities of a shared extension instance.
pub type SharedProvisions = ExtensionProvisions<SharedProvision>;

pub(super) fn check_provisions<P>(
    extension: &str,
    factory: &'static ExtensionFactory,
    provisions: &[(CapabilityId, P)],
) -> Result<(), ExtensionBuildError> {
    for (i, (capability, _)) in provisions.iter().enumerate() {
        if !factory.provides_capability(*capability) {
            return Err(ExtensionBuildError::Undeclared {
                extension: extension.to_owned(),
                extension_type: factory.name(),
                capability: *capability,
                declared: factory.provided().iter().map(|c| c.name()).collect(),
            });
        }
        if provisions[..i].iter().any(|(c, _)| c == capability) {
            return Err(ExtensionBuildError::Duplicate {
                extension: extension.to_owned(),
                extension_type: factory.name(),
                capability: *capability,
            });
        }
    }
    // A type whose instances provide what their configuration names provides a subset; the
    // resolver holds bindings to what it names.
    if factory.provides_by_config() {
        if provisions.is_empty()
            && let Some(capability) = factory.provided().first()
        {
            return Err(ExtensionBuildError::Missing {
                extension: extension.to_owned(),
                extension_type: factory.name(),
                capability: *capability,
            });
        }
        return Ok(());
    }
    for capability in factory.provided() {
        if !provisions.iter().any(|(c, _)| c == capability) {
            return Err(ExtensionBuildError::Missing {
                extension: extension.to_owned(),
                extension_type: factory.name(),
                capability: *capability,
            });
        }
    }
    Ok(())
}
