//! An extension's task and its control channel: lifecycle kinds, readiness, the messages
//! the engine sends, health.

use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::ExtensionError;

/// Which lifecycle an extension has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleKind {
    /// Capabilities only: never spawned.
    Passive,
    /// Capabilities and a task.
    Active,
    /// A task only.
    Background,
}

/// Whether nodes wait for an active extension to say it is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready as soon as its task is started.
    Immediate,
    /// Nodes start only after the task calls [`ExtensionControl::set_ready`], within the
    /// extension's startup timeout.
    Probe,
}

/// Messages the engine sends to a running extension task.
#[derive(Debug, Clone)]
pub enum ExtensionMessage {
    /// Stop; finish before `deadline`.
    Shutdown {
        /// When the engine stops waiting.
        deadline: Instant,
    },
    /// Report state and counters now.
    CollectTelemetry,
}

/// The task's end of its control channel.
#[derive(Debug)]
pub struct ExtensionControl {
    messages: mpsc::Receiver<ExtensionMessage>,
    ready: watch::Sender<bool>,
    degraded: watch::Sender<Option<String>>,
}

/// The engine's end of an extension's control channel.
#[derive(Debug, Clone)]
pub struct ExtensionHandle {
    messages: mpsc::Sender<ExtensionMessage>,
    ready: watch::Receiver<bool>,
    degraded: watch::Receiver<Option<String>>,
}

/// Creates a control channel: the task's end and the engine's end.
pub fn control_channel() -> (ExtensionControl, ExtensionHandle) {
    let (message_tx, message_rx) = mpsc::channel(16);
    let (ready_tx, ready_rx) = watch::channel(false);
    let (degraded_tx, degraded_rx) = watch::channel(None);
    (
        ExtensionControl {
            messages: message_rx,
            ready: ready_tx,
            degraded: degraded_tx,
        },
        ExtensionHandle {
            messages: message_tx,
            ready: ready_rx,
            degraded: degraded_rx,
        },
    )
}

impl ExtensionControl {
    /// The next control message; `None` when the engine dropped its end (stop).
    pub async fn recv(&mut self) -> Option<ExtensionMessage> {
        self.messages.recv().await
    }

    /// Signals that the extension is ready (for [`Readiness::Probe`]). Idempotent.
    pub fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Reports that the extension still serves its capabilities but not as configured (a
    /// token file that vanished while the last good token is still served), and why. The
    /// engine shows it as `degraded: <why>` until [`set_healthy`](Self::set_healthy).
    pub fn set_degraded(&self, why: impl Into<String>) {
        self.degraded.send_replace(Some(why.into()));
    }

    /// Reports that the extension is back to normal.
    pub fn set_healthy(&self) {
        self.degraded
            .send_if_modified(|degraded| degraded.take().is_some());
    }
}

impl ExtensionHandle {
    /// Sends a control message; `false` when the task has ended.
    pub async fn send(&self, message: ExtensionMessage) -> bool {
        self.messages.send(message).await.is_ok()
    }

    /// Waits until the task signals readiness; `false` if it ended without doing so.
    pub async fn wait_ready(&mut self) -> bool {
        self.ready.wait_for(|ready| *ready).await.is_ok()
    }

    /// Why the extension reports itself degraded, or `None` while it is healthy.
    pub fn degraded(&self) -> Option<String> {
        self.degraded.borrow().clone()
    }

    /// A view of the extension's health only: unlike the handle, it does not keep the
    /// control channel open.
    pub fn health(&self) -> ExtensionHealth {
        ExtensionHealth(self.degraded.clone())
    }
}

/// What an extension last reported about its health (see [`ExtensionHandle::health`]).
#[derive(Debug, Clone)]
pub struct ExtensionHealth(watch::Receiver<Option<String>>);

impl ExtensionHealth {
    /// Why the extension reports itself degraded, or `None` while it is healthy.
    pub fn degraded(&self) -> Option<String> {
        self.0.borrow().clone()
    }
}

/// The task of an active or background local extension.
#[crate::async_trait(?Send)]
pub trait LocalTask {
    /// Runs until shutdown. An early return, `Ok` or not, is an error of the extension.
    async fn run(self: Box<Self>, control: ExtensionControl) -> Result<(), ExtensionError>;
}

/// The task of an active or background shared extension.
#[crate::async_trait]
pub trait SharedTask: Send {
    /// Runs until shutdown. An early return, `Ok` or not, is an error of the extension.
    async fn run(self: Box<Self>, control: ExtensionControl) -> Result<(), ExtensionError>;
}

/// The task part of a built extension.
pub enum Lifecycle<T> {
    /// No task.
    Passive,
    /// Capabilities and a task.
    Active {
        /// The task.
        task: T,
        /// Whether nodes wait for it.
        readiness: Readiness,
    },
    /// A task, no capabilities.
    Background {
        /// The task.
        task: T,
    },
}

impl<T> Lifecycle<T> {
    /// Which lifecycle this is.
    pub fn kind(&self) -> LifecycleKind {
        match self {
            Lifecycle::Passive => LifecycleKind::Passive,
            Lifecycle::Active { .. } => LifecycleKind::Active,
            Lifecycle::Background { .. } => LifecycleKind::Background,
        }
    }
}

impl<T> std::fmt::Debug for Lifecycle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind())
    }
}
