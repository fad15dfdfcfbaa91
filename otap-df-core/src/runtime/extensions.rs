//! Extension tasks: the one start routine and the one reverse-order stop that both shared
//! extensions (on the engine's runtime) and local ones (on each core) go through, so that
//! both report the same states and log the same lines.
//!
//! Start, in declaration order: an extension no node claimed is not started (`unclaimed`,
//! logged); a passive one has no task (`passive`); otherwise its task is spawned and runs up to
//! its first suspension point before the next one is spawned (`starting`), and one that probes
//! readiness is waited for within its `startup_timeout` (`ready`, or `failed: not ready` and
//! the start stops there). Stop: every started extension is told to shut down, last started
//! first (`stopped`), and their tasks are given until the deadline.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::failure::Failure;
use super::telemetry::{ExtensionState, Telemetry};
use crate::extension::{
    ExtensionControl, ExtensionHandle, ExtensionMessage, Lifecycle, Readiness, control_channel,
};

/// An extension to start, where it belongs, and whether a node claimed it.
pub(super) struct ToStart<T> {
    /// Its scope's label (`engine`, `group:<group>`, `group/pipeline`).
    pub label: String,
    /// Its id.
    pub id: String,
    /// Its task, if it has one.
    pub lifecycle: Lifecycle<T>,
    /// How long a readiness probe may take.
    pub startup_timeout: Duration,
    /// Whether a node claimed one of its capabilities.
    pub claimed: bool,
}

/// An extension whose task was spawned.
pub(super) struct Started {
    label: String,
    id: String,
    handle: ExtensionHandle,
}

/// The extension tasks of one runtime — every shared extension (the engine's, the groups',
/// the pipelines'), or one core's local ones — and which extension each runs.
pub(super) struct ExtensionTasks {
    /// `None` for the engine's shared extensions, the core for local ones.
    core: Option<usize>,
    /// Which instances these are in telemetry (see `Telemetry::retire`).
    generation: usize,
    pub(super) set: JoinSet<Result<(), String>>,
    /// Each task's extension: `(scope label, id)`.
    names: HashMap<tokio::task::Id, (String, String)>,
    /// Started extensions, in start order.
    started: Vec<Started>,
}

/// Spawns an extension's task into the scope's set: on the engine's runtime for shared
/// tasks, on the core's `LocalSet` for local ones. The task must signal `begun` after its
/// first poll (see [`after_first_poll`]).
pub(super) type Spawn<T> = fn(
    &mut JoinSet<Result<(), String>>,
    T,
    ExtensionControl,
    oneshot::Sender<()>,
) -> tokio::task::Id;

impl ExtensionTasks {
    /// The tasks of the engine's shared extensions (`core: None`) or of one core's local ones,
    /// of telemetry generation `generation`.
    pub(super) fn new(core: Option<usize>, generation: usize) -> Self {
        Self {
            core,
            generation,
            set: JoinSet::new(),
            names: HashMap::new(),
            started: Vec::new(),
        }
    }

    /// Starts `extensions` in order (see the module documentation); returns the failures,
    /// and stops at the first extension that is not ready in time.
    pub(super) async fn start<T>(
        &mut self,
        extensions: Vec<ToStart<T>>,
        spawn: Spawn<T>,
        telemetry: &Telemetry,
    ) -> Vec<Failure> {
        for extension in extensions {
            if let Err(failures) = self.start_one(extension, spawn, telemetry).await {
                return failures;
            }
        }
        Vec::new()
    }

    /// Starts one extension: nothing for one no node claimed or a passive one; a task
    /// spawned otherwise, and waited for until ready when it probes readiness. When it was
    /// not ready in time: the failures, and nothing after it starts.
    async fn start_one<T>(
        &mut self,
        extension: ToStart<T>,
        spawn: Spawn<T>,
        telemetry: &Telemetry,
    ) -> Result<(), Vec<Failure>> {
        let ToStart {
            label,
            id,
            lifecycle,
            startup_timeout,
            claimed,
        } = extension;
        let (core, generation) = (self.core, self.generation);
        let set_state = |state| telemetry.set_extension(&label, &id, core, generation, state);
        if !claimed {
            tracing::warn!(pipeline = %label, extension = %id, core = ?core,
                "no node claimed the extension; not starting it");
            set_state(ExtensionState::Unclaimed);
            return Ok(());
        }
        let (task, readiness) = match lifecycle {
            Lifecycle::Passive => {
                set_state(ExtensionState::Passive);
                return Ok(());
            }
            Lifecycle::Active { task, readiness } => (task, readiness),
            Lifecycle::Background { task } => (task, Readiness::Immediate),
        };
        let (control, mut handle) = control_channel();
        telemetry.watch_extension(&label, &id, core, generation, &handle);
        let (begun_tx, begun) = oneshot::channel();
        let spawned = spawn(&mut self.set, task, control, begun_tx);
        self.names.insert(spawned, (label.clone(), id.clone()));
        // A task that panics in its first poll drops the sender; the panic is reported when
        // the task is joined.
        let _ = begun.await;
        set_state(ExtensionState::Starting);
        let mut not_ready = None;
        if readiness == Readiness::Probe {
            let deadline = tokio::time::Instant::now() + startup_timeout;
            let ready = tokio::time::timeout_at(deadline, handle.wait_ready()).await;
            if !matches!(ready, Ok(true)) {
                let mut failures = Vec::new();
                set_state(ExtensionState::Failed("not ready".into()));
                // `Ok(false)`: the task ended first; its own failure says why.
                let exited = match ready {
                    Ok(false) => {
                        let (exited, exits) = self.exit_of(spawned, deadline, telemetry).await;
                        failures.extend(exits);
                        exited
                    }
                    _ => false,
                };
                if !exited {
                    failures.push(Failure::ReadinessTimeout {
                        pipeline: label.clone(),
                        extension: id.clone(),
                        timeout: startup_timeout,
                        reason: handle.degraded(),
                    });
                }
                not_ready = Some(failures);
            }
        }
        if not_ready.is_none() {
            set_state(ExtensionState::Ready);
        }
        self.started.push(Started { label, id, handle });
        not_ready.map_or(Ok(()), Err)
    }

    /// Tells every started extension to shut down, last started first, and waits for their
    /// tasks until `deadline`; those still running then are aborted, and that is the failure.
    pub(super) async fn stop(
        &mut self,
        deadline: Instant,
        telemetry: &Telemetry,
    ) -> Option<Failure> {
        for started in self.started.drain(..).rev() {
            let _ = started
                .handle
                .send(ExtensionMessage::Shutdown { deadline })
                .await;
            telemetry.set_extension(
                &started.label,
                &started.id,
                self.core,
                self.generation,
                ExtensionState::Stopped,
            );
        }
        let set = &mut self.set;
        let drained = tokio::time::timeout_at(deadline.into(), async {
            while set.join_next().await.is_some() {}
        })
        .await;
        if drained.is_ok() {
            return None;
        }
        self.set.abort_all();
        Some(match self.core {
            None => Failure::ShutdownTimeout {
                pipeline: "engine".into(),
                task: "shared extensions".into(),
            },
            Some(core) => Failure::ShutdownTimeout {
                pipeline: format!("core {core}"),
                task: "local extensions".into(),
            },
        })
    }

    /// For a task that dropped its control before it was ready, whose own failure says more
    /// than a readiness timeout: joins ended tasks until `task` is among them or `deadline`
    /// passes. Returns whether `task` was joined, and the failures of all joined tasks.
    async fn exit_of(
        &mut self,
        task: tokio::task::Id,
        deadline: tokio::time::Instant,
        telemetry: &Telemetry,
    ) -> (bool, Vec<Failure>) {
        let mut failures = Vec::new();
        while let Ok(Some(joined)) =
            tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await
        {
            let id = match &joined {
                Ok((id, _)) => *id,
                Err(error) => error.id(),
            };
            failures.extend(self.exited(telemetry, joined));
            if id == task {
                return (true, failures);
            }
        }
        (false, failures)
    }

    /// A task that ended before shutdown: an error, a return or a panic, each a failure
    /// naming the extension.
    pub(super) fn exited(
        &self,
        telemetry: &Telemetry,
        joined: Result<(tokio::task::Id, Result<(), String>), tokio::task::JoinError>,
    ) -> Option<Failure> {
        let (id, reason) = match joined {
            Ok((id, Ok(()))) => (id, "its task returned".to_owned()),
            Ok((id, Err(error))) => (id, error),
            Err(error) if error.is_panic() => (
                error.id(),
                format!("panicked: {}", panic_message(error.into_panic())),
            ),
            Err(_) => return None,
        };
        let (pipeline, extension) = self
            .names
            .get(&id)
            .cloned()
            .unwrap_or(("?".into(), "?".into()));
        telemetry.set_extension(
            &pipeline,
            &extension,
            self.core,
            self.generation,
            ExtensionState::Failed(reason.clone()),
        );
        Some(Failure::ExtensionExited {
            pipeline,
            extension,
            reason,
        })
    }
}

/// The message of a panic's payload.
pub(super) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_owned())
}

/// Runs `future`, telling `begun` once its first poll has returned: the engine starts nodes
/// only after every extension task has run up to its first suspension point.
pub(super) async fn after_first_poll<F: std::future::Future>(
    future: F,
    begun: oneshot::Sender<()>,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut begun = Some(begun);
    std::future::poll_fn(|cx| {
        let poll = future.as_mut().poll(cx);
        if let Some(begun) = begun.take() {
            let _ = begun.send(());
        }
        poll
    })
    .await
}
