//! Extension factories and the extension values their constructors build.
//!
//! An [`ExtensionFactory`] is a `static`: name, description, the capabilities it provides,
//! a side-effect-free config validator, and a local and/or a shared constructor. A constructor
//! returns a [`LocalExtension`] or [`SharedExtension`], built with a typestate builder that
//! only offers the combinations that make sense:
//!
//! | lifecycle    | provides capabilities | runs a task | builder call                      |
//! |--------------|-----------------------|-------------|-----------------------------------|
//! | Passive      | yes                   | no          | `.provide…().passive()`           |
//! | Active       | yes                   | yes         | `.provide…().active(task, probe)` |
//! | Background   | no                    | yes         | `.background(task)`               |
//!
//! A passive or active extension without capabilities, or a background one with some, does not
//! compile. What the compiler cannot see — a capability provided but not declared by the
//! factory, declared but not provided, or provided twice — fails the final call with an
//! [`ExtensionBuildError`].
//!
//! ```compile_fail
//! # use otap_df_core::extension::ExtensionContext;
//! # fn build(context: &ExtensionContext) {
//! // A passive extension that provides nothing does not compile.
//! let _ = context.local_builder().passive();
//! # }
//! ```
//!
//! ```compile_fail
//! # use std::rc::Rc;
//! # use otap_df_core::capability::{local, KeyValueStore};
//! # use otap_df_core::extension::{ExtensionContext, LocalTask};
//! # fn build(context: &ExtensionContext, store: Rc<dyn local::KeyValueStore>, task: Box<dyn LocalTask>) {
//! // A background extension cannot provide capabilities.
//! let _ = context.local_builder().provide::<KeyValueStore>(store).background(task);
//! # }
//! ```
//!
//! ```compile_fail
//! # use otap_df_core::extension::ExtensionFactory;
//! // A factory without any constructor fails to compile in a `static`.
//! static NO_VARIANT: ExtensionFactory = ExtensionFactory::new("x", "crate").build();
//! ```
//!
//! ```
//! # use std::rc::Rc;
//! # use otap_df_core::capability::{local, KeyValueStore};
//! # use otap_df_core::extension::{ExtensionContext, LocalTask, Readiness};
//! # fn build(context: &ExtensionContext, store: Rc<dyn local::KeyValueStore>, task: Box<dyn LocalTask>) {
//! // The valid combinations compile.
//! let _ = context.local_builder().provide::<KeyValueStore>(store.clone()).passive();
//! let _ = context.local_builder().provide::<KeyValueStore>(store).active(task, Readiness::Probe);
//! # }
//! # fn background(context: &ExtensionContext, task: Box<dyn LocalTask>) {
//! let _ = context.local_builder().background(task);
//! # }
//! ```

mod claims;
mod error;
mod lifecycle;
mod metrics;
mod provision;

pub use claims::{Capabilities, CapabilityError};
pub use error::{ClassifiedError, ErrorKind, ExtensionBuildError, ExtensionError, SourceError};
pub use lifecycle::*;
pub use metrics::{ExtensionMetrics, ExtensionMetricsSnapshot, ShardedCounter};
use provision::check_provisions;
pub use provision::*;

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::capability::{Capability, CapabilityId};
use crate::config::{ComponentConfig, ConfigError};

/// Where an extension instance lives and whom it can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionModel {
    /// One instance per pipeline instance (per core); serves local consumers only.
    Local,
    /// One instance per pipeline for all cores; serves shared and local consumers.
    Shared,
}

impl ExecutionModel {
    /// `local` or `shared`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutionModel::Local => "local",
            ExecutionModel::Shared => "shared",
        }
    }
}

impl std::fmt::Display for ExecutionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validates an extension's or node's `config:` block without side effects.
pub type ConfigValidator = fn(&ComponentConfig<'_>) -> Result<(), ConfigError>;
/// Builds a local extension instance (on the core that will use it).
pub type LocalConstructor =
    fn(&ExtensionContext, &ComponentConfig<'_>) -> Result<LocalExtension, ExtensionError>;
/// Builds a shared extension instance (once per pipeline, for every core).
pub type SharedConstructor =
    fn(&ExtensionContext, &ComponentConfig<'_>) -> Result<SharedExtension, ExtensionError>;

/// Describes and builds one extension type. Declared as a `static` and registered with
/// [`Registry::register_extension`](crate::registry::Registry::register_extension) or
/// [`submit_extension!`](crate::submit_extension).
#[derive(Debug)]
pub struct ExtensionFactory {
    name: &'static str,
    registrant: &'static str,
    description: &'static str,
    provides: &'static [CapabilityId],
    default_startup_timeout: Duration,
    validate_config: ConfigValidator,
    local: Option<LocalConstructor>,
    shared: Option<SharedConstructor>,
    preferred_model: Option<ModelChooser>,
    configured_provides: Option<ProvidesChooser>,
    updates_in_place: bool,
    consumes: &'static [CapabilityId],
    validate_bindings: Option<BindingsValidator>,
}

/// Checks an instance's `config:` against the capabilities of other extensions it binds
/// (its `capabilities:`), without side effects: for a type whose configuration needs some
/// bound (a module that calls a granted store). Called with those that resolved, once they
/// all did.
pub type BindingsValidator = fn(&ComponentConfig<'_>, &[CapabilityId]) -> Result<(), ConfigError>;

/// Says, from an instance's `config:`, which of its type's declared capabilities the instance
/// provides (a type whose instances each provide what their configuration names: a WebAssembly
/// module that implements some of them); `None` when the block does not say (it is invalid:
/// validation reports it), and then the declared ones count.
pub type ProvidesChooser = fn(&ComponentConfig<'_>) -> Option<Vec<CapabilityId>>;

/// Takes a new `config:` block into a running extension instance, for a type that declares
/// [`ExtensionFactory::updates_in_place`] (the instance hands it to its builder with
/// `updatable`). On a reload whose only change to the instance is its `config:`, the engine
/// calls [`update`](Self::update) with the new block, already checked by the factory's
/// validator; consumers keep the capabilities they hold and see the new configuration from
/// their next call.
pub trait ConfigUpdater: Send + Sync {
    /// Serves `config` from now on. An error leaves the current configuration in force and
    /// says why (an option that cannot change while running, a file that cannot be read).
    fn update(&self, config: &ComponentConfig<'_>) -> Result<(), ExtensionError>;
}

/// Chooses, from an instance's `config:` and the capabilities of other extensions it binds
/// (its `capabilities:`; none for an extension of the engine or a group), the variant it runs
/// as when the factory has both and no shared consumer forces the shared one.
pub type ModelChooser = fn(&ComponentConfig<'_>, &[CapabilityId]) -> ExecutionModel;

fn accept_any_config(_: &ComponentConfig<'_>) -> Result<(), ConfigError> {
    Ok(())
}

impl ExtensionFactory {
    /// Startup timeout when neither the factory nor the configuration sets one.
    pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

    /// A factory for `extension:<name>`, registered by crate `registrant` (pass
    /// `env!("CARGO_PKG_NAME")`; duplicate-name errors name it).
    pub const fn new(name: &'static str, registrant: &'static str) -> Self {
        Self {
            name,
            registrant,
            description: "",
            provides: &[],
            default_startup_timeout: Self::DEFAULT_STARTUP_TIMEOUT,
            validate_config: accept_any_config,
            local: None,
            shared: None,
            preferred_model: None,
            configured_provides: None,
            updates_in_place: false,
            consumes: &[],
            validate_bindings: None,
        }
    }

    /// Sets the one-line description shown by `otap-df components`.
    #[must_use]
    pub const fn description(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// Declares the capabilities every instance provides.
    #[must_use]
    pub const fn provides(mut self, capabilities: &'static [CapabilityId]) -> Self {
        self.provides = capabilities;
        self
    }

    /// Declares the capabilities of other extensions an instance may bind (its
    /// `capabilities:`, like a node's): the constructor takes them from
    /// [`ExtensionContext::capabilities`]. Binding any other is a configuration error.
    #[must_use]
    pub const fn consumes(mut self, capabilities: &'static [CapabilityId]) -> Self {
        self.consumes = capabilities;
        self
    }

    /// Sets the check of an instance's `config:` against what it binds (see
    /// [`BindingsValidator`]).
    #[must_use]
    pub const fn validate_bindings(mut self, validator: BindingsValidator) -> Self {
        self.validate_bindings = Some(validator);
        self
    }

    /// Lets each instance's `config:` say which of the declared capabilities (`provides`) it
    /// provides: bindings to one it does not are configuration errors, and the instance
    /// provides a non-empty subset of the declared ones (what it names).
    #[must_use]
    pub const fn provides_configured(mut self, chooser: ProvidesChooser) -> Self {
        self.configured_provides = Some(chooser);
        self
    }

    /// Sets the readiness timeout used when the configuration sets none.
    #[must_use]
    pub const fn default_startup_timeout(mut self, timeout: Duration) -> Self {
        self.default_startup_timeout = timeout;
        self
    }

    /// Sets the config validator (the default accepts any `config:`; set one whenever the
    /// extension has options).
    #[must_use]
    pub const fn validate_config(mut self, validator: ConfigValidator) -> Self {
        self.validate_config = validator;
        self
    }

    /// Sets the local constructor.
    #[must_use]
    pub const fn local(mut self, constructor: LocalConstructor) -> Self {
        self.local = Some(constructor);
        self
    }

    /// Sets the shared constructor.
    #[must_use]
    pub const fn shared(mut self, constructor: SharedConstructor) -> Self {
        self.shared = Some(constructor);
        self
    }

    /// With both constructors: lets each instance's `config:` choose its variant (the
    /// default is the local one). A shared node binding the instance still makes it shared.
    #[must_use]
    pub const fn preferred_model(mut self, chooser: ModelChooser) -> Self {
        self.preferred_model = Some(chooser);
        self
    }

    /// Declares that its instances take a changed `config:` while running (each hands a
    /// [`ConfigUpdater`] to its builder): a reload updates them in place instead of needing a
    /// restart.
    #[must_use]
    pub const fn updates_in_place(mut self) -> Self {
        self.updates_in_place = true;
        self
    }

    /// Whether its instances take a changed `config:` while running.
    pub fn takes_updates(&self) -> bool {
        self.updates_in_place
    }

    /// Finishes the declaration. Evaluated in a `static`, a factory without any constructor
    /// fails to compile.
    #[must_use]
    pub const fn build(self) -> Self {
        if self.local.is_none() && self.shared.is_none() {
            panic!("an extension factory needs a local or a shared constructor");
        }
        self
    }

    /// The type name (`memory_kv`).
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

    /// The capabilities it provides.
    pub fn provided(&self) -> &'static [CapabilityId] {
        self.provides
    }

    /// The capabilities of other extensions its instances may bind.
    pub fn consumed(&self) -> &'static [CapabilityId] {
        self.consumes
    }

    /// Checks `config` against `bound`, the capabilities the instance binds (see
    /// [`BindingsValidator`]); a type without such a check accepts any.
    pub fn check_bindings(
        &self,
        config: &ComponentConfig<'_>,
        bound: &[CapabilityId],
    ) -> Result<(), ConfigError> {
        self.validate_bindings
            .map_or(Ok(()), |validate| validate(config, bound))
    }

    /// Whether it provides `capability`.
    pub fn provides_capability(&self, capability: CapabilityId) -> bool {
        self.provides.contains(&capability)
    }

    /// What an instance with `config` provides: what the configuration names, for a type
    /// with [`provides_configured`](Self::provides_configured) (only declared capabilities
    /// kept), else every declared capability.
    pub fn provided_for(&self, config: &ComponentConfig<'_>) -> Vec<CapabilityId> {
        match self.configured_provides.and_then(|choose| choose(config)) {
            Some(named) => named
                .into_iter()
                .filter(|c| self.provides.contains(c))
                .collect(),
            None => self.provides.to_vec(),
        }
    }

    /// Whether each instance says, by its `config:`, which capabilities it provides.
    pub fn provides_by_config(&self) -> bool {
        self.configured_provides.is_some()
    }

    /// Its readiness timeout when the configuration sets none.
    pub fn startup_timeout(&self) -> Duration {
        self.default_startup_timeout
    }

    /// Validates a `config:` block.
    pub fn validate(&self, config: &ComponentConfig<'_>) -> Result<(), ConfigError> {
        (self.validate_config)(config)
    }

    /// The local constructor, if it has one.
    pub fn local_constructor(&self) -> Option<LocalConstructor> {
        self.local
    }

    /// The shared constructor, if it has one.
    pub fn shared_constructor(&self) -> Option<SharedConstructor> {
        self.shared
    }

    /// The variant an instance with `config` runs as when nothing forces the shared one:
    /// local when the factory has a local constructor, unless its chooser says otherwise.
    pub fn model_for(
        &self,
        config: &ComponentConfig<'_>,
        bound: &[CapabilityId],
    ) -> ExecutionModel {
        match (self.local, self.shared, self.preferred_model) {
            (None, _, _) => ExecutionModel::Shared,
            (Some(_), Some(_), Some(choose)) => choose(config, bound),
            (Some(_), _, _) => ExecutionModel::Local,
        }
    }

    /// Whether an instance with `config` must be one per core: the type has no shared
    /// variant, or its chooser picks the local one for this config (`memory_kv` with
    /// `per_core: true`). Such an extension cannot be declared at the engine or a group.
    pub fn per_core_only(&self, config: &ComponentConfig<'_>) -> bool {
        match (self.local, self.shared, self.preferred_model) {
            (_, None, _) => true,
            (Some(_), Some(_), Some(choose)) => choose(config, &[]) == ExecutionModel::Local,
            _ => false,
        }
    }

    /// The execution models it supports.
    pub fn execution_models(&self) -> Vec<ExecutionModel> {
        let mut models = Vec::new();
        if self.local.is_some() {
            models.push(ExecutionModel::Local);
        }
        if self.shared.is_some() {
            models.push(ExecutionModel::Shared);
        }
        models
    }
}

/// What a constructor knows about the instance it builds.
#[derive(Debug, Clone)]
pub struct ExtensionContext {
    extension_id: String,
    group: String,
    pipeline: String,
    core: Option<usize>,
    factory: &'static ExtensionFactory,
    metrics: Arc<ExtensionMetrics>,
    capabilities: Rc<std::cell::RefCell<Capabilities>>,
}

impl ExtensionContext {
    /// A context for extension `extension_id` of `group`/`pipeline`; `core` is the pipeline
    /// instance for a local extension, `None` for a shared one.
    pub fn new(
        factory: &'static ExtensionFactory,
        extension_id: impl Into<String>,
        group: impl Into<String>,
        pipeline: impl Into<String>,
        core: Option<usize>,
    ) -> Self {
        let extension_id = extension_id.into();
        let capabilities = Capabilities::none(&extension_id);
        Self {
            extension_id,
            group: group.into(),
            pipeline: pipeline.into(),
            core,
            factory,
            metrics: Arc::default(),
            capabilities: Rc::new(std::cell::RefCell::new(capabilities)),
        }
    }

    /// This context with `capabilities`: those of other extensions the instance binds (its
    /// `capabilities:`), built by the engine as for a node.
    #[must_use]
    pub fn with_capabilities(self, capabilities: Capabilities) -> Self {
        *self.capabilities.borrow_mut() = capabilities;
        self
    }

    /// The capabilities of other extensions bound to this instance (its `capabilities:`,
    /// for a type that [`consumes`](ExtensionFactory::consumes) them): claim them as a node
    /// does, with `require_local`/`optional_shared`... A shared instance gets only shared
    /// ones (the engine runs what it binds shared). Empty when it binds none.
    pub fn capabilities(&self) -> std::cell::RefMut<'_, Capabilities> {
        self.capabilities.borrow_mut()
    }

    /// This instance's counter `name` (`reloads`, `calls`, ...), created at zero: look it up
    /// once while building the instance and keep it; counting is then one atomic add. The
    /// engine shows it in `/metrics` and `/status` of the admin endpoint.
    pub fn counter(&self, name: &'static str) -> Arc<std::sync::atomic::AtomicU64> {
        self.metrics.counter(name)
    }

    /// This instance's counter `name` as a [`ShardedCounter`]: each thread adds to its own
    /// shard, so cores counting per request share no cache line (a shared extension's
    /// decisions). Shown like [`counter`](Self::counter)'s.
    pub fn sharded_counter(&self, name: &'static str) -> Arc<ShardedCounter> {
        self.metrics.sharded_counter(name)
    }

    /// This instance's gauge `name` (`entries`, ...), created at zero.
    pub fn gauge(&self, name: &'static str) -> Arc<std::sync::atomic::AtomicI64> {
        self.metrics.gauge(name)
    }

    /// All of this instance's counters and gauges.
    pub fn metrics(&self) -> Arc<ExtensionMetrics> {
        self.metrics.clone()
    }

    /// The extension id from the configuration.
    pub fn extension_id(&self) -> &str {
        &self.extension_id
    }

    /// The pipeline group; empty for an extension of the engine (`engine.extensions`).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The pipeline; empty for an extension of the engine or of a group
    /// (`groups.<g>.extensions`), which serves every pipeline of its scope.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The core (pipeline instance) of a local extension.
    pub fn core(&self) -> Option<usize> {
        self.core
    }

    /// Starts building a local extension.
    pub fn local_builder(&self) -> LocalExtensionBuilder<NoCapabilities> {
        LocalExtensionBuilder::new(self)
    }

    /// Starts building a shared extension.
    pub fn shared_builder(&self) -> SharedExtensionBuilder<NoCapabilities> {
        SharedExtensionBuilder::new(self)
    }

    /// An error of this extension.
    pub fn error(&self, message: impl Into<String>) -> ExtensionError {
        ExtensionError::Failed {
            extension: self.extension_id.clone(),
            message: message.into(),
        }
    }
}

/// Builder state: no capability provided yet.
#[derive(Debug)]
pub struct NoCapabilities;
/// Builder state: at least one capability provided.
#[derive(Debug)]
pub struct WithCapabilities;

// The local and shared flavours differ only in their pointer, bounds and task trait; one
// definition generates both so they cannot drift apart.
macro_rules! extension_flavour {
    (
        $(#[$doc:meta])* $Extension:ident,
        $(#[$builder_doc:meta])* $Builder:ident,
        $Task:ident, $Ptr:ident, $Assoc:ident, $Source:ident, $Provision:ident, $Provisions:ident,
        ($($fn_bounds:tt)*)
    ) => {
        $(#[$doc])*
        pub struct $Extension {
            pub(crate) provisions: $Provisions,
            pub(crate) lifecycle: Lifecycle<Box<dyn $Task>>,
            pub(crate) metrics: Arc<ExtensionMetrics>,
        }

        impl $Extension {
            /// Its counters and gauges ([`ExtensionContext::counter`]).
            pub fn metrics(&self) -> Arc<ExtensionMetrics> {
                self.metrics.clone()
            }

            /// The extension id.
            pub fn extension_id(&self) -> &str {
                &self.provisions.extension_id
            }

            /// The capabilities it provides.
            pub fn capabilities(&self) -> Vec<CapabilityId> {
                self.provisions.capabilities()
            }

            /// Its lifecycle kind.
            pub fn lifecycle_kind(&self) -> LifecycleKind {
                self.lifecycle.kind()
            }

            /// Splits it into its capabilities (for building nodes) and its lifecycle (for
            /// the engine to spawn).
            pub fn into_parts(self) -> ($Provisions, Lifecycle<Box<dyn $Task>>) {
                (self.provisions, self.lifecycle)
            }
        }

        impl AsRef<$Provisions> for $Extension {
            fn as_ref(&self) -> &$Provisions {
                &self.provisions
            }
        }

        impl std::fmt::Debug for $Extension {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($Extension))
                    .field("extension_id", &self.provisions.extension_id)
                    .field("capabilities", &self.capabilities())
                    .field("lifecycle", &self.lifecycle)
                    .finish()
            }
        }

        $(#[$builder_doc])*
        pub struct $Builder<State> {
            extension_id: String,
            factory: &'static ExtensionFactory,
            metrics: Arc<ExtensionMetrics>,
            provisions: Vec<(CapabilityId, $Provision)>,
            updater: Option<Arc<dyn ConfigUpdater>>,
            state: PhantomData<State>,
        }

        impl $Builder<NoCapabilities> {
            fn new(context: &ExtensionContext) -> Self {
                Self {
                    extension_id: context.extension_id.clone(),
                    factory: context.factory,
                    metrics: context.metrics.clone(),
                    provisions: Vec::new(),
                    updater: None,
                    state: PhantomData,
                }
            }

            /// Finishes a background extension: a task and no capabilities.
            pub fn background(self, task: Box<dyn $Task>) -> Result<$Extension, ExtensionBuildError> {
                self.finish(Lifecycle::Background { task })
            }
        }

        impl<State> $Builder<State> {
            /// Provides capability `C`: every consumer gets a clone of `instance`.
            pub fn provide<C: Capability>(mut self, instance: $Ptr<C::$Assoc>) -> $Builder<WithCapabilities> {
                let source: $Source<C::$Assoc> = $Source::Instance(instance);
                self.provisions.push((C::ID, $Ptr::new(source)));
                self.with_capabilities()
            }

            /// Provides capability `C`: every consumer gets a new object from `make`.
            pub fn provide_per_consumer<C: Capability>(
                mut self,
                make: impl Fn() -> $Ptr<C::$Assoc> $($fn_bounds)* + 'static,
            ) -> $Builder<WithCapabilities> {
                let source: $Source<C::$Assoc> = $Source::PerConsumer($Ptr::new(make));
                self.provisions.push((C::ID, $Ptr::new(source)));
                self.with_capabilities()
            }

            /// Lets a reload hand the instance a changed `config:` (for a factory that
            /// declares [`ExtensionFactory::updates_in_place`]).
            #[must_use]
            pub fn updatable(mut self, updater: Arc<dyn ConfigUpdater>) -> Self {
                self.updater = Some(updater);
                self
            }

            fn with_capabilities(self) -> $Builder<WithCapabilities> {
                $Builder {
                    extension_id: self.extension_id,
                    factory: self.factory,
                    metrics: self.metrics,
                    provisions: self.provisions,
                    updater: self.updater,
                    state: PhantomData,
                }
            }

            fn finish(self, lifecycle: Lifecycle<Box<dyn $Task>>) -> Result<$Extension, ExtensionBuildError> {
                check_provisions(&self.extension_id, self.factory, &self.provisions)?;
                Ok($Extension {
                    provisions: ExtensionProvisions {
                        extension_id: self.extension_id,
                        provisions: self.provisions,
                        updater: self.updater,
                    },
                    lifecycle,
                    metrics: self.metrics,
                })
            }
        }

        impl $Builder<WithCapabilities> {
            /// Finishes a passive extension: capabilities only, never spawned.
            pub fn passive(self) -> Result<$Extension, ExtensionBuildError> {
                self.finish(Lifecycle::Passive)
            }

            /// Finishes an active extension: capabilities and a task.
            pub fn active(self, task: Box<dyn $Task>, readiness: Readiness) -> Result<$Extension, ExtensionBuildError> {
                self.finish(Lifecycle::Active { task, readiness })
            }
        }
    };
}

extension_flavour!(
    /// A local extension instance: its capabilities (`Rc`, no `Send`) and its lifecycle.
    LocalExtension,
    /// Builds a [`LocalExtension`]; see the [module docs](self) for the valid combinations.
    LocalExtensionBuilder,
    LocalTask, Rc, Local, LocalSource, LocalProvision, LocalProvisions,
    ()
);

extension_flavour!(
    /// A shared extension instance: its capabilities (`Arc`, `Send + Sync`) and its lifecycle.
    SharedExtension,
    /// Builds a [`SharedExtension`]; see the [module docs](self) for the valid combinations.
    SharedExtensionBuilder,
    SharedTask, Arc, Shared, SharedSource, SharedProvision, SharedProvisions,
    (+ Send + Sync)
);
