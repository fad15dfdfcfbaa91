//! Live reconfiguration: what a new, already validated configuration changes against the
//! running one, and which of those changes a running engine takes.
//!
//! Taken while running:
//! - a changed `config:` of a shared extension whose type declares
//!   [`ExtensionFactory::updates_in_place`](crate::extension::ExtensionFactory::updates_in_place):
//!   its instance's [`ConfigUpdater`](crate::extension::ConfigUpdater) gets the new block;
//!   consumers keep their capabilities;
//! - an extension of the engine or of a group added, retyped, or whose `config:` changed and
//!   cannot be taken in place (the type takes no updates, or its updater refused this
//!   change): a new instance is created and started (ready, when it probes readiness), every
//!   pipeline that binds it is replaced by a version bound to the new instance, and the old
//!   instance stops once the last run bound to it has drained; one removed stops likewise;
//! - a pipeline added: it starts (its extensions ready before its nodes);
//! - a pipeline removed: its receivers stop, the rest drains, then its extensions stop;
//! - a pipeline whose nodes, connections or own extensions changed (other than updates in
//!   place, and including an update its extension refused): replaced — the new version is
//!   built and started beside the old one (a receiver on an unchanged address takes over the
//!   bound socket, so no client is refused), then the old one stops and drains.
//!
//! A change to the engine's settings (`engine.cores`, `engine.admin`) needs a restart: the
//! reload is refused as a whole, with each reason, and the running configuration stays.
//!
//! `handle` is how a new configuration reaches the running engine and what it answers; `plan`
//! compares the new configuration with the running one (what changes, what the running
//! instances take in place, what needs a restart); `execute` applies a plan to the running
//! engine.

mod execute;
mod handle;
mod plan;

pub(super) use handle::ReloadRequest;
pub use handle::{ReloadHandle, ReloadOutcome};
pub(super) use plan::{LiveConfigs, live_configs};
