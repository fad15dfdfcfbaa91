//! Shared nodes (`Send`, written against the `Shared*` traits) run through the adapter that
//! the node macro generates: every method reaches the node — a receiver's `run`, a
//! processor's `process` and `control`, an exporter's `export`, `control` and `finish`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::sync::Mutex;
use std::time::Duration;

use otap_df_core::config::{ComponentConfig, ComponentKind};
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use otap_df_core::extension::{Capabilities, ExecutionModel};
use otap_df_core::node::{
    ControlMessage, NodeContext, NodeError, NodeFactory, NodeInstance, Outputs, ReceiverContext,
    SharedExporter, SharedProcessor, SharedReceiver,
};
use otap_df_core::registry::Registry;
use otap_df_core::resolve::load_with_env;
use otap_df_core::runtime::{Engine, RunOptions};

/// What the nodes saw, in order.
static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn event(what: impl Into<String>) {
    EVENTS.lock().unwrap().push(what.into());
}

struct Source;

#[otap_df_core::async_trait]
impl SharedReceiver for Source {
    async fn run(self: Box<Self>, context: ReceiverContext) -> Result<(), NodeError> {
        // The run lasts until the processor and the exporter have each had a timer tick
        // (their `control`), bounded by a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !["doubler:tick", "sink:tick"]
            .iter()
            .all(|tick| EVENTS.lock().unwrap().iter().any(|e| e == tick))
        {
            assert!(tokio::time::Instant::now() < deadline, "no timer ticks");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for records in [1, 2, 3] {
            context
                .outputs
                .send(OtlpPayload::new(
                    Signal::Logs,
                    Encoding::Protobuf,
                    records,
                    Vec::new(),
                ))
                .await?;
        }
        event("source:done");
        Ok(())
    }
}

struct Doubler;

#[otap_df_core::async_trait]
impl SharedProcessor for Doubler {
    async fn process(&mut self, data: OtlpPayload, outputs: &Outputs) -> Result<(), NodeError> {
        let doubled = OtlpPayload::new(
            data.signal(),
            data.encoding(),
            data.records() * 2,
            data.bytes().clone(),
        );
        outputs.send(doubled).await
    }

    async fn control(
        &mut self,
        message: ControlMessage,
        _outputs: &Outputs,
    ) -> Result<(), NodeError> {
        if matches!(message, ControlMessage::TimerTick) {
            event("doubler:tick");
        }
        Ok(())
    }
}

struct Sink(u64);

#[otap_df_core::async_trait]
impl SharedExporter for Sink {
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        self.0 += data.records();
        Ok(())
    }

    async fn control(&mut self, message: ControlMessage) -> Result<(), NodeError> {
        if matches!(message, ControlMessage::TimerTick) {
            event("sink:tick");
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), NodeError> {
        event(format!("sink:finish {}", self.0));
        Ok(())
    }
}

fn source(
    _: &NodeContext,
    _: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    Ok(NodeInstance::shared_receiver(Box::new(Source)))
}

fn doubler(
    _: &NodeContext,
    _: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    Ok(NodeInstance::shared_processor(Box::new(Doubler)))
}

fn sink(
    _: &NodeContext,
    _: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    Ok(NodeInstance::shared_exporter(Box::new(Sink(0))))
}

static SOURCE: NodeFactory = NodeFactory::new(ComponentKind::Receiver, "shared_source", "tests")
    .execution(ExecutionModel::Shared)
    .create(source);
static DOUBLER: NodeFactory = NodeFactory::new(ComponentKind::Processor, "shared_doubler", "tests")
    .execution(ExecutionModel::Shared)
    .create(doubler);
static SINK: NodeFactory = NodeFactory::new(ComponentKind::Exporter, "shared_sink", "tests")
    .execution(ExecutionModel::Shared)
    .create(sink);

#[test]
fn shared_nodes_get_every_call_through_the_adapter() {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    registry.register_node(&SOURCE);
    registry.register_node(&DOUBLER);
    registry.register_node(&SINK);
    let registry = registry.finish().expect("registry");
    let text = "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        nodes:
          source: { type: receiver:shared_source }
          doubler: { type: processor:shared_doubler }
          sink: { type: exporter:shared_sink }
        connections:
          - { from: source, to: doubler }
          - { from: doubler, to: sink }
";
    let resolved = load_with_env(text, "shared.yaml", &registry, &|_| None).expect("valid");
    let engine = Engine::new(
        resolved,
        RunOptions {
            // A tick every millisecond, for the processor's and the exporter's `control`.
            timer_interval: Some(Duration::from_millis(1)),
            ..otap_df_tests::engine::one_core_options()
        },
    );
    let telemetry = engine.telemetry();
    engine.run().expect("a clean run");
    let events = EVENTS.lock().unwrap().clone();
    for seen in ["doubler:tick", "sink:tick", "source:done"] {
        assert!(events.iter().any(|e| e == seen), "{seen}: {events:?}");
    }
    assert_eq!(
        events.last().map(String::as_str),
        Some("sink:finish 12"),
        "{events:?}"
    );
    let sink = telemetry
        .node_totals()
        .into_iter()
        .find(|t| t.node == "sink")
        .unwrap();
    assert_eq!(sink.counts.records_in, 12);
}
