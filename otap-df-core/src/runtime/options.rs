//! How the engine runs: its options, the handle that stops it, and what it hands the admin
//! endpoint.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::capability::shared;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Pipeline instances (one per core); the configuration's `engine.cores` when `None`.
    pub cores: Option<usize>,
    /// Payloads each node's input queue holds before senders wait (backpressure).
    ///
    /// A core runs its tasks in turn, and a consumer woken by the first payload of a round
    /// runs after every task already woken in that round: a receiver with N connections
    /// ready can queue N payloads before the exporter drains them. A queue shorter than that
    /// makes nearly every request wait for room (a timer, a waiter and a second poll each),
    /// although the exporter keeps up; 256 holds a round of 256 busy connections (measured in
    /// BENCHMARKS.md, "Queue capacity and the drain").
    pub channel_capacity: usize,
    /// How long nodes, then extensions, get to finish once shutdown starts.
    pub shutdown_timeout: Duration,
    /// How often processors and exporters get a [`ControlMessage::TimerTick`](crate::node::ControlMessage::TimerTick) (flush,
    /// expire state); never when `None`. A tick is skipped for a node whose control queue is
    /// full, so a busy node never accumulates ticks.
    pub timer_interval: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            cores: None,
            channel_capacity: 256,
            shutdown_timeout: Duration::from_secs(10),
            timer_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// Asks a running engine to shut down gracefully. Cheap to clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(pub(super) Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Starts a graceful shutdown (idempotent).
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

/// The `bearer_token_authorizer` of the engine extension the admin endpoint binds
/// (`engine.admin.capabilities`), as the engine provides it: none until that extension's
/// instance has started, then its capability, replaced when a reload gives the extension a
/// new instance. Cheap to clone; usable from any thread.
#[derive(Clone, Default)]
pub struct AdminAuthorizer(Arc<RwLock<Option<Arc<dyn shared::BearerTokenAuthorizer>>>>);

impl AdminAuthorizer {
    /// The authorizer to ask now; `None` while the extension is not started (a request that
    /// needs a token is then refused: fail closed).
    pub fn current(&self) -> Option<Arc<dyn shared::BearerTokenAuthorizer>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set(&self, authorizer: Arc<dyn shared::BearerTokenAuthorizer>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(authorizer);
    }
}

/// An admin authorizer that asks `authorizer` from the start (the engine sets its own when the
/// bound extension has started).
impl From<Arc<dyn shared::BearerTokenAuthorizer>> for AdminAuthorizer {
    fn from(authorizer: Arc<dyn shared::BearerTokenAuthorizer>) -> Self {
        let admin = Self::default();
        admin.set(authorizer);
        admin
    }
}

impl std::fmt::Debug for AdminAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuthorizer")
            .field("ready", &self.current().is_some())
            .finish()
    }
}
