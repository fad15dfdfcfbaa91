//! How a running engine is handed a new configuration, and what it answers.

use std::sync::mpsc;
use std::time::Duration;

use crate::resolve::ResolvedConfig;
use crate::runtime::protocol::{CoreReport, ReportSender};

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
pub(in crate::runtime) type ReloadRequest = (ResolvedConfig, mpsc::Sender<ReloadOutcome>);

/// Hands a running engine a new configuration (see the module documentation).
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    pub(in crate::runtime) requests: mpsc::Sender<ReloadRequest>,
    /// Wakes the engine, which takes the request at once rather than at its next check.
    pub(in crate::runtime) wake: ReportSender,
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
