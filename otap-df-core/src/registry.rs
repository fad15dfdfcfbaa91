//! The registry of extension and node types.
//!
//! Two ways in, which compose:
//! - **explicit**: each extension crate exposes `pub fn register(registry: &mut Registry)`;
//!   the `otap-df` facade calls those of the enabled cargo features;
//! - **self-registration**: a crate submits its factories to the [`EXTENSION_FACTORIES`] and
//!   [`NODE_FACTORIES`] distributed slices with [`submit_extension!`](crate::submit_extension) /
//!   [`submit_node!`](crate::submit_node), and [`Registry::register_linked`] picks them up. The
//!   linker drops a crate nothing refers to, so a binary that wants a self-registering crate
//!   must name it: `use the_crate as _;`.
//!
//! Registering the same `static` twice (once explicitly, once through the slice) is harmless.
//! Two *different* factories under one name are an error naming both crates. Entries are kept
//! sorted by name: slice order is not stable across builds.

use std::collections::BTreeMap;

use crate::config::ComponentKind;
use crate::extension::ExtensionFactory;
use crate::node::NodeFactory;

/// Extension factories submitted with [`submit_extension!`](crate::submit_extension).
#[linkme::distributed_slice]
pub static EXTENSION_FACTORIES: [&'static ExtensionFactory];

/// Node factories submitted with [`submit_node!`](crate::submit_node).
#[linkme::distributed_slice]
pub static NODE_FACTORIES: [&'static NodeFactory];

/// Adds an extension factory `static` to [`EXTENSION_FACTORIES`].
///
/// ```ignore
/// pub static FACTORY: ExtensionFactory = ExtensionFactory::new("my_ext", env!("CARGO_PKG_NAME"))
///     /* ... */
///     .build();
/// otap_df_core::submit_extension!(FACTORY);
/// ```
#[macro_export]
macro_rules! submit_extension {
    ($factory:path) => {
        const _: () = {
            // linkme places the entry in a link section; that attribute is all the unsafety.
            #[allow(unsafe_code)]
            #[$crate::linkme::distributed_slice($crate::registry::EXTENSION_FACTORIES)]
            #[linkme(crate = $crate::linkme)]
            static ENTRY: &'static $crate::extension::ExtensionFactory = &$factory;
        };
    };
}

/// Adds a node factory `static` to [`NODE_FACTORIES`].
#[macro_export]
macro_rules! submit_node {
    ($factory:path) => {
        const _: () = {
            // linkme places the entry in a link section; that attribute is all the unsafety.
            #[allow(unsafe_code)]
            #[$crate::linkme::distributed_slice($crate::registry::NODE_FACTORIES)]
            #[linkme(crate = $crate::linkme)]
            static ENTRY: &'static $crate::node::NodeFactory = &$factory;
        };
    };
}

/// Two different factories registered under one name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} type `{name}` is registered twice: by crate `{first}` and by crate `{second}`; \
     remove one of them or rename its type"
)]
pub struct DuplicateRegistration {
    /// The kind of component.
    pub kind: ComponentKind,
    /// The contested name.
    pub name: String,
    /// The crate that registered it first.
    pub first: String,
    /// The crate that registered it again.
    pub second: String,
}

/// Every duplicate found while building a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .duplicates.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct RegistryError {
    /// The duplicates.
    pub duplicates: Vec<DuplicateRegistration>,
}

/// The extension and node types one build knows.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    extensions: BTreeMap<&'static str, &'static ExtensionFactory>,
    nodes: BTreeMap<(ComponentKind, &'static str), &'static NodeFactory>,
    not_compiled_in: BTreeMap<(ComponentKind, &'static str), &'static str>,
    duplicates: Vec<DuplicateRegistration>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an extension type.
    pub fn register_extension(&mut self, factory: &'static ExtensionFactory) {
        match self.extensions.get(factory.name()) {
            Some(existing) if std::ptr::eq(*existing, factory) => {}
            Some(existing) => self.duplicates.push(DuplicateRegistration {
                kind: ComponentKind::Extension,
                name: factory.name().to_owned(),
                first: existing.registrant().to_owned(),
                second: factory.registrant().to_owned(),
            }),
            None => {
                self.extensions.insert(factory.name(), factory);
            }
        }
    }

    /// Registers a node type.
    pub fn register_node(&mut self, factory: &'static NodeFactory) {
        let key = (factory.kind(), factory.name());
        match self.nodes.get(&key) {
            Some(existing) if std::ptr::eq(*existing, factory) => {}
            Some(existing) => self.duplicates.push(DuplicateRegistration {
                kind: factory.kind(),
                name: factory.name().to_owned(),
                first: existing.registrant().to_owned(),
                second: factory.registrant().to_owned(),
            }),
            None => {
                self.nodes.insert(key, factory);
            }
        }
    }

    /// Registers everything submitted to the distributed slices by linked crates.
    pub fn register_linked(&mut self) {
        for factory in EXTENSION_FACTORIES {
            self.register_extension(factory);
        }
        for factory in NODE_FACTORIES {
            self.register_node(factory);
        }
    }

    /// Records a first-party type that this build leaves out, and the cargo feature of the
    /// `otap-df` crate that adds it, so that a configuration naming it gets that advice.
    pub fn declare_not_compiled_in(
        &mut self,
        kind: ComponentKind,
        name: &'static str,
        feature: &'static str,
    ) {
        self.not_compiled_in.insert((kind, name), feature);
    }

    /// Checks for duplicate registrations; call once everything is registered.
    pub fn finish(mut self) -> Result<Self, RegistryError> {
        if self.duplicates.is_empty() {
            // A type that did get registered is compiled in, whatever was declared.
            let extensions = &self.extensions;
            let nodes = &self.nodes;
            self.not_compiled_in.retain(|(kind, name), _| match kind {
                ComponentKind::Extension => !extensions.contains_key(name),
                _ => !nodes.contains_key(&(*kind, *name)),
            });
            Ok(self)
        } else {
            Err(RegistryError {
                duplicates: std::mem::take(&mut self.duplicates),
            })
        }
    }

    /// The extension type `name`.
    pub fn extension(&self, name: &str) -> Option<&'static ExtensionFactory> {
        self.extensions.get(name).copied()
    }

    /// The node type `name` of `kind`.
    pub fn node(&self, kind: ComponentKind, name: &str) -> Option<&'static NodeFactory> {
        self.nodes
            .iter()
            .find(|((k, n), _)| *k == kind && *n == name)
            .map(|(_, f)| *f)
    }

    /// Every extension type, sorted by name.
    pub fn extensions(&self) -> impl Iterator<Item = &'static ExtensionFactory> + '_ {
        self.extensions.values().copied()
    }

    /// Every node type, sorted by kind then name.
    pub fn nodes(&self) -> impl Iterator<Item = &'static NodeFactory> + '_ {
        self.nodes.values().copied()
    }

    /// The registered names of `kind`, sorted.
    pub fn names(&self, kind: ComponentKind) -> Vec<String> {
        match kind {
            ComponentKind::Extension => self.extensions.keys().map(|n| (*n).to_owned()).collect(),
            _ => self
                .nodes
                .keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| (*n).to_owned())
                .collect(),
        }
    }

    /// The cargo feature that would add first-party type `name` of `kind`, if this build
    /// leaves it out.
    pub fn feature_for(&self, kind: ComponentKind, name: &str) -> Option<&'static str> {
        self.not_compiled_in
            .iter()
            .find(|((k, n), _)| *k == kind && *n == name)
            .map(|(_, feature)| *feature)
    }

    /// Every first-party type this build leaves out, with its feature.
    pub fn not_compiled_in(
        &self,
    ) -> impl Iterator<Item = (ComponentKind, &'static str, &'static str)> + '_ {
        self.not_compiled_in.iter().map(|((k, n), f)| (*k, *n, *f))
    }
}
