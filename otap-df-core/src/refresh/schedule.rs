//! When to renew a token, and how long to wait after a failed request. Pure functions of
//! the configuration and the clock readings passed in.

use std::time::Duration;

use crate::secret::EXPIRY_MARGIN;

use super::{RefreshConfig, RetryConfig};

/// How long after receiving a token that expires `lifetime` from now it is renewed.
///
/// At `lifetime_fraction` of the lifetime or `before_expiry` before the expiry, whichever
/// comes first; a token too short-lived for that (its renewal point would fall after it
/// stopped being usable, [`EXPIRY_MARGIN`] before its expiry) is renewed at
/// `lifetime_fraction` of its usable time instead. Never sooner than `min_interval`.
pub fn refresh_delay(lifetime: Duration, policy: &RefreshConfig) -> Duration {
    let usable = lifetime.saturating_sub(EXPIRY_MARGIN);
    let mut delay = lifetime.mul_f64(policy.lifetime_fraction);
    let ahead = lifetime.saturating_sub(policy.before_expiry);
    if !ahead.is_zero() {
        delay = delay.min(ahead);
    }
    if delay >= usable {
        delay = usable.mul_f64(policy.lifetime_fraction);
    }
    delay.max(policy.min_interval)
}

/// Exponential backoff with ±20 % jitter between failed token requests.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryConfig,
    failures: u32,
}

impl Backoff {
    /// No failure yet.
    pub fn new(policy: RetryConfig) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records one more failure and returns how long to wait before the next attempt.
    ///
    /// `usable_left` is how long the token being served stays usable: while there is one,
    /// the wait is at most half of that (and at least `initial_interval`), so that several
    /// attempts fit before it runs out however far the backoff has grown.
    pub fn next_delay(&mut self, usable_left: Option<Duration>) -> Duration {
        let exponent = self.failures.min(31);
        self.failures = self.failures.saturating_add(1);
        let grown = self
            .policy
            .initial_interval
            .saturating_mul(1u32 << exponent)
            .min(self.policy.max_interval);
        let mut delay = grown.mul_f64(0.8 + 0.4 * fastrand::f64());
        if let Some(left) = usable_left.filter(|left| !left.is_zero()) {
            delay = delay.min((left / 2).max(self.policy.initial_interval));
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(fraction: f64, before: u64) -> RefreshConfig {
        RefreshConfig {
            lifetime_fraction: fraction,
            before_expiry: Duration::from_secs(before),
            min_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn an_hour_token_is_renewed_at_eighty_percent() {
        // 48 min (80 %) comes before 55 min (5 min ahead of the expiry).
        assert_eq!(
            refresh_delay(Duration::from_secs(3600), &refresh(0.8, 300)),
            Duration::from_secs(2880)
        );
    }

    #[test]
    fn a_long_token_is_renewed_five_minutes_ahead_if_that_is_sooner() {
        // 10 min token: 80 % = 8 min, 5 min ahead = 5 min.
        assert_eq!(
            refresh_delay(Duration::from_secs(600), &refresh(0.8, 300)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn a_token_shorter_than_the_margins_is_renewed_within_its_usable_time() {
        // 40 s token: usable for 10 s (30 s margin); renewed at 8 s.
        assert_eq!(
            refresh_delay(Duration::from_secs(40), &refresh(0.8, 300)),
            Duration::from_secs(8)
        );
        assert_eq!(
            refresh_delay(Duration::from_secs(30), &refresh(0.8, 300)),
            Duration::from_secs(1)
        );
    }

    fn retry(initial_ms: u64, max_ms: u64) -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_millis(initial_ms),
            max_interval: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_stops_growing_at_the_maximum() {
        let mut backoff = Backoff::new(retry(100, 1000));
        for expected in [100u64, 200, 400, 800, 1000, 1000] {
            let delay = backoff.next_delay(None);
            let low = Duration::from_millis(expected).mul_f64(0.8);
            let high = Duration::from_millis(expected).mul_f64(1.2);
            assert!(
                delay >= low && delay <= high,
                "{delay:?} not in {low:?}..={high:?}"
            );
        }
        assert_eq!(backoff.failures(), 6);
        backoff.reset();
        assert!(backoff.next_delay(None) <= Duration::from_millis(120));
    }

    #[test]
    fn backoff_leaves_room_for_attempts_before_the_token_runs_out() {
        let mut backoff = Backoff::new(retry(100, 60_000));
        for _ in 0..8 {
            backoff.next_delay(None);
        }
        // Grown to a minute, but only 4 s of usable token left: wait at most 2 s.
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(4))),
            Duration::from_secs(2)
        );
        // Never below the initial interval.
        assert_eq!(
            backoff.next_delay(Some(Duration::from_millis(10))),
            Duration::from_millis(100)
        );
    }
}
