//! Tokens asked of a token service and renewed ahead of their expiry: the machinery every
//! extension that provides `bearer_token_provider` from a service shares (`azure_auth`,
//! `oauth2`, a third party's).
//!
//! An extension supplies a [`TokenSource`] (one request for a token: what differs between
//! services) and gets a [`RefreshingToken`] (the provider consumers read: one lock-free load
//! per request) and a [`Refresher`] (its task: the first request at start, renewals on the
//! [`RefreshConfig`] schedule, retries with the [`RetryConfig`] backoff, the extension
//! reported degraded while requests fail, a token withdrawn once it is no longer usable).
//! The two policies are the `refresh:` and `retry:` blocks of such an extension's YAML.

mod schedule;
mod token;

use std::time::Duration;

use serde::Deserialize;

use crate::config::InvalidOption;
use crate::extension::ErrorKind;
use crate::secret::{BearerToken, EXPIRY_MARGIN};

pub use schedule::{Backoff, refresh_delay};
pub use token::{Refresher, RefreshingToken};

/// One request for a token, made by [`RefreshingToken`] when its schedule or a consumer asks.
#[crate::async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// Asks the service for a token once, within the source's own timeout. The token must
    /// carry its expiry. An error never contains a token or a secret.
    async fn fetch(&self) -> Result<BearerToken, FetchError>;

    /// How tokens are obtained (`client_secret`, `managed_identity`), for logs.
    fn method(&self) -> &str;
}

/// A token request failed: what kind of failure, and what happened (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// [`ErrorKind::Misconfigured`] when the service refused what the configuration sends
    /// (unknown client, wrong secret, invalid scope): retrying the same will fail the same;
    /// [`ErrorKind::Unavailable`] when the service could not be reached or failed.
    pub kind: ErrorKind,
    /// What went wrong, on one line.
    pub message: String,
}

impl FetchError {
    /// The service refused what the configuration sends.
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Misconfigured,
            message: message.into(),
        }
    }

    /// The service could not be reached, or failed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }
}

/// `refresh:` — a token is renewed at `lifetime_fraction` of its lifetime, and at the latest
/// `before_expiry` before it expires, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RefreshConfig {
    /// The share of a token's lifetime after which it is renewed (0 < f < 1).
    #[serde(default = "defaults::lifetime_fraction")]
    pub lifetime_fraction: f64,
    /// How long before its expiry a token is renewed at the latest.
    #[serde(default = "defaults::before_expiry", with = "humantime_serde")]
    pub before_expiry: Duration,
    /// No two token requests closer than this, retries after a failure aside: the shortest
    /// renewal delay, and the throttle of renewals forced by consumers (after a server
    /// rejected a token).
    #[serde(default = "defaults::min_interval", with = "humantime_serde")]
    pub min_interval: Duration,
}

impl RefreshConfig {
    /// Renewal at `lifetime_fraction` of a token's lifetime, and at the latest
    /// `before_expiry` before it expires.
    #[must_use]
    pub fn with_renewal(mut self, lifetime_fraction: f64, before_expiry: Duration) -> Self {
        self.lifetime_fraction = lifetime_fraction;
        self.before_expiry = before_expiry;
        self
    }

    /// No two token requests closer than this, retries after a failure aside.
    #[must_use]
    pub fn with_min_interval(mut self, min_interval: Duration) -> Self {
        self.min_interval = min_interval;
        self
    }
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            lifetime_fraction: defaults::lifetime_fraction(),
            before_expiry: defaults::before_expiry(),
            min_interval: defaults::min_interval(),
        }
    }
}

/// `retry:` — after a failed token request, the next one waits `initial_interval`, doubling
/// with each failure up to `max_interval`, with ±20 % jitter; never later than half the
/// time the current token has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Wait after the first failure.
    #[serde(default = "defaults::initial_interval", with = "humantime_serde")]
    pub initial_interval: Duration,
    /// The longest wait between two attempts.
    #[serde(default = "defaults::max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
}

impl RetryConfig {
    /// Waits after a failed request: `initial` first, doubling up to `max`.
    #[must_use]
    pub fn with_intervals(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_interval = initial;
        self.max_interval = max;
        self
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_interval: defaults::initial_interval(),
            max_interval: defaults::max_interval(),
        }
    }
}

/// The shortest `retry.initial_interval` and `refresh.min_interval` accepted.
pub const MIN_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// The longest of any duration option: one day (no deadline computed from one overflows
/// the clock).
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// Checks the `refresh:` and `retry:` blocks together; the error names the option.
pub fn check_policies(refresh: &RefreshConfig, retry: &RetryConfig) -> Result<(), InvalidOption> {
    let fraction = refresh.lifetime_fraction;
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(InvalidOption::new(
            "refresh.lifetime_fraction",
            format!(
                "`refresh.lifetime_fraction` is a share of the token's lifetime, between 0 \
                 and 1 exclusive (e.g. 0.8); got {fraction}"
            ),
        ));
    }
    for (field, value) in [
        ("refresh.before_expiry", refresh.before_expiry),
        ("refresh.min_interval", refresh.min_interval),
        ("retry.initial_interval", retry.initial_interval),
        ("retry.max_interval", retry.max_interval),
    ] {
        check_duration(field, value)?;
    }
    if refresh.before_expiry <= EXPIRY_MARGIN {
        return Err(InvalidOption::new(
            "refresh.before_expiry",
            format!(
                "`refresh.before_expiry` must exceed {EXPIRY_MARGIN:?}: tokens are not sent \
                 within {EXPIRY_MARGIN:?} of their expiry"
            ),
        ));
    }
    if refresh.min_interval < MIN_RETRY_INTERVAL {
        return Err(InvalidOption::new(
            "refresh.min_interval",
            format!("`refresh.min_interval` must be at least {MIN_RETRY_INTERVAL:?}"),
        ));
    }
    if retry.initial_interval < MIN_RETRY_INTERVAL {
        return Err(InvalidOption::new(
            "retry.initial_interval",
            format!("`retry.initial_interval` must be at least {MIN_RETRY_INTERVAL:?}"),
        ));
    }
    if retry.max_interval < retry.initial_interval {
        return Err(InvalidOption::new(
            "retry.max_interval",
            "`retry.max_interval` must be at least `retry.initial_interval`",
        ));
    }
    Ok(())
}

/// `field` (a duration option) is at most [`MAX_DURATION`].
pub fn check_duration(field: &str, value: Duration) -> Result<(), InvalidOption> {
    if value > MAX_DURATION {
        return Err(InvalidOption::new(
            field,
            format!("`{field}` must be at most 1 day"),
        ));
    }
    Ok(())
}

mod defaults {
    use std::time::Duration;

    pub fn lifetime_fraction() -> f64 {
        0.8
    }

    pub fn before_expiry() -> Duration {
        Duration::from_secs(5 * 60)
    }

    pub fn min_interval() -> Duration {
        Duration::from_secs(5)
    }

    pub fn initial_interval() -> Duration {
        Duration::from_secs(1)
    }

    pub fn max_interval() -> Duration {
        Duration::from_secs(5 * 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked_option_by_option() {
        let refresh = RefreshConfig::default();
        let retry = RetryConfig::default();
        assert_eq!(check_policies(&refresh, &retry), Ok(()));
        let cases = [
            (
                refresh.with_renewal(1.0, Duration::from_secs(300)),
                retry,
                "refresh.lifetime_fraction",
            ),
            (
                refresh.with_renewal(0.8, Duration::from_secs(30)),
                retry,
                "refresh.before_expiry",
            ),
            (
                refresh.with_min_interval(Duration::from_millis(1)),
                retry,
                "refresh.min_interval",
            ),
            (
                refresh,
                retry.with_intervals(Duration::from_secs(2), Duration::from_secs(1)),
                "retry.max_interval",
            ),
            (
                refresh,
                retry.with_intervals(Duration::from_secs(1), Duration::from_secs(86_401)),
                "retry.max_interval",
            ),
        ];
        for (refresh, retry, field) in cases {
            let error = check_policies(&refresh, &retry).expect_err(field);
            assert_eq!(error.option, field, "{error}");
        }
    }
}
