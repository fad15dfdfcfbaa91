//! The protocol between the engine and its cores: what the engine commands
//! ([`CoreCommand`]), what a core reports ([`CoreReport`]), and the engine's end of it
//! ([`Cores`]: the command queues, the report channel, waiting for every core's answer).
//!
//! The engine commands, the core reports: `Build` runs (→ `Built`, with the extensions their
//! nodes claimed), `Start` or `Discard` built runs (→ `Started`), `Stop` running runs (their
//! receivers stop, the rest drains; → `RunEnded` each, once its local extensions stopped
//! too). The core ends when no run is left (→ `Finished`).

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use super::failure::Failure;
use super::run::{Owner, PipelineRun, RunId};

/// What the engine tells a core.
pub(super) enum CoreCommand {
    /// Build these runs: their local extensions and nodes (which claim capabilities).
    Build(Vec<PipelineRun>),
    /// Start built runs: their local extensions, then their nodes.
    Start(Vec<RunId>),
    /// Drop built runs without starting them.
    Discard(Vec<RunId>),
    /// Stop running runs: their receivers stop, the rest drains.
    Stop(Vec<RunId>),
}

/// Where a core reports (`(core, report)`).
pub(super) type ReportSender = std::sync::mpsc::Sender<(usize, CoreReport)>;

/// What a core tells the engine.
pub(super) enum CoreReport {
    /// The runs of a `Build` are built (or failed to, with why); the extensions their nodes
    /// claimed.
    Built {
        failures: Vec<Failure>,
        claims: Vec<(Owner, String)>,
    },
    /// The runs of a `Start` started (or failed to: their local extensions were not ready).
    Started { failures: Vec<Failure> },
    /// A run's nodes and local extensions on this core are done.
    RunEnded { run: RunId, failures: Vec<Failure> },
    /// Every run on this core is done.
    Finished { failures: Vec<Failure> },
    /// Not a core's: a reload request waits, and the engine takes it now rather than at its
    /// next check.
    Wake,
}

/// The cores: their command queues, and the reports they send back (with the core's
/// number).
#[derive(Default)]
pub(super) struct Cores {
    pub(super) commands: Vec<tokio::sync::mpsc::UnboundedSender<CoreCommand>>,
    pub(super) reports: Option<std::sync::mpsc::Receiver<(usize, CoreReport)>>,
    /// Each core's thread, by core.
    pub(super) threads: Vec<(usize, thread::JoinHandle<()>)>,
    /// Cores whose thread is done.
    pub(super) finished: BTreeSet<usize>,
    /// Reports set aside while waiting for others.
    pub(super) pending: std::collections::VecDeque<(usize, CoreReport)>,
}

impl Cores {
    pub(super) fn send(&self, command: impl Fn() -> CoreCommand) {
        for (core, tx) in self.commands.iter().enumerate() {
            if !self.finished.contains(&core) {
                let _ = tx.send(command());
            }
        }
    }

    /// The next report: one set aside first, else one within `wait`.
    pub(super) fn next(&mut self, wait: Duration) -> Option<(usize, CoreReport)> {
        if let Some(report) = self.pending.pop_front() {
            return Some(report);
        }
        self.reports.as_ref()?.recv_timeout(wait).ok()
    }

    /// The answer of every core still running to the last command: `Built` or `Started`
    /// reports (`is_answer`), setting the others aside. A core that finishes meanwhile answers
    /// nothing; its `Finished` report is set aside too.
    pub(super) fn answers(&mut self, is_answer: fn(&CoreReport) -> bool) -> Vec<CoreReport> {
        let mut waiting: BTreeSet<usize> = (0..self.commands.len())
            .filter(|core| !self.finished.contains(core))
            .collect();
        let mut answers = Vec::new();
        let mut set_aside = Vec::new();
        while !waiting.is_empty() {
            let Some(reports) = self.reports.as_ref() else {
                break;
            };
            let (core, report) = match reports.recv_timeout(Duration::from_millis(50)) {
                Ok(report) => report,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                // A core whose thread ended without answering (it panicked) answers nothing.
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    for (core, thread) in &self.threads {
                        if thread.is_finished() {
                            waiting.remove(core);
                        }
                    }
                    continue;
                }
            };
            if is_answer(&report) {
                waiting.remove(&core);
                answers.push(report);
            } else {
                if matches!(report, CoreReport::Finished { .. }) {
                    waiting.remove(&core);
                }
                set_aside.push((core, report));
            }
        }
        self.pending.extend(set_aside);
        answers
    }
}
