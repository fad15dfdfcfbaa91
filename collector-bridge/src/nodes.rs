//! The bridge's nodes, which only documents the bridge writes use (`fragment.rs`):
//! `receiver:collector_in` (what the Collector hands the component), `exporter:collector_out`
//! (what the component hands the Collector's next consumer) and
//! `exporter:collector_capabilities` (what an extension component grants the Collector).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use otap_df::core::data::{Acknowledgement, NotAccepted};
use otap_df::core::node::SharedExporter;
use otap_df::node::serde::Deserialize;
use otap_df::node::{
    BearerTokenAuthorizer, BearerTokenProvider, Capabilities, CapabilityId, CapabilityRequirement,
    ComponentConfig, ComponentKind, ConfigError, ControlMessage, ExecutionModel, LocalExporter,
    LocalReceiver, NodeContext, NodeCounters, NodeError, NodeFactory, NodeInstance, OtlpPayload,
    ReceiverContext, async_trait,
};
use tokio::sync::Semaphore;

use crate::host::{self, Host, Inbound, Refusal, Reply};
use crate::mailbox::Mailbox;

#[derive(Debug, Deserialize)]
#[serde(crate = "otap_df::node::serde", deny_unknown_fields)]
struct BridgeNodeConfig {
    component: u64,
}

fn decode(config: &ComponentConfig<'_>) -> Result<BridgeNodeConfig, ConfigError> {
    config.decode()
}

fn host_of(context: &NodeContext, config: &ComponentConfig<'_>) -> Result<Arc<Host>, NodeError> {
    let id = decode(config)?.component;
    host::host(id).ok_or_else(|| {
        context.error(format!(
            "no Collector component {id} runs here: the bridge's nodes run only in the \
             documents the bridge writes"
        ))
    })
}

/// `receiver:collector_in`.
pub static COLLECTOR_IN: NodeFactory = NodeFactory::new(
    ComponentKind::Receiver,
    "collector_in",
    env!("CARGO_PKG_NAME"),
)
.description("what the OpenTelemetry Collector hands an otapdf component (bridge only)")
.validate_config(|config| decode(config).map(drop))
.create(create_inlet);

/// `exporter:collector_out`.
pub static COLLECTOR_OUT: NodeFactory = NodeFactory::new(
    ComponentKind::Exporter,
    "collector_out",
    env!("CARGO_PKG_NAME"),
)
.description(
    "hands payloads to the OpenTelemetry Collector's next consumer, settling each on its \
     answer (bridge only)",
)
.acknowledges_always()
.validate_config(|config| decode(config).map(drop))
.create(create_outlet);

/// `exporter:collector_capabilities`.
pub static COLLECTOR_CAPABILITIES: NodeFactory = NodeFactory::new(
    ComponentKind::Exporter,
    "collector_capabilities",
    env!("CARGO_PKG_NAME"),
)
.description("holds what an extension grants the OpenTelemetry Collector (bridge only)")
.execution(ExecutionModel::Shared)
.accepts(&[
    CapabilityRequirement::optional(CapabilityId::BearerTokenAuthorizer),
    CapabilityRequirement::optional(CapabilityId::BearerTokenProvider),
])
.validate_config(|config| decode(config).map(drop))
.create(create_capabilities);

fn create_inlet(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let host = host_of(context, config)?;
    let queue = host
        .inlet
        .clone()
        .ok_or_else(|| context.error("this component takes no data"))?;
    Ok(NodeInstance::Receiver(Box::new(Inlet {
        context: context.clone(),
        queue,
    })))
}

/// The most payloads the inlet takes from its queue at once.
const BURST: usize = 64;

struct Inlet {
    context: NodeContext,
    queue: Arc<Mailbox<Inbound>>,
}

#[async_trait(?Send)]
impl LocalReceiver for Inlet {
    async fn run(self: Box<Self>, mut context: ReceiverContext) -> Result<(), NodeError> {
        // What one wake-up finds queued is taken together: one lock, one wake-up per burst.
        let mut burst = Vec::with_capacity(BURST);
        loop {
            let next = self.queue.take(&mut burst, BURST);
            tokio::select! {
                biased;
                message = context.control.recv() => match message {
                    ControlMessage::Shutdown { .. } => return Ok(()),
                    _ => continue,
                },
                taken = next => if taken == 0 {
                    return Ok(());
                },
            }
            for inbound in burst.drain(..) {
                self.take(inbound, &context).await?;
            }
        }
    }
}

impl Inlet {
    async fn take(&self, inbound: Inbound, context: &ReceiverContext) -> Result<(), NodeError> {
        let Inbound { mut payload, reply } = inbound;
        let records = payload.records();
        // Awaiting the settlement, the caller is answered where it settles — for a processor,
        // on the Collector's thread that answers the outlet's delivery — and no task here
        // waits for it (up to `queue_size` wait at once, bounded by the Go side's callers).
        // Dropped on the way, the payload answers "send it again".
        let reply = if self.context.awaits_acknowledgement {
            payload = payload.with_acknowledgement(Acknowledgement::then(move |outcome| {
                reply.send(outcome.map_err(Refusal::from));
            }));
            None
        } else {
            Some(reply)
        };
        if let Err(error) = context.outputs.send(payload).await {
            if let Some(reply) = reply {
                reply.send(Err(Refusal::Retryable(format!(
                    "the otapdf component could not take the payload: {error}"
                ))));
            }
            return Err(error);
        }
        NodeCounters::add(&context.outputs.counters().records_in, records);
        if let Some(reply) = reply {
            reply.send(Ok(()));
        }
        Ok(())
    }
}

fn create_outlet(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let host = host_of(context, config)?;
    Ok(NodeInstance::Exporter(Box::new(Outlet {
        context: context.clone(),
        go_handle: host.go_handle,
        room: host.outlet_room.clone(),
        accepted: context.counters.named("collector.accepted"),
        refused: context.counters.named("collector.refused"),
        rejected: context.counters.named("collector.rejected"),
        unanswered: Arc::default(),
    })))
}

struct Outlet {
    context: NodeContext,
    go_handle: u64,
    /// Payloads handed over and not answered, across the component's cores.
    room: Arc<Semaphore>,
    /// Records the next consumer took.
    accepted: Arc<std::sync::atomic::AtomicU64>,
    /// Records it refused, retryable: the acknowledgement says so upstream.
    refused: Arc<std::sync::atomic::AtomicU64>,
    /// Records it refused for good (`consumererror.Permanent`): dropped, counted here.
    rejected: Arc<std::sync::atomic::AtomicU64>,
    /// The payloads this core handed over and not yet settled.
    unanswered: Arc<Unanswered>,
}

/// How many payloads a core's outlet waits on, and who waits for none to be left.
#[derive(Default)]
struct Unanswered {
    count: AtomicUsize,
    none: tokio::sync::Notify,
}

impl Unanswered {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn settled(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none.notify_waiters();
        }
    }

    /// Returns once none is left.
    async fn drained(&self) {
        loop {
            let mut none = std::pin::pin!(self.none.notified());
            none.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            none.await;
        }
    }
}

#[async_trait(?Send)]
impl LocalExporter for Outlet {
    async fn export(&mut self, mut data: OtlpPayload) -> Result<(), NodeError> {
        let ack = data.take_acknowledgement();
        let Ok(permit) = self.room.clone().acquire_owned().await else {
            return Err(self.context.error("the component is stopping"));
        };
        let records = data.records();
        let accepted = self.accepted.clone();
        let refused = self.refused.clone();
        let rejected = self.rejected.clone();
        let unanswered = self.unanswered.clone();
        let settle = move |outcome: Result<(), Refusal>| {
            let refusal = match outcome {
                Ok(()) => {
                    NodeCounters::add(&accepted, records);
                    None
                }
                Err(Refusal::Permanent(_)) => {
                    // Sending it again cannot help: dropped here, as an exporter drops what
                    // its upstream rejects for good.
                    NodeCounters::add(&rejected, records);
                    None
                }
                Err(Refusal::Retryable(message)) => {
                    NodeCounters::add(&refused, records);
                    Some(NotAccepted::Failed(message))
                }
            };
            match (ack, refusal) {
                (None, _) => {}
                (Some(ack), None) => ack.settle(),
                (Some(ack), Some(why)) => ack.refuse(why),
            }
            drop(permit);
            unanswered.settled();
        };
        self.unanswered.add();
        // The delivery event holds the bytes until the Go side has made its own data of them;
        // the answer comes back with what it settles, and settles it there, on the Go side's
        // thread (no task waits for it, no thread of the engine is woken for it).
        crate::ffi::hand_over(
            self.go_handle,
            data.signal(),
            data.bytes().clone(),
            data.identity(),
            Reply::settling(settle),
        );
        drop(data);
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), NodeError> {
        // Every answer this core waits for, before the engine drops the task that settles
        // them (bounded by the engine's shutdown deadline).
        self.unanswered.drained().await;
        Ok(())
    }
}

fn create_capabilities(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let host = host_of(context, config)?;
    let granted = host::Granted {
        authorizer: capabilities.optional_shared::<BearerTokenAuthorizer>()?,
        provider: capabilities.optional_shared::<BearerTokenProvider>()?,
    };
    *host.granted.lock().unwrap_or_else(PoisonError::into_inner) = granted;
    Ok(NodeInstance::shared_exporter(Box::new(Holder)))
}

/// Nothing reaches it: it exists for its bindings.
struct Holder;

#[async_trait]
impl SharedExporter for Holder {
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        drop(data);
        Ok(())
    }
}
