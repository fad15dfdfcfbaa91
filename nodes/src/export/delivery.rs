//! One payload's fate: sent, retried within its budget, or counted, logged and dead-lettered.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use otap_df_core::data::OtlpPayload;
use otap_df_core::node::{LOST, NodeContext, NodeCounters, NodeError, ShutdownSignal};

use super::merge::Waiting;
use super::retry::{RetryConfig, jitter};
use super::{Attempt, Transport};
use crate::payload_file::PayloadWriter;

const STOPPED_BEFORE_SENT: &str = "the pipeline stopped before the payload could be sent";
const STOPPED_IN_FLIGHT: &str = "the pipeline's shutdown deadline came while the request was in flight (the upstream may have received it)";
const STOPPED_RETRYING: &str = "gave up: the pipeline is stopping";

/// Everything a request needs, shared by the exporter's requests in flight (one core: `Rc`
/// and `RefCell`, never borrowed across an `await`).
pub(crate) struct Delivery<T> {
    /// Payloads that came while every request was taken, merged; the first request to finish
    /// sends it next. Never set while a request is free.
    pub(super) waiting: RefCell<Option<Waiting>>,
    /// Told when a request takes `waiting`, so that the exporter may start the next one.
    pub(super) waiting_taken: tokio::sync::Notify,
    /// The largest merged request, in bytes before compression.
    pub(super) merge_max_bytes: usize,
    /// Payloads merged into a request with others.
    pub(super) merged: Arc<AtomicU64>,
    node: String,
    transport: T,
    retry: RetryConfig,
    dead_letter: Option<PayloadWriter>,
    counters: Arc<NodeCounters>,
    retried: Arc<AtomicU64>,
    dead_lettered: Arc<AtomicU64>,
    /// Records neither delivered nor dead-lettered.
    lost: Arc<AtomicU64>,
    /// From the shutdown's `stop_waiting_at` on, nothing is sent or retried, and what is
    /// left is dead-lettered or counted lost before the engine's deadline — or, with a
    /// durable queue (`keeps_on_stop`), left in it for the next start.
    shutdown: ShutdownSignal,
    keeps_on_stop: bool,
    /// Set when a delivery that keeps what a stop interrupts is closing: retries wait no
    /// more (what waits to be retried stays in the queue).
    closing: Cell<bool>,
    closed: tokio::sync::Notify,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Delivered, or given up on: counted, logged and dead-lettered (or counted lost).
    Settled,
    /// The pipeline stopped first, and the payload is kept where it came from (a durable
    /// queue): not counted.
    Kept,
}

impl<T: Transport> Delivery<T> {
    /// The delivery of node `context`'s payloads over `transport`.
    pub(crate) fn new(
        context: &NodeContext,
        transport: T,
        retry: RetryConfig,
        merge_max_bytes: usize,
        dead_letter: Option<PayloadWriter>,
    ) -> Self {
        let counters = &context.counters;
        Self {
            waiting: RefCell::new(None),
            waiting_taken: tokio::sync::Notify::new(),
            merge_max_bytes,
            merged: counters.named("merged"),
            node: context.node_id.clone(),
            transport,
            retry,
            dead_letter,
            counters: counters.clone(),
            retried: counters.named("retried"),
            dead_lettered: counters.named("dead_lettered"),
            lost: counters.named(LOST),
            shutdown: context.shutdown.clone(),
            keeps_on_stop: false,
            closing: Cell::new(false),
            closed: tokio::sync::Notify::new(),
        }
    }

    /// The node's id.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// For a delivery that keeps what a stop interrupts: from now on a payload waiting to be
    /// retried is kept at once, not retried.
    pub(crate) fn close(&self) {
        self.closing.set(true);
        self.closed.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Returns once [`close`](Self::close) is called (never for a delivery that does not
    /// keep what a stop interrupts).
    pub(crate) async fn closed(&self) {
        if !self.keeps_on_stop {
            return std::future::pending().await;
        }
        let closed = self.closed.notified();
        if !self.closing.get() {
            closed.await;
        }
    }

    /// This delivery, keeping what a stop interrupts where it came from (a durable queue)
    /// rather than dead-lettering it.
    #[must_use]
    pub(crate) fn keeping_on_stop(mut self) -> Self {
        self.keeps_on_stop = true;
        self
    }

    /// `data` was interrupted by the pipeline's stop, for `reason`.
    fn stopped(&self, data: &OtlpPayload, reason: &str) -> Outcome {
        if self.keeps_on_stop {
            return Outcome::Kept;
        }
        self.undeliverable(data, reason);
        Outcome::Settled
    }

    /// A request task's end: a panic fails the node (its payload's fate is unknown).
    pub(super) fn joined(&self, done: Result<(), tokio::task::JoinError>) -> Result<(), NodeError> {
        match done {
            Err(error) if error.is_panic() => Err(NodeError::Failed {
                node: self.node.clone(),
                message: "a request task panicked".to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Returns once the exporter must give up (the shutdown's `stop_waiting_at`).
    async fn given_up(&self) {
        let request = self.shutdown.wait().await;
        tokio::time::sleep_until(request.stop_waiting_at.into()).await;
    }

    /// Whether giving up would come before `after` from now.
    fn gives_up_within(&self, after: Duration) -> bool {
        self.shutdown
            .requested()
            .is_some_and(|request| Instant::now() + after >= request.stop_waiting_at)
    }

    /// Delivers `data`, then what waits for a free request, until nothing does.
    pub(super) async fn deliver_while_waiting(&self, data: OtlpPayload) {
        let mut data = data;
        loop {
            self.deliver(data).await;
            let Some(waiting) = self.waiting.take() else {
                return;
            };
            self.waiting_taken.notify_one();
            data = waiting.into_payload();
        }
    }

    /// Delivers one payload: encodes it, sends it, retries it; counts, logs and
    /// dead-letters it when it cannot be delivered, also when the pipeline stops first
    /// (unless it [keeps it](Self::keeping_on_stop)).
    pub(super) async fn deliver(&self, data: OtlpPayload) -> Outcome {
        if self.gives_up_within(Duration::ZERO) {
            return self.stopped(&data, STOPPED_BEFORE_SENT);
        }
        let body = match self.transport.body(&data) {
            Ok(body) => body,
            Err(e) => {
                self.undeliverable(&data, &format!("cannot compress: {e}"));
                return Outcome::Settled;
            }
        };
        let started = Instant::now();
        let mut backoff = self.retry.initial_interval;
        let mut refreshed = false;
        let mut fresh = false;
        loop {
            let attempt = tokio::select! {
                biased;
                attempt = self.transport.send(&data, &body, fresh) => attempt,
                () = self.given_up() => return self.stopped(&data, STOPPED_IN_FLIGHT),
            };
            let (reason, retry_after) = match attempt {
                Attempt::Delivered => {
                    NodeCounters::add(&self.counters.records_out, data.records());
                    return Outcome::Settled;
                }
                // One more attempt with the freshest token, at once.
                Attempt::Unauthorized(_) if self.transport.carries_token() && !refreshed => {
                    refreshed = true;
                    fresh = true;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Attempt::Unauthorized(reason) | Attempt::Permanent(reason) => {
                    self.undeliverable(&data, &reason);
                    return Outcome::Settled;
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            fresh = false;
            let (wait, reason) = match self.retry_wait(&data, started, backoff, reason, retry_after)
            {
                Ok(wait) => wait,
                Err(outcome) => return outcome,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.given_up() => {
                    return self.stopped(&data, &format!("{reason} ({STOPPED_RETRYING})"));
                }
                () = self.closed() => return Outcome::Kept,
            }
            backoff = (backoff * 2).min(self.retry.max_interval);
        }
    }

    /// How long to wait before retrying `data` (first tried at `started`, the backoff at
    /// `backoff`) after it failed for `reason`, and the reason; how its delivery ended when
    /// it is not retried (retries off or the budget spent: undeliverable; the pipeline
    /// stopping first).
    fn retry_wait(
        &self,
        data: &OtlpPayload,
        started: Instant,
        backoff: Duration,
        reason: String,
        retry_after: Option<Duration>,
    ) -> Result<(Duration, String), Outcome> {
        let retry = &self.retry;
        let wait = retry_after
            .unwrap_or_else(|| jitter(backoff))
            .min(retry.max_interval);
        if !retry.enabled || started.elapsed() + wait > retry.max_elapsed_time {
            let why = if retry.enabled {
                format!(
                    "{reason} (gave up: retrying would pass retry.max_elapsed_time of {:?})",
                    retry.max_elapsed_time
                )
            } else {
                reason
            };
            self.undeliverable(data, &why);
            return Err(Outcome::Settled);
        }
        if self.gives_up_within(wait) {
            return Err(self.stopped(data, &format!("{reason} ({STOPPED_RETRYING})")));
        }
        NodeCounters::add(&self.counters.errors, 1);
        self.retried.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(node = %self.node, protocol = T::PROTOCOL, reason, wait = ?wait,
            "export will be retried");
        Ok((wait, reason))
    }

    /// Counts, logs and (when configured) dead-letters a payload that was not delivered.
    pub(super) fn undeliverable(&self, data: &OtlpPayload, reason: &str) {
        NodeCounters::add(&self.counters.records_failed, data.records());
        let dead_lettered = match &self.dead_letter {
            None => false,
            Some(writer) => match writer.write(data) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(
                        node = %self.node,
                        file = %writer.path().display(),
                        error = %e,
                        "cannot write the dead-letter file"
                    );
                    false
                }
            },
        };
        if dead_lettered {
            self.dead_lettered
                .fetch_add(data.records(), Ordering::Relaxed);
        } else {
            self.lost.fetch_add(data.records(), Ordering::Relaxed);
        }
        tracing::warn!(
            node = %self.node,
            protocol = T::PROTOCOL,
            signal = %data.signal(),
            records = data.records(),
            reason,
            outcome = if dead_lettered { "dead-lettered" } else { "lost" },
            "export failed; data not delivered"
        );
    }
}
