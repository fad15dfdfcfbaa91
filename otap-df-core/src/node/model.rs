//! The node model: what receivers, processors and exporters implement, and what the engine
//! hands them.
//!
//! Each kind comes in a **local** flavour (futures need not be `Send`; the node lives on one
//! core) and a **shared** one (`Send`, for nodes whose work crosses threads). The engine runs
//! both on the core's single-threaded runtime; a shared node is wrapped in an adapter.
//!
//! Data moves through bounded channels: [`Outputs::send`] waits while a downstream queue is
//! full, so a slow exporter slows its processors and finally the receiver, instead of growing
//! memory. A receiver that answers a client (an HTTP server) first takes room with
//! [`Outputs::reserve`] — waiting, as long as it chooses, while the queues are full — and only
//! then reads and checks the request, so that a request it must refuse costs it nothing;
//! [`Outputs::try_send`] sends only if there is room now. Control messages reach a processor
//! or exporter before any queued data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::config::{ComponentConfig, ConfigError};
use crate::data::OtlpPayload;
use crate::extension::{Capabilities, CapabilityError};

/// A message from the engine to a node, delivered before queued data.
#[derive(Debug, Clone)]
pub enum ControlMessage {
    /// Stop (sent to receivers). A receiver stops accepting data and returns; processors and
    /// exporters keep draining their input until it closes. Everything must be done by
    /// `deadline`: a node that holds data it cannot pass on by then (an exporter retrying a
    /// down upstream) gives it up in time to account for it — dead-letter it or count it
    /// lost — rather than be aborted with it (see [`ShutdownSignal`]).
    Shutdown {
        /// When the engine stops waiting.
        deadline: Instant,
    },
    /// A periodic tick (flush buffers, expire state).
    TimerTick,
    /// Report counters now.
    CollectTelemetry,
}

/// A shutdown as the engine requested it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopRequest {
    /// When the engine stops waiting for the node and aborts it.
    pub deadline: Instant,
    /// When a node should stop waiting on the outside world (clients, upstreams), so that it
    /// can still account for what it holds — dead-letter it, count it lost — before the
    /// deadline: a tenth of the shutdown time, at least 200 ms, before the deadline.
    pub stop_waiting_at: Instant,
}

impl StopRequest {
    /// A shutdown requested now, with `timeout` to complete.
    pub fn now(timeout: Duration) -> Self {
        let now = Instant::now();
        let margin = (timeout / 10).max(Duration::from_millis(200)).min(timeout);
        Self {
            deadline: now + timeout,
            stop_waiting_at: now + (timeout - margin),
        }
    }
}

/// One value per node for all cores: what the first core to ask creates, every other core
/// of the same node gets (a listening socket bound once and shared, so that a second
/// process cannot bind the same address beside it). A node that listens on several addresses
/// keeps one value per address ([`get_or_try_init_for`](Self::get_or_try_init_for)).
///
/// A reload's new version of the node (same id and type) takes over its predecessor's values:
/// the value of each listen address that stays, and the node-wide one when none changes.
#[derive(Debug, Clone, Default)]
pub struct NodeShared(Arc<Mutex<SharedValues>>);

/// Each value by the listen option it belongs to (`""`: the node's own).
type SharedValues = Vec<(String, Arc<dyn std::any::Any + Send + Sync>)>;

impl NodeShared {
    /// The node's shared `T`, created by `init` on first use. A failed `init` leaves it
    /// empty (the next core tries again and reports its own error). A core asking for
    /// another type than the first gets a value of its own.
    pub fn get_or_try_init<T, E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E>
    where
        T: std::any::Any + Send + Sync,
    {
        self.get_or_try_init_for("", init)
    }

    /// [`get_or_try_init`](Self::get_or_try_init) of the value that belongs to one of the
    /// node's listen addresses, by the option the factory's `listens` names it with
    /// (`protocols.grpc.listen`): a reload that keeps that address keeps the value, whatever
    /// happens to the node's other addresses.
    pub fn get_or_try_init_for<T, E>(
        &self,
        listen: &str,
        init: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E>
    where
        T: std::any::Any + Send + Sync,
    {
        let mut values = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let existing = values.iter().find(|(key, _)| key == listen);
        if let Some((_, value)) = existing
            && let Ok(value) = value.clone().downcast::<T>()
        {
            return Ok(value);
        }
        let value = Arc::new(init()?);
        if existing.is_none() {
            values.push((listen.to_owned(), value.clone()));
        }
        Ok(value)
    }

    /// What a new version of the node takes over from this one, whose listen addresses were
    /// `old` and are `new`: the value of each address that stays, and the node's own value
    /// when no address changes.
    pub(crate) fn carried_over(
        &self,
        old: &[(&str, std::net::SocketAddr)],
        new: &[(&str, std::net::SocketAddr)],
    ) -> Self {
        let values = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = values
            .iter()
            .filter(|(key, _)| match key.as_str() {
                "" => old == new,
                listen => {
                    let address = |addresses: &[(&str, std::net::SocketAddr)]| {
                        addresses
                            .iter()
                            .find(|(option, _)| *option == listen)
                            .map(|(_, address)| *address)
                    };
                    address(old).is_some() && address(old) == address(new)
                }
            })
            .cloned()
            .collect();
        Self(Arc::new(Mutex::new(kept)))
    }
}

/// Whether, and by when, the engine asked this core's pipelines to stop: readable by a node
/// at any time, also in the middle of an `export` (where its control messages cannot reach
/// it). Receivers are also told by [`ControlMessage::Shutdown`]; processors and exporters
/// keep draining their input until it closes, and use this to stop *waiting* in time.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<Option<StopRequest>>);

impl ShutdownSignal {
    pub(crate) fn new(receiver: watch::Receiver<Option<StopRequest>>) -> Self {
        Self(receiver)
    }

    /// The request, once there is one.
    pub fn requested(&self) -> Option<StopRequest> {
        *self.0.borrow()
    }

    /// Returns the request as soon as there is one (at once if there is).
    pub async fn wait(&self) -> StopRequest {
        let mut receiver = self.0.clone();
        loop {
            if let Some(request) = *receiver.borrow_and_update() {
                return request;
            }
            if receiver.changed().await.is_err() {
                // The engine is gone: stop now.
                return StopRequest::now(Duration::ZERO);
            }
        }
    }
}

/// The name of the counter ([`NodeCounters::named`]) in which a node counts the records it
/// gave up without delivering or dead-lettering them: [`Telemetry::records_lost`] sums it
/// over every node, and `otap-df run` exits non-zero when it is not zero.
///
/// [`Telemetry::records_lost`]: crate::runtime::Telemetry::records_lost
pub const LOST: &str = "lost";

/// A node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The node reported a failure.
    #[error("node `{node}` failed: {message}")]
    Failed {
        /// The node id.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// Every downstream node is gone: data can no longer be delivered.
    #[error("node `{node}` cannot deliver: every downstream node has stopped")]
    DownstreamClosed {
        /// The node id.
        node: String,
    },
    /// A capability could not be claimed at construction.
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    /// Its `config:` block is invalid (normally caught by validation).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why [`Outputs::try_send`] did not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// A downstream queue is full: back off (HTTP 429/503).
    #[error("a downstream queue is full")]
    Full,
    /// Every downstream node has stopped.
    #[error("every downstream node has stopped")]
    Closed,
}

/// Counters of one node instance, readable from any thread.
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Records that entered the node.
    pub records_in: AtomicU64,
    /// Records the node sent downstream (counted once per payload, whatever the fan-out).
    pub records_out: AtomicU64,
    /// Records the node dropped on purpose (deduplicated, filtered).
    pub records_dropped: AtomicU64,
    /// Records the node could not deliver or process (failures).
    pub records_failed: AtomicU64,
    /// Errors the node handled without losing data (a store error a processor failed open
    /// on, a retried request).
    pub errors: AtomicU64,
    /// The node's own counters, by name (see [`named`](Self::named)).
    named: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
}

impl NodeCounters {
    /// The node's own counter `name` (`requests`, `refused.unauthorized`, ...), created at
    /// zero on first use. Look it up once, when the node is built, and keep the `Arc`:
    /// adding to it is then one atomic operation. Counters that are not zero are shown in
    /// the `run` progress line and in [`NodeTotals`](crate::runtime::NodeTotals).
    pub fn named(&self, name: &'static str) -> Arc<AtomicU64> {
        let mut named = self.named.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counter)) = named.iter().find(|(n, _)| *n == name) {
            return counter.clone();
        }
        let counter = Arc::new(AtomicU64::new(0));
        named.push((name, counter.clone()));
        counter
    }

    /// The node's own counters now, in first-use order.
    pub fn named_snapshot(&self) -> Vec<(&'static str, u64)> {
        self.named
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, counter)| (*name, counter.load(Ordering::Relaxed)))
            .collect()
    }

    /// Adds `records` to `counter`.
    pub fn add(counter: &AtomicU64, records: u64) {
        counter.fetch_add(records, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            records_dropped: self.records_dropped.load(Ordering::Relaxed),
            records_failed: self.records_failed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// The values of [`NodeCounters`] at one moment (or summed over instances).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Records that entered the node.
    pub records_in: u64,
    /// Records the node sent downstream.
    pub records_out: u64,
    /// Records dropped on purpose.
    pub records_dropped: u64,
    /// Records that could not be delivered or processed.
    pub records_failed: u64,
    /// Errors handled without losing data.
    pub errors: u64,
}

impl std::ops::AddAssign for CounterSnapshot {
    fn add_assign(&mut self, other: Self) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.records_dropped += other.records_dropped;
        self.records_failed += other.records_failed;
        self.errors += other.errors;
    }
}

/// Where a node sends data: every node its outgoing connections name (fan-out copies the
/// payload's handle, not its bytes).
#[derive(Debug)]
pub struct Outputs {
    node: String,
    targets: Vec<mpsc::Sender<OtlpPayload>>,
    counters: Arc<NodeCounters>,
}

impl Outputs {
    pub(crate) fn new(
        node: String,
        targets: Vec<mpsc::Sender<OtlpPayload>>,
        counters: Arc<NodeCounters>,
    ) -> Self {
        Self {
            node,
            targets,
            counters,
        }
    }

    /// Whether the node has any downstream node.
    pub fn is_connected(&self) -> bool {
        !self.targets.is_empty()
    }

    /// The node's counters.
    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// Sends `data` to every downstream node, waiting while a queue is full (backpressure).
    /// Fails only when every downstream node has stopped.
    pub async fn send(&self, data: OtlpPayload) -> Result<(), NodeError> {
        let records = data.records();
        let mut delivered = false;
        if let Some((last, rest)) = self.targets.split_last() {
            for target in rest {
                delivered |= target.send(data.clone()).await.is_ok();
            }
            delivered |= last.send(data).await.is_ok();
        }
        if delivered {
            NodeCounters::add(&self.counters.records_out, records);
            Ok(())
        } else {
            NodeCounters::add(&self.counters.records_failed, records);
            Err(NodeError::DownstreamClosed {
                node: self.node.clone(),
            })
        }
    }

    /// Waits until every downstream queue that is still open has room for one payload, and
    /// holds that room: [`OutputPermit::send`] then neither waits nor fails. Waiters are
    /// served in the order they came. `None` when every downstream node has stopped.
    ///
    /// Dropping the future (a timeout) or the permit gives the room back.
    pub async fn reserve(&self) -> Option<OutputPermit<'_>> {
        let mut held = Held::default();
        for target in &self.targets {
            if let Ok(permit) = target.reserve().await {
                held.push(permit);
            }
        }
        held.permit(self)
    }

    /// [`reserve`](Self::reserve) if every queue has room now, without waiting.
    pub fn try_reserve(&self) -> Result<OutputPermit<'_>, TrySendError> {
        let mut held = Held::default();
        for target in &self.targets {
            match target.try_reserve() {
                Ok(permit) => held.push(permit),
                Err(mpsc::error::TrySendError::Full(())) => return Err(TrySendError::Full),
                Err(mpsc::error::TrySendError::Closed(())) => {}
            }
        }
        held.permit(self).ok_or(TrySendError::Closed)
    }

    /// Sends `data` to every downstream node only if every queue has room now; otherwise
    /// sends nothing and says why.
    pub fn try_send(&self, data: OtlpPayload) -> Result<(), TrySendError> {
        self.try_reserve().map(|permit| permit.send(data))
    }
}

/// Room held in every open downstream queue of a node (see [`Outputs::reserve`]).
#[derive(Debug)]
pub struct OutputPermit<'a> {
    outputs: &'a Outputs,
    /// The first open queue's room, and the others': a node with one downstream node (most
    /// of them) holds its room with nothing allocated.
    first: mpsc::Permit<'a, OtlpPayload>,
    rest: Vec<mpsc::Permit<'a, OtlpPayload>>,
}

impl OutputPermit<'_> {
    /// Sends `data` into the held room of every downstream queue (fan-out copies the
    /// payload's handle, not its bytes).
    pub fn send(self, data: OtlpPayload) {
        NodeCounters::add(&self.outputs.counters.records_out, data.records());
        for permit in self.rest {
            permit.send(data.clone());
        }
        self.first.send(data);
    }
}

/// The room held so far while reserving, queue by queue.
#[derive(Default)]
struct Held<'a> {
    first: Option<mpsc::Permit<'a, OtlpPayload>>,
    rest: Vec<mpsc::Permit<'a, OtlpPayload>>,
}

impl<'a> Held<'a> {
    fn push(&mut self, permit: mpsc::Permit<'a, OtlpPayload>) {
        match self.first {
            None => self.first = Some(permit),
            Some(_) => self.rest.push(permit),
        }
    }

    /// The permit, when any queue was open.
    fn permit(self, outputs: &'a Outputs) -> Option<OutputPermit<'a>> {
        Some(OutputPermit {
            outputs,
            first: self.first?,
            rest: self.rest,
        })
    }
}

/// A receiver's control messages.
#[derive(Debug)]
pub struct Control(mpsc::Receiver<ControlMessage>);

impl Control {
    /// The next control message. When the engine is gone this returns a shutdown with an
    /// immediate deadline, so a receiver loop always ends.
    pub async fn recv(&mut self) -> ControlMessage {
        self.0.recv().await.unwrap_or(ControlMessage::Shutdown {
            deadline: Instant::now(),
        })
    }

    /// A control message if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<ControlMessage> {
        self.0.try_recv().ok()
    }
}

/// What a receiver is given to run: its outputs and its control messages, borrowable
/// separately (wait for either in one `select!`).
#[derive(Debug)]
pub struct ReceiverContext {
    /// Where to send data.
    pub outputs: Outputs,
    /// Control messages from the engine.
    pub control: Control,
}

impl ReceiverContext {
    pub(crate) fn new(outputs: Outputs, control: mpsc::Receiver<ControlMessage>) -> Self {
        Self {
            outputs,
            control: Control(control),
        }
    }
}

/// What a node constructor knows.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The node id.
    pub node_id: String,
    /// The pipeline group.
    pub group: String,
    /// The pipeline.
    pub pipeline: String,
    /// The pipeline instance (core), from 0.
    pub core: usize,
    /// How many pipeline instances run.
    pub cores: usize,
    /// This instance's counters, the ones the engine keeps and the node's own
    /// ([`NodeCounters::named`]).
    pub counters: Arc<NodeCounters>,
    /// Whether, and by when, the engine asked this core to stop.
    pub shutdown: ShutdownSignal,
    /// What this node shares across cores ([`NodeShared::get_or_try_init`]).
    pub shared: NodeShared,
    /// For a receiver: whether a node downstream acknowledges the payloads it hands on only
    /// once it has kept them for good (a durable queue): the receiver then attaches an
    /// [`Acknowledgement`](crate::data::Acknowledgement) to each and answers its sender
    /// with the outcome ([`PipelinePlan::awaits_acknowledgement`](crate::resolve::PipelinePlan::awaits_acknowledgement)).
    pub awaits_acknowledgement: bool,
}

impl NodeContext {
    /// An error of this node.
    pub fn error(&self, message: impl Into<String>) -> NodeError {
        NodeError::Failed {
            node: self.node_id.clone(),
            message: message.into(),
        }
    }
}

// Each node kind is defined once: the macro writes its local trait (`?Send` futures), its
// shared trait (`Send` futures, `Send` node), and the adapter that runs a shared node where a
// local one is expected, so the two flavours cannot drift apart (as capabilities are
// defined). Every method returns `Result<(), NodeError>`; a body is its default.
macro_rules! node_kinds {
    ($(
        $(#[$doc:meta])*
        $Local:ident, $Shared:ident {
            $(
                $(#[$method_doc:meta])*
                async fn $method:ident(self: $receiver:ty $(, $arg:ident: $arg_type:ty)*)
                    $body:tt
            )*
        }
    )*) => {
        $(
            $(#[$doc])*
            #[crate::async_trait(?Send)]
            pub trait $Local {
                $(
                    $(#[$method_doc])*
                    async fn $method(self: $receiver $(, $arg: $arg_type)*)
                        -> Result<(), NodeError> $body
                )*
            }

            #[doc = concat!("[`", stringify!($Local), "`] with `Send` futures, for a node that is `Send`.")]
            #[crate::async_trait]
            pub trait $Shared: Send {
                $(
                    $(#[$method_doc])*
                    async fn $method(self: $receiver $(, $arg: $arg_type)*)
                        -> Result<(), NodeError> $body
                )*
            }

            #[crate::async_trait(?Send)]
            impl $Local for SharedNode<dyn $Shared> {
                $(
                    async fn $method(self: $receiver $(, $arg: $arg_type)*)
                        -> Result<(), NodeError> {
                        self.0.$method($($arg),*).await
                    }
                )*
            }
        )*
    };
}

/// Runs a shared node where a local one is expected.
struct SharedNode<T: ?Sized>(Box<T>);

node_kinds! {
    /// A receiver: produces data until its source ends or it is told to shut down.
    LocalReceiver, SharedReceiver {
        /// Runs until done or until [`ControlMessage::Shutdown`]. Returning closes its outputs.
        async fn run(self: Box<Self>, context: ReceiverContext);
    }

    /// A processor: handles each payload, sending what it keeps on.
    LocalProcessor, SharedProcessor {
        /// Handles one payload, sending what it keeps to `outputs`.
        async fn process(self: &mut Self, data: OtlpPayload, outputs: &Outputs);

        /// Handles a control message (ignored by default).
        async fn control(self: &mut Self, message: ControlMessage, outputs: &Outputs) {
            let _ = (message, outputs);
            Ok(())
        }
    }

    /// An exporter: delivers each payload.
    LocalExporter, SharedExporter {
        /// Called once, on its core, before its first payload: start what runs beside
        /// [`export`](Self::export) (an exporter with a durable queue resumes delivering
        /// what it stored before a restart). Nothing by default.
        async fn start(self: &mut Self) {
            Ok(())
        }

        /// Delivers one payload.
        async fn export(self: &mut Self, data: OtlpPayload);

        /// Handles a control message (ignored by default).
        async fn control(self: &mut Self, message: ControlMessage) {
            let _ = message;
            Ok(())
        }

        /// Called once its input is drained, before it is dropped: flush here.
        async fn finish(self: &mut Self) {
            Ok(())
        }
    }
}

/// A constructed node, ready for the engine to run.
pub enum NodeInstance {
    /// A receiver.
    Receiver(Box<dyn LocalReceiver>),
    /// A processor.
    Processor(Box<dyn LocalProcessor>),
    /// An exporter.
    Exporter(Box<dyn LocalExporter>),
}

impl NodeInstance {
    /// A shared receiver, run through the local interface.
    pub fn shared_receiver(receiver: Box<dyn SharedReceiver>) -> Self {
        NodeInstance::Receiver(Box::new(SharedNode(receiver)))
    }

    /// A shared processor, run through the local interface.
    pub fn shared_processor(processor: Box<dyn SharedProcessor>) -> Self {
        NodeInstance::Processor(Box::new(SharedNode(processor)))
    }

    /// A shared exporter, run through the local interface.
    pub fn shared_exporter(exporter: Box<dyn SharedExporter>) -> Self {
        NodeInstance::Exporter(Box::new(SharedNode(exporter)))
    }

    /// `receiver`, `processor` or `exporter`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            NodeInstance::Receiver(_) => "receiver",
            NodeInstance::Processor(_) => "processor",
            NodeInstance::Exporter(_) => "exporter",
        }
    }
}

/// Builds a node instance; it claims its capabilities from `capabilities` here, once.
pub type NodeConstructor =
    fn(&NodeContext, &ComponentConfig<'_>, &mut Capabilities) -> Result<NodeInstance, NodeError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_version_takes_over_the_values_of_the_addresses_it_keeps() {
        let address = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let shared = NodeShared::default();
        let grpc = shared.get_or_try_init_for("grpc", || Ok::<_, ()>(4317u16));
        let http = shared.get_or_try_init_for("http", || Ok::<_, ()>(4318u16));
        let own = shared.get_or_try_init(|| Ok::<_, ()>("node-wide"));
        let old = [("grpc", address(4317)), ("http", address(4318))];
        let moved = [("grpc", address(4317)), ("http", address(5318))];
        let next = shared.carried_over(&old, &moved);
        let kept = next.get_or_try_init_for("grpc", || Ok::<_, ()>(0u16));
        assert!(
            Arc::ptr_eq(&kept.unwrap(), &grpc.unwrap()),
            "gRPC's address stays"
        );
        let fresh = next.get_or_try_init_for("http", || Ok::<_, ()>(5318u16));
        assert_eq!(*fresh.unwrap(), 5318, "HTTP's moved: a value of its own");
        let own_after_move = next.get_or_try_init(|| Ok::<_, ()>("fresh"));
        assert_eq!(*own_after_move.unwrap(), "fresh", "an address changed");
        let same = shared.carried_over(&old, &old);
        let own_kept = same.get_or_try_init(|| Ok::<_, ()>("fresh"));
        assert!(
            Arc::ptr_eq(&own_kept.unwrap(), &own.unwrap()),
            "nothing changed"
        );
        assert!(Arc::ptr_eq(
            &same
                .get_or_try_init_for("http", || Ok::<_, ()>(0u16))
                .unwrap(),
            &http.unwrap()
        ));
    }
}
