//! `GET /metrics`: the run's metrics in the OpenMetrics text format (`prometheus-client`),
//! read from its telemetry at each scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::State;
use crate::core::runtime::{ExtensionMetricsOf, ExtensionState, RunPhase, Telemetry};

impl State {
    pub(super) fn metrics(&self) -> Result<String, std::fmt::Error> {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Metrics(self.telemetry.clone())));
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &registry)?;
        Ok(body)
    }
}

/// One of a node's engine-kept counts.
type CountOf = fn(&crate::core::node::CounterSnapshot) -> u64;

/// The run's metrics, read from its telemetry at each scrape.
#[derive(Debug)]
struct Metrics(Arc<Telemetry>);

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.nodes(&mut encoder)?;
        self.extension_states(&mut encoder)?;
        self.extensions_own(&mut encoder)?;
        self.run(&mut encoder)
    }
}

/// The engine-kept counts of every node: name, help, and the count.
const NODE_COUNTS: [(&str, &str, CountOf); 5] = [
    (
        "otap_df_node_records_in",
        "Records that entered the node (summed over cores).",
        |c| c.records_in,
    ),
    (
        "otap_df_node_records_out",
        "Records the node sent on or delivered.",
        |c| c.records_out,
    ),
    (
        "otap_df_node_records_dropped",
        "Records the node dropped on purpose (deduplicated, filtered).",
        |c| c.records_dropped,
    ),
    (
        "otap_df_node_records_failed",
        "Records the node could not deliver or process.",
        |c| c.records_failed,
    ),
    (
        "otap_df_node_errors",
        "Errors the node handled without losing data.",
        |c| c.errors,
    ),
];

/// An instance's `core` label: its core, or `shared`.
fn core_label(core: Option<usize>) -> String {
    core.map_or_else(|| "shared".to_owned(), |core| core.to_string())
}

impl Metrics {
    /// The nodes' engine-kept counts, and their own counters by name.
    fn nodes(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let totals = self.0.node_totals();
        let counter = ConstCounter::new(0u64);
        for (name, help, value) in NODE_COUNTS {
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for total in &totals {
                let labels = [
                    ("pipeline", total.pipeline.as_str()),
                    ("node", total.node.as_str()),
                ];
                ConstCounter::new(value(&total.counts)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "otap_df_node_counter",
            "The nodes' own counters (requests, refusals by reason, retries, ...), by name.",
            None,
            counter.metric_type(),
        )?;
        for total in &totals {
            for (name, value) in &total.named {
                let labels = [
                    ("pipeline", total.pipeline.as_str()),
                    ("node", total.node.as_str()),
                    ("name", name),
                ];
                ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// Each extension instance's state, one sample per state name.
    fn extension_states(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "otap_df_extension_state",
            "1 for the state each extension instance is in, 0 for the others.",
            None,
            gauge.metric_type(),
        )?;
        for (pipeline, extension, core, state) in self.0.extension_states() {
            let core = core_label(core);
            let current = state.name();
            for name in ExtensionState::NAMES {
                let labels = [
                    ("pipeline", pipeline.as_str()),
                    ("extension", extension.as_str()),
                    ("core", core.as_str()),
                    ("state", name),
                ];
                ConstGauge::new(i64::from(name == current))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// The extensions' own counters and gauges by name. A family without samples is left
    /// out: some OpenMetrics parsers refuse an empty one.
    fn extensions_own(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let extension_metrics = self.0.extension_metrics();
        let any = |of: fn(&ExtensionMetricsOf) -> bool| extension_metrics.iter().any(of);
        if any(|m| !m.metrics.counters.is_empty()) {
            let counter = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "otap_df_extension_counter",
                "The extensions' own counters (token reloads and renewals, calls, errors by \
                 class, ...), by name.",
                None,
                counter.metric_type(),
            )?;
            for metrics in &extension_metrics {
                let core = core_label(metrics.core);
                for (name, value) in &metrics.metrics.counters {
                    let labels = [
                        ("pipeline", metrics.pipeline.as_str()),
                        ("extension", metrics.extension.as_str()),
                        ("core", core.as_str()),
                        ("name", name),
                    ];
                    ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        if any(|m| !m.metrics.gauges.is_empty()) {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "otap_df_extension_gauge",
                "The extensions' own gauges (entries held, token expiry, ...), by name.",
                None,
                gauge.metric_type(),
            )?;
            for metrics in &extension_metrics {
                let core = core_label(metrics.core);
                for (name, value) in &metrics.metrics.gauges {
                    let labels = [
                        ("pipeline", metrics.pipeline.as_str()),
                        ("extension", metrics.extension.as_str()),
                        ("core", core.as_str()),
                        ("name", name),
                    ];
                    ConstGauge::new(*value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }

    /// The run's phase, its readiness and the records it lost.
    fn run(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let phase = self.0.phase();
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "otap_df_run_phase",
            "1 for the phase the run is in (starting, running, stopping, stopped), 0 for the \
             others.",
            None,
            gauge.metric_type(),
        )?;
        for candidate in [
            RunPhase::Starting,
            RunPhase::Running,
            RunPhase::Stopping,
            RunPhase::Stopped,
        ] {
            ConstGauge::new(i64::from(candidate == phase))
                .encode(family.encode_family(&[("phase", candidate.as_str())])?)?;
        }
        let ready = ConstGauge::new(i64::from(self.0.readiness().is_ok()));
        ready.encode(encoder.encode_descriptor(
            "otap_df_ready",
            "1 while /readyz answers 200.",
            None,
            ready.metric_type(),
        )?)?;
        let lost = ConstCounter::new(self.0.records_lost());
        lost.encode(encoder.encode_descriptor(
            "otap_df_records_lost",
            "Records accepted, then neither delivered nor dead-lettered.",
            None,
            lost.metric_type(),
        )?)?;
        Ok(())
    }
}
