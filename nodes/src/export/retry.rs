//! When a failed request is tried again: exponential backoff with jitter, bounded by a wait
//! and by a total time.

use std::time::Duration;

use otap_df_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

/// `retry:` of an exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retry at all.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Wait before the first retry; it doubles with each retry, with ±50 % jitter.
    #[serde(default = "defaults::initial_interval", with = "humantime_serde")]
    pub initial_interval: Duration,
    /// The longest wait between two attempts (a longer `Retry-After` is cut to it).
    #[serde(default = "defaults::max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
    /// No retry starts after this long since the first attempt.
    #[serde(default = "defaults::max_elapsed_time", with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: defaults::enabled(),
            initial_interval: defaults::initial_interval(),
            max_interval: defaults::max_interval(),
            max_elapsed_time: defaults::max_elapsed_time(),
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn enabled() -> bool {
        true
    }

    pub fn initial_interval() -> Duration {
        Duration::from_secs(1)
    }

    pub fn max_interval() -> Duration {
        Duration::from_secs(30)
    }

    pub fn max_elapsed_time() -> Duration {
        Duration::from_secs(300)
    }
}

/// The longest duration option: long enough for any retry budget, short enough that the
/// arithmetic on it never overflows.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `field` of `config` (a duration) is between 1ms and [`MAX_DURATION`].
pub(crate) fn check_duration(
    config: &ComponentConfig<'_>,
    field: &str,
    value: Duration,
) -> Result<(), ConfigError> {
    if (Duration::from_millis(1)..=MAX_DURATION).contains(&value) {
        Ok(())
    } else {
        Err(config.invalid(field, format!("`{field}` must be between 1ms and 7 days")))
    }
}

impl RetryConfig {
    /// Checks the block, found at `retry` of `config`.
    pub(crate) fn check(&self, config: &ComponentConfig<'_>) -> Result<(), ConfigError> {
        check_duration(config, "retry.initial_interval", self.initial_interval)?;
        check_duration(config, "retry.max_interval", self.max_interval)?;
        check_duration(config, "retry.max_elapsed_time", self.max_elapsed_time)?;
        if self.max_interval < self.initial_interval {
            return Err(config.invalid(
                "retry.max_interval",
                "`retry.max_interval` must not be shorter than `retry.initial_interval`",
            ));
        }
        Ok(())
    }
}

/// `interval` ± 50 %, so that many exporters do not retry in step.
pub(crate) fn jitter(interval: Duration) -> Duration {
    interval.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_either_side() {
        for _ in 0..1000 {
            let waited = jitter(Duration::from_millis(100));
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(150)).contains(&waited),
                "{waited:?}"
            );
        }
    }
}
