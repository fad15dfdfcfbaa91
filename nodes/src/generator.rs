//! `receiver:generator`: synthetic OTLP batches, at a rate or a fixed count.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::NodeFactory;
use otap_df_core::node::{
    ControlMessage, LocalReceiver, NodeContext, NodeCounters, NodeError, NodeInstance,
    ReceiverContext,
};
use serde::Deserialize;
use tokio::time::Instant;

use crate::otlp;

/// `config:` of `receiver:generator`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// The signal to emit.
    #[serde(default)]
    pub signal: Signal,
    /// Records per batch.
    #[serde(default = "GeneratorConfig::default_batch_size")]
    pub batch_size: usize,
    /// Batches to emit in total, over all cores, before finishing; unlimited when absent.
    #[serde(default)]
    pub count: Option<u64>,
    /// Batches per second in total, over all cores; as fast as the pipeline accepts when
    /// absent.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Share of batches that repeat the previous batch of the same core, byte for byte.
    #[serde(default)]
    pub duplicate_ratio: f64,
    /// `protobuf` (default) or `json` (OTLP/JSON).
    #[serde(default = "GeneratorConfig::default_encoding")]
    pub encoding: Encoding,
}

/// The largest `batch_size`: a batch is built in memory at once (about 40 bytes a record).
pub const MAX_BATCH_SIZE: usize = 1_000_000;
/// The slowest `rate`: one batch a day.
pub const MIN_RATE: f64 = 1.0 / 86_400.0;
/// The fastest `rate`.
pub const MAX_RATE: f64 = 10_000_000.0;

impl GeneratorConfig {
    fn default_batch_size() -> usize {
        100
    }

    fn default_encoding() -> Encoding {
        Encoding::Protobuf
    }

    /// Decodes and checks ranges.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if !(1..=MAX_BATCH_SIZE).contains(&decoded.batch_size) {
            return Err(config.invalid(
                "batch_size",
                format!("`batch_size` must be between 1 and {MAX_BATCH_SIZE} records"),
            ));
        }
        if decoded
            .rate
            .is_some_and(|rate| !(MIN_RATE..=MAX_RATE).contains(&rate))
        {
            return Err(config.invalid(
                "rate",
                format!(
                    "`rate` must be between {MIN_RATE} and {MAX_RATE} batches per second (omit \
                     it for as fast as the pipeline accepts)"
                ),
            ));
        }
        if !(0.0..=1.0).contains(&decoded.duplicate_ratio) {
            return Err(config.invalid(
                "duplicate_ratio",
                "`duplicate_ratio` must be between 0.0 and 1.0",
            ));
        }
        Ok(decoded)
    }

    /// Whether batch `index` (from 0) of a core repeats the previous one. Deterministic:
    /// exactly `floor(n * duplicate_ratio)` of the first `n` batches are repeats (the first
    /// batch never is).
    pub fn is_duplicate(&self, index: u64) -> bool {
        let r = self.duplicate_ratio;
        index > 0 && ((index + 1) as f64 * r).floor() > (index as f64 * r).floor()
    }
}

/// The batches core `core` of `cores` emits out of `total`.
pub fn share(total: u64, core: usize, cores: usize) -> u64 {
    let cores = cores.max(1) as u64;
    total / cores + u64::from((core as u64) < total % cores)
}

/// `receiver:generator`.
pub static GENERATOR: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "generator", env!("CARGO_PKG_NAME"))
        .description("synthetic OTLP logs, metrics or traces, at a rate or a fixed count")
        .validate_config(|config| GeneratorConfig::decode(config).map(drop))
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = GeneratorConfig::decode(config)?;
    let count = config
        .count
        .map(|total| share(total, context.core, context.cores));
    let period = config
        .rate
        .map(|rate| Duration::from_secs_f64(context.cores.max(1) as f64 / rate));
    Ok(NodeInstance::Receiver(Box::new(Generator {
        config,
        count,
        period,
        core: context.core,
        node: context.node_id.clone(),
    })))
}

struct Generator {
    config: GeneratorConfig,
    count: Option<u64>,
    period: Option<Duration>,
    core: usize,
    node: String,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

#[otap_df_core::async_trait(?Send)]
impl LocalReceiver for Generator {
    async fn run(self: Box<Self>, mut context: ReceiverContext) -> Result<(), NodeError> {
        let mut previous: Option<OtlpPayload> = None;
        let mut next_at = Instant::now();
        let mut index = 0u64;
        while self.count.is_none_or(|count| index < count) {
            if let Some(period) = self.period {
                loop {
                    tokio::select! {
                        biased;
                        message = context.control.recv() => if matches!(message, ControlMessage::Shutdown { .. }) { return Ok(()) },
                        () = tokio::time::sleep_until(next_at) => break,
                    }
                }
                next_at += period;
            } else if let Some(ControlMessage::Shutdown { .. }) = context.control.try_recv() {
                return Ok(());
            }
            let payload = match &previous {
                Some(previous) if self.config.is_duplicate(index) => previous.clone(),
                _ => {
                    let payload = otlp::synthetic(
                        self.config.signal,
                        self.config.batch_size,
                        &format!("core{}-batch{index}", self.core),
                        now_nanos(),
                    );
                    match self.config.encoding {
                        Encoding::Protobuf => payload,
                        Encoding::Json => {
                            otlp::to_json(&payload).map_err(|e| NodeError::Failed {
                                node: self.node.clone(),
                                message: format!("cannot encode OTLP/JSON: {e}"),
                            })?
                        }
                    }
                }
            };
            let records = payload.records();
            previous = Some(payload.clone());
            // Waits while downstream queues are full; a shutdown still gets through, and other
            // control messages do not cancel the pending send.
            let send = context.outputs.send(payload);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    biased;
                    message = context.control.recv() => if matches!(message, ControlMessage::Shutdown { .. }) { return Ok(()) },
                    sent = &mut send => {
                        sent?;
                        break;
                    }
                }
            }
            // A receiver's "in" counts what it accepted into the pipeline.
            NodeCounters::add(&context.outputs.counters().records_in, records);
            index += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<GeneratorConfig, String> {
        otap_df_tests::config::try_decode(yaml, GeneratorConfig::decode)
    }

    #[test]
    fn rates_and_batch_sizes_that_would_crash_a_run_are_config_errors() {
        for (yaml, expected) in [
            ("rate: 1e-300", "`rate` must be between"),
            ("rate: 1e300", "`rate` must be between"),
            ("rate: 0", "`rate` must be between"),
            (
                "batch_size: 100000000",
                "`batch_size` must be between 1 and 1000000",
            ),
            (
                "batch_size: 18446744073709551615",
                "`batch_size` must be between 1 and 1000000",
            ),
            (
                "batch_size: 0",
                "`batch_size` must be between 1 and 1000000",
            ),
        ] {
            let error = decode(yaml).expect_err(yaml);
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        assert!(decode("{ rate: 0.5, batch_size: 1000000 }").is_ok());
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for total in [0, 1, 7, 1000] {
            for cores in 1..5 {
                let sum: u64 = (0..cores).map(|core| share(total, core, cores)).sum();
                assert_eq!(sum, total, "{total} over {cores}");
            }
        }
    }

    #[test]
    fn duplicates_are_exactly_the_ratio_of_batches() {
        let config = GeneratorConfig {
            signal: Signal::Logs,
            batch_size: 1,
            count: None,
            rate: None,
            duplicate_ratio: 0.25,
            encoding: Encoding::Protobuf,
        };
        let duplicates = (0..1000).filter(|i| config.is_duplicate(*i)).count();
        assert_eq!(duplicates, 250);
        assert!(!config.is_duplicate(0));
    }
}
