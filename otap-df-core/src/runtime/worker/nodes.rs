//! A run's node tasks: spawned with the queues between them, driven (processors and
//! exporters read their input outside tokio's budget), ticked, and accounted for when they
//! end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{CoreWorker, Running};
use crate::data::OtlpPayload;
use crate::node::{
    ControlMessage, LocalExporter, LocalProcessor, NodeCounters, NodeError, NodeInstance, Outputs,
    ReceiverContext,
};
use crate::runtime::extensions::panic_message;
use crate::runtime::failure::Failure;
use crate::runtime::run::RunId;
use crate::runtime::telemetry::NodeStats;

/// Every node task of this core, and which run and node each is.
#[derive(Default)]
pub(super) struct NodeTasks {
    pub(super) set: JoinSet<Result<(), NodeError>>,
    names: HashMap<tokio::task::Id, (RunId, String, String)>,
}

impl CoreWorker {
    /// Spawns a run's nodes; returns the control queues of its processors and exporters.
    pub(super) fn spawn_nodes(
        &self,
        running: &mut Running,
        nodes: Vec<(String, NodeInstance, Arc<NodeCounters>)>,
        tasks: &mut NodeTasks,
    ) -> Vec<mpsc::Sender<ControlMessage>> {
        let mut others = Vec::new();
        let plan = running.run.plan();
        let name = running.run.label.clone();
        let capacity = self.options.channel_capacity.max(1);
        let mut senders = HashMap::new();
        let mut inputs = HashMap::new();
        for (id, instance, _) in &nodes {
            if !matches!(instance, NodeInstance::Receiver(_)) {
                let (tx, rx) = mpsc::channel(capacity);
                senders.insert(id.clone(), tx);
                inputs.insert(id.clone(), rx);
            }
        }
        let mut receivers = Vec::new();
        let mut counted = Vec::new();
        for (id, instance, counters) in nodes {
            self.telemetry.register_node(NodeStats {
                pipeline: name.clone(),
                node: id.clone(),
                core: self.core,
                run: running.run.id,
                counters: counters.clone(),
            });
            counted.push((id.clone(), counters.clone()));
            let targets = plan
                .edges
                .iter()
                .filter(|(from, _)| *from == id)
                .filter_map(|(_, to)| senders.get(to).cloned())
                .collect();
            let outputs = Outputs::new(id.clone(), targets, counters.clone());
            let (control_tx, control_rx) = mpsc::channel(16);
            let input = inputs.remove(&id);
            let handle = match instance {
                NodeInstance::Receiver(receiver) => {
                    receivers.push(control_tx);
                    tasks.set.spawn_local(async move {
                        receiver
                            .run(ReceiverContext::new(outputs, control_rx))
                            .await
                    })
                }
                // Processors and exporters get no shutdown message: they end when their
                // input closes, once every upstream node has finished and drained.
                NodeInstance::Processor(processor) => {
                    others.push(control_tx);
                    let forwards = plan
                        .nodes
                        .iter()
                        .any(|node| node.id == id && node.factory.forwards_acknowledgement());
                    tasks.set.spawn_local(async move {
                        drive_processor(processor, input, control_rx, outputs, counters, forwards)
                            .await
                    })
                }
                NodeInstance::Exporter(exporter) => {
                    others.push(control_tx);
                    let node = plan.nodes.iter().find(|node| node.id == id);
                    let driving = Driving {
                        counts_own_output: node.is_some_and(|n| n.factory.counts_own_output()),
                        acknowledges: node.is_some_and(|n| n.factory.acknowledges(&n.bindings)),
                    };
                    tasks.set.spawn_local(async move {
                        drive_exporter(exporter, input, control_rx, counters, driving).await
                    })
                }
            };
            tasks
                .names
                .insert(handle.id(), (running.run.id, name.clone(), id));
            running.nodes_left += 1;
        }
        running.receivers = receivers;
        running.counters = counted;
        others
    }
}

/// Sends a timer tick to every node in `nodes` each `every`, skipping a node whose control
/// queue is full; ends when every node is gone.
pub(super) async fn tick(every: Duration, mut nodes: Vec<mpsc::Sender<ControlMessage>>) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval.tick().await;
    while !nodes.is_empty() {
        interval.tick().await;
        nodes.retain(|node| {
            !matches!(
                node.try_send(ControlMessage::TimerTick),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }
}

impl NodeTasks {
    /// A finished node task, forgotten: its run, and the failure it represents, if any.
    pub(super) fn ended(
        &mut self,
        core: usize,
        joined: Result<(tokio::task::Id, Result<(), NodeError>), tokio::task::JoinError>,
    ) -> (RunId, Option<Failure>) {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(error) => error.id(),
        };
        let (run, pipeline, node) =
            self.names
                .remove(&id)
                .unwrap_or((usize::MAX, "?".into(), "?".into()));
        let failure = match joined {
            Ok((_, Ok(()))) => None,
            Ok((_, Err(error))) => Some(Failure::Node {
                pipeline,
                node,
                core,
                reason: error.to_string(),
            }),
            Err(error) if error.is_panic() => Some(Failure::Node {
                pipeline,
                node,
                core,
                reason: format!("panicked: {}", panic_message(error.into_panic())),
            }),
            Err(_) => Some(Failure::ShutdownTimeout {
                pipeline,
                task: node,
            }),
        };
        (run, failure)
    }
}

/// Runs a processor; `forwards`: it hands acknowledgements on itself
/// ([`NodeFactory::forwards_acknowledgements`](crate::node::NodeFactory::forwards_acknowledgements)),
/// otherwise a payload's is settled once `process` took it.
async fn drive_processor(
    mut processor: Box<dyn LocalProcessor>,
    input: Option<mpsc::Receiver<OtlpPayload>>,
    mut control: mpsc::Receiver<ControlMessage>,
    outputs: Outputs,
    counters: Arc<NodeCounters>,
    forwards: bool,
) -> Result<(), NodeError> {
    let Some(mut input) = input else {
        return Ok(());
    };
    let mut control_open = true;
    loop {
        tokio::select! {
            biased;
            message = control.recv(), if control_open => match message {
                Some(message) => processor.control(message, &outputs).await?,
                None => control_open = false,
            },
            data = next_payload(&mut input) => match data {
                Some(mut data) => {
                    NodeCounters::add(&counters.records_in, data.records());
                    let ack = if forwards { None } else { data.take_acknowledgement() };
                    processor.process(data, &outputs).await?;
                    if let Some(ack) = ack {
                        ack.settle();
                    }
                }
                None => return Ok(()),
            },
        }
    }
}

/// The next payload of a processor's or exporter's input, outside tokio's budget (128
/// operations a poll): a consumer that yielded after 128 payloads would drain a busy queue
/// only once per round of the core's tasks and leave its senders waiting. The drain is
/// bounded by the queue's capacity; `process` and `export` still yield where they wait.
fn next_payload(
    input: &mut mpsc::Receiver<OtlpPayload>,
) -> impl Future<Output = Option<OtlpPayload>> + '_ {
    tokio::task::coop::unconstrained(input.recv())
}

/// How the engine drives an exporter.
#[derive(Clone, Copy, Default)]
struct Driving {
    /// It counts `records_out` itself, on delivery
    /// ([`NodeFactory::counts_delivered`](crate::node::NodeFactory::counts_delivered)).
    counts_own_output: bool,
    /// It settles acknowledgements itself
    /// ([`NodeFactory::acknowledges_with`](crate::node::NodeFactory::acknowledges_with));
    /// otherwise a payload's is settled once `export` took it.
    acknowledges: bool,
}

/// Runs an exporter as `driving` says.
async fn drive_exporter(
    mut exporter: Box<dyn LocalExporter>,
    input: Option<mpsc::Receiver<OtlpPayload>>,
    mut control: mpsc::Receiver<ControlMessage>,
    counters: Arc<NodeCounters>,
    driving: Driving,
) -> Result<(), NodeError> {
    exporter.start().await?;
    let Some(mut input) = input else {
        return exporter.finish().await;
    };
    let mut control_open = true;
    loop {
        tokio::select! {
            biased;
            message = control.recv(), if control_open => match message {
                Some(message) => exporter.control(message).await?,
                None => control_open = false,
            },
            data = next_payload(&mut input) => match data {
                Some(mut data) => {
                    let records = data.records();
                    NodeCounters::add(&counters.records_in, records);
                    let ack = if driving.acknowledges { None } else { data.take_acknowledgement() };
                    let exported = exporter.export(data).await;
                    if let (Some(ack), Ok(())) = (ack, &exported) {
                        ack.settle();
                    }
                    match exported {
                        Ok(()) if driving.counts_own_output => {}
                        Ok(()) => NodeCounters::add(&counters.records_out, records),
                        Err(error) => {
                            NodeCounters::add(&counters.records_failed, records);
                            return Err(error);
                        }
                    }
                }
                None => return exporter.finish().await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use tokio::task::LocalSet;

    use super::*;
    use crate::data::{Encoding, Signal};

    struct Counting(Rc<Cell<usize>>);

    #[crate::async_trait(?Send)]
    impl LocalExporter for Counting {
        async fn export(&mut self, _: OtlpPayload) -> Result<(), NodeError> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    /// tokio lets a task do 128 budgeted operations a poll; an exporter that yielded there
    /// would leave the rest of a full queue, and its senders, waiting for a whole round of
    /// the core's tasks.
    #[test]
    fn an_exporter_drains_its_whole_queue_in_one_turn() {
        const QUEUED: usize = 300;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let local = LocalSet::new();
        let (input, queue) = mpsc::channel(QUEUED);
        for _ in 0..QUEUED {
            input
                .try_send(OtlpPayload::new(
                    Signal::Logs,
                    Encoding::Protobuf,
                    1,
                    &b""[..],
                ))
                .expect("room");
        }
        let (_control, control) = mpsc::channel(1);
        let exported = Rc::new(Cell::new(0));
        // Tasks run in the order they were spawned: the exporter takes its first turn, then
        // the check sees what that turn did.
        local.spawn_local(drive_exporter(
            Box::new(Counting(exported.clone())),
            Some(queue),
            control,
            Arc::new(NodeCounters::default()),
            Driving::default(),
        ));
        let seen = local.spawn_local({
            let exported = exported.clone();
            async move { exported.get() }
        });
        let after_first_turn = local.block_on(&runtime, seen).expect("check ran");
        assert_eq!(after_first_turn, QUEUED);
        drop(input);
    }

    /// An exporter that delivers after `export` returns counts `out` itself; the engine
    /// counts only what came in. Another gets `out` counted by the engine.
    #[test]
    fn the_engine_counts_out_only_for_an_exporter_that_does_not_count_its_deliveries() {
        for (counts_own_output, out) in [(false, 5), (true, 0)] {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let (input, queue) = mpsc::channel(8);
            for _ in 0..5 {
                input
                    .try_send(OtlpPayload::new(
                        Signal::Logs,
                        Encoding::Protobuf,
                        1,
                        &b""[..],
                    ))
                    .expect("room");
            }
            drop(input);
            let (_control, control) = mpsc::channel(1);
            let counters = Arc::new(NodeCounters::default());
            let exporter = Box::new(Counting(Rc::new(Cell::new(0))));
            let local = LocalSet::new();
            local
                .block_on(
                    &runtime,
                    drive_exporter(
                        exporter,
                        Some(queue),
                        control,
                        counters.clone(),
                        Driving {
                            counts_own_output,
                            acknowledges: false,
                        },
                    ),
                )
                .expect("the exporter ends when its input closes");
            let counted = counters.snapshot();
            assert_eq!((counted.records_in, counted.records_out), (5, out));
        }
    }
}
