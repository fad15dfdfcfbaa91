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
//! `plan` compares the new configuration with the running one (what changes, what the running
//! instances take in place, what needs a restart); `execute` applies a plan to the running
//! engine.

mod execute;
mod plan;

use std::sync::mpsc;
use std::time::Duration;

use super::protocol::{CoreReport, ReportSender};
use crate::resolve::ResolvedConfig;

pub(super) use plan::{LiveConfigs, live_configs};

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Extensions that took their new `config:` in place: ``extension `tokens` of the
    /// engine``.
    pub updated: Vec<String>,
    /// Pipelines started (``pipeline `g/p` ``) and extensions of the engine or of a group
    /// added.
    pub added: Vec<String>,
    /// Pipelines replaced by their new version (the old one drains), and extensions of the
    /// engine or of a group replaced by a new instance (the old one stops after the runs
    /// bound to it).
    pub replaced: Vec<String>,
    /// Pipelines stopped (they drain), and extensions of the engine or of a group removed.
    pub removed: Vec<String>,
    /// What failed (it keeps its running configuration), each with why.
    pub failed: Vec<String>,
    /// Why nothing was applied: each change that needs a restart.
    pub needs_restart: Vec<String>,
}

impl ReloadOutcome {
    /// Whether the new configuration is the running one.
    pub fn unchanged(&self) -> bool {
        self.updated.is_empty()
            && self.added.is_empty()
            && self.replaced.is_empty()
            && self.removed.is_empty()
            && self.failed.is_empty()
            && self.needs_restart.is_empty()
    }
}

/// A request to a running engine: the new configuration, and where to answer.
pub(super) type ReloadRequest = (ResolvedConfig, mpsc::Sender<ReloadOutcome>);

/// Hands a running engine a new configuration (see the module documentation).
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    pub(super) requests: mpsc::Sender<ReloadRequest>,
    /// Wakes the engine, which takes the request at once rather than at its next check.
    pub(super) wake: ReportSender,
}

impl ReloadHandle {
    /// Applies `new` (already validated: `resolve::load*`) to the running engine and says what
    /// was done; `None` when the engine is not running (not started yet, or ended).
    pub fn reload(&self, new: ResolvedConfig) -> Option<ReloadOutcome> {
        let (answer, answered) = mpsc::channel();
        self.requests.send((new, answer)).ok()?;
        let _ = self.wake.send((usize::MAX, CoreReport::Wake));
        // The engine answers as soon as the reload is applied; an update reads at most a few
        // files, a new run starts its extensions (each within its `startup_timeout`).
        answered.recv_timeout(Duration::from_secs(30)).ok()
    }
}
