#![doc = include_str!("../README.md")]

use std::time::Duration;

use otap_df_core::capability::CapabilityId;
use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
pub use otap_df_core::data::Signal;
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::registry::Registry;
use serde::Deserialize;

const REGISTRANT: &str = env!("CARGO_PKG_NAME");

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
    /// Batches to emit before finishing; unlimited when absent.
    #[serde(default)]
    pub count: Option<u64>,
    /// Batches per second; as fast as the pipeline accepts when absent.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Share of batches that repeat an earlier batch.
    #[serde(default)]
    pub duplicate_ratio: f64,
}

impl GeneratorConfig {
    fn default_batch_size() -> usize {
        100
    }

    /// Decodes and checks ranges.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if decoded.batch_size == 0 {
            return Err(config.invalid("batch_size", "`batch_size` must be at least 1"));
        }
        if decoded
            .rate
            .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
        {
            return Err(config.invalid(
                "rate",
                "`rate` must be a number of batches per second greater than 0",
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
}

/// `config:` of `processor:dedup`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// How long a batch's hash is remembered.
    #[serde(default = "DedupConfig::default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

impl DedupConfig {
    fn default_ttl() -> Duration {
        Duration::from_secs(600)
    }

    /// Decodes and checks ranges.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if decoded.ttl.is_zero() {
            return Err(config.invalid("ttl", "`ttl` must be longer than 0s"));
        }
        Ok(decoded)
    }
}

/// How much `exporter:debug` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    /// One line per batch.
    #[default]
    Basic,
    /// Adds resource and scope counts.
    Normal,
    /// Adds every record.
    Detailed,
}

/// `config:` of `exporter:debug`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    /// How much to print.
    #[serde(default)]
    pub verbosity: Verbosity,
}

/// `receiver:generator`.
pub static GENERATOR: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "generator", REGISTRANT)
        .description("synthetic OTLP logs, metrics or traces, at a rate or a fixed count")
        .validate_config(|config| GeneratorConfig::decode(config).map(drop));

/// `processor:dedup`.
pub static DEDUP: NodeFactory = NodeFactory::new(ComponentKind::Processor, "dedup", REGISTRANT)
    .description("drops batches already seen within a TTL, using a key/value store")
    .accepts(&[CapabilityRequirement::required(CapabilityId::KeyValueStore)])
    .validate_config(|config| DedupConfig::decode(config).map(drop));

/// `exporter:debug`.
pub static DEBUG: NodeFactory = NodeFactory::new(ComponentKind::Exporter, "debug", REGISTRANT)
    .description("prints a summary line per batch")
    .validate_config(|config| config.decode::<DebugConfig>().map(drop));

/// Registers every built-in node type.
pub fn register(registry: &mut Registry) {
    registry.register_node(&GENERATOR);
    registry.register_node(&DEDUP);
    registry.register_node(&DEBUG);
}
