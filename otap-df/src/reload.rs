//! Live reconfiguration of `otap-df run`: SIGHUP and `POST /reload` on the admin endpoint
//! re-read the configuration's files (and `--set` overrides), validate them completely and
//! hand the result to the running engine ([`ReloadHandle`]), which applies it while data
//! flows (updates in place, new extension instances, pipelines added, removed or replaced)
//! or keeps the running configuration and says which changes need a restart.
//!
//! Reloads run one at a time, on a thread of their own ([`Reloads`]): requests that come
//! while one runs are served together by the next, which reads the files after them. A burst
//! of signals costs one reload more, not a thread each.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::Registry;
use crate::core::runtime::{ReloadHandle, ReloadOutcome};
use crate::sources::Sources;

/// What one reload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadReport {
    /// The files could not be read, or the configuration is invalid: the running one stays.
    /// Each error as `validate` prints it.
    Invalid(Vec<String>),
    /// The engine is not running (starting up took longer than the wait, or it ended).
    NotRunning,
    /// The engine's answer.
    Done(ReloadOutcome),
}

/// Re-reads, validates and applies the configuration; called from the signal thread and the
/// admin endpoint.
pub type Reloader = Arc<dyn Fn() -> ReloadReport + Send + Sync>;

/// A [`Reloader`] for the configuration `sources` name, checked against `registry` and
/// applied through `engine`.
pub(crate) fn reloader(registry: Registry, sources: Sources, engine: ReloadHandle) -> Reloader {
    Arc::new(move || {
        let read = match sources.read_again() {
            Ok(read) => read,
            Err(message) => return ReloadReport::Invalid(vec![message]),
        };
        let loaded = crate::core::resolve::load_layers(&read.layers(), &registry, &|name| {
            std::env::var(name).ok()
        });
        match loaded {
            Err(errors) => ReloadReport::Invalid(
                errors
                    .to_string()
                    .lines()
                    .map(|line| line.trim().to_owned())
                    .collect(),
            ),
            Ok(new) => {
                for warning in &new.warnings {
                    tracing::warn!("reload: {}:{warning}", read.label());
                }
                engine
                    .reload(new)
                    .map_or(ReloadReport::NotRunning, ReloadReport::Done)
            }
        }
    })
}

/// Reloads, one at a time on a thread of their own (see the module documentation).
#[derive(Clone)]
pub struct Reloads(Arc<Queue>);

impl std::fmt::Debug for Reloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloads").finish_non_exhaustive()
    }
}

struct Queue {
    waiting: Mutex<Waiting>,
    asked: Condvar,
}

#[derive(Default)]
struct Waiting {
    /// Whether a reload is asked for (by a signal, or a caller below).
    asked: bool,
    /// Who waits for the next reload's report.
    callers: Vec<oneshot::Sender<ReloadReport>>,
}

impl Reloads {
    /// Runs `reloader` on a thread of its own whenever a reload is asked for; each report is
    /// logged.
    pub fn start(reloader: Reloader) -> std::io::Result<Self> {
        let queue = Arc::new(Queue {
            waiting: Mutex::new(Waiting::default()),
            asked: Condvar::new(),
        });
        let worker = queue.clone();
        std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                loop {
                    let callers = {
                        let waiting = worker
                            .waiting
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        let mut waiting = worker
                            .asked
                            .wait_while(waiting, |waiting| !waiting.asked)
                            .unwrap_or_else(PoisonError::into_inner);
                        waiting.asked = false;
                        std::mem::take(&mut waiting.callers)
                    };
                    let report = reloader();
                    log(&report);
                    for caller in callers {
                        let _ = caller.send(report.clone());
                    }
                }
            })?;
        Ok(Self(queue))
    }

    /// Asks for a reload (a signal): it runs after the one running now, if any.
    pub fn ask(&self) {
        self.queue().asked = true;
        self.0.asked.notify_one();
    }

    /// Asks for a reload and gives the report of one that reads the files after this call.
    pub fn ask_and_wait(&self) -> oneshot::Receiver<ReloadReport> {
        let (answer, answered) = oneshot::channel();
        {
            let mut waiting = self.queue();
            waiting.asked = true;
            waiting.callers.push(answer);
        }
        self.0.asked.notify_one();
        answered
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Logs what a reload did, one line per outcome.
pub(crate) fn log(report: &ReloadReport) {
    match report {
        ReloadReport::Invalid(errors) => tracing::error!(
            "reload: the configuration was not applied, the running one stays:\n{}",
            errors.join("\n")
        ),
        ReloadReport::NotRunning => {
            tracing::warn!("reload: the engine is not running; nothing applied");
        }
        ReloadReport::Done(outcome) if outcome.unchanged() => {
            tracing::info!("reload: the configuration is unchanged");
        }
        ReloadReport::Done(outcome) => {
            if !outcome.needs_restart.is_empty() {
                tracing::warn!(
                    "reload: not applied, the running configuration stays; these changes need a restart: {}",
                    outcome.needs_restart.join("; ")
                );
            }
            if !outcome.updated.is_empty() {
                tracing::info!("reload: applied to {}", outcome.updated.join(", "));
            }
            for (what, list) in [
                ("started", &outcome.added),
                ("replaced (the old version drains)", &outcome.replaced),
                ("stopped (draining)", &outcome.removed),
            ] {
                if !list.is_empty() {
                    tracing::info!("reload: {what}: {}", list.join(", "));
                }
            }
            if !outcome.failed.is_empty() {
                tracing::warn!("reload: not taken by {}", outcome.failed.join("; "));
            }
        }
    }
}
