//! Types of the key/value capability.

use std::time::Duration;

/// The shortest time-to-live a `key_value_store` must accept: 1 ms.
pub const MIN_TTL: Duration = Duration::from_millis(1);

/// The longest time-to-live a `key_value_store` must accept: 10 years (3650 days). Every
/// store represents it (Redis keeps `PX` in milliseconds of a signed 64-bit clock); callers
/// and stores' own defaults are checked against it when a configuration is validated, so
/// that no TTL a store cannot hold reaches it at run time.
pub const MAX_TTL: Duration = Duration::from_secs(3650 * 86_400);

/// Checks a time-to-live against [`MIN_TTL`]..=[`MAX_TTL`]: `None` when it is in range, the
/// reason (naming `field`) otherwise.
pub fn ttl_out_of_range(field: &str, ttl: Duration) -> Option<String> {
    (!(MIN_TTL..=MAX_TTL).contains(&ttl))
        .then(|| format!("`{field}` must be between 1ms and 3650 days (10 years)"))
}

/// A key/value store call failed. Each variant says whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The store cannot be reached now (connection refused or lost). Transient.
    #[error("key/value store `{store}` is unavailable (transient, retry later): {message}")]
    Unavailable {
        /// The extension id of the store.
        store: String,
        /// What went wrong.
        message: String,
    },
    /// The store did not answer in time. Transient.
    #[error("key/value store `{store}` did not answer within {timeout:?} (transient)")]
    Timeout {
        /// The extension id of the store.
        store: String,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// The store refused the operation (authentication, wrong data type, value too large).
    /// Permanent: retrying the same call fails the same way.
    #[error("key/value store `{store}` refused the operation (permanent): {message}")]
    Refused {
        /// The extension id of the store.
        store: String,
        /// What went wrong.
        message: String,
    },
}

impl KvError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, KvError::Unavailable { .. } | KvError::Timeout { .. })
    }

    /// The extension id of the store the error comes from.
    pub fn store(&self) -> &str {
        match self {
            KvError::Unavailable { store, .. }
            | KvError::Timeout { store, .. }
            | KvError::Refused { store, .. } => store,
        }
    }
}

/// Makes a store's calls fail fast while its backend is down: after `threshold` transient
/// failures in a row it *opens* — calls are refused at once with [`KvError::Unavailable`],
/// naming the last failure — and the store checks the backend in the background, at most
/// once every [`TRIAL_INTERVAL`](Self::TRIAL_INTERVAL) ([`take_trial`](Self::take_trial)),
/// never on the caller's time; the first answer [`close`](Self::close)s it. A store with a
/// task of its own can watch it ([`opened`](Self::opened)) to report itself degraded. A
/// consumer such as the dedup processor, which fails open on errors, then loses no time per
/// batch on a backend it knows is down.
///
/// Lock-free on the call path: one atomic load to admit, one atomic load on success.
#[derive(Debug)]
pub struct CircuitBreaker {
    store: String,
    threshold: u32,
    in_a_row: std::sync::atomic::AtomicU32,
    open: std::sync::atomic::AtomicBool,
    last_error: std::sync::Mutex<String>,
    opened: tokio::sync::Notify,
    /// Time origin of `next_trial`.
    base: std::time::Instant,
    /// When the next trial call may go through while open, in nanoseconds since `base`.
    next_trial: std::sync::atomic::AtomicU64,
}

impl CircuitBreaker {
    /// While open, one call this often goes to the backend to see whether it is back.
    pub const TRIAL_INTERVAL: Duration = Duration::from_millis(100);

    /// A closed breaker for store `store` that opens after `threshold` (at least 1)
    /// transient failures in a row.
    pub fn new(store: impl Into<String>, threshold: u32) -> Self {
        Self {
            store: store.into(),
            threshold: threshold.max(1),
            in_a_row: std::sync::atomic::AtomicU32::new(0),
            open: std::sync::atomic::AtomicBool::new(false),
            last_error: std::sync::Mutex::new(String::new()),
            opened: tokio::sync::Notify::new(),
            base: std::time::Instant::now(),
            next_trial: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// While open: whether this caller should start a background check of the backend now
    /// (true at most once per [`TRIAL_INTERVAL`](Self::TRIAL_INTERVAL)).
    pub fn take_trial(&self) -> bool {
        use std::sync::atomic::Ordering;
        if !self.open.load(Ordering::Acquire) {
            return false;
        }
        let now = self.now_nanos();
        let due = self.next_trial.load(Ordering::Relaxed);
        let interval = u64::try_from(Self::TRIAL_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        now >= due
            && self
                .next_trial
                .compare_exchange(
                    due,
                    now.saturating_add(interval),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// `Ok` when a call may go to the backend; the fast refusal while open.
    pub fn admit(&self) -> Result<(), KvError> {
        if !self.open.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        Err(KvError::Unavailable {
            store: self.store.clone(),
            message: format!(
                "failing fast until the store answers again; last error: {}",
                self.last_error()
            ),
        })
    }

    /// Records what a call to the backend gave.
    pub fn record<T>(&self, outcome: &Result<T, KvError>) {
        use std::sync::atomic::Ordering;
        match outcome {
            Ok(_) => {
                if self.in_a_row.load(Ordering::Relaxed) != 0 {
                    self.in_a_row.store(0, Ordering::Relaxed);
                }
                if self.open.load(Ordering::Acquire) {
                    // A trial answered.
                    self.close();
                }
            }
            Err(error) if error.is_transient() => {
                let failures = self.in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= self.threshold && !self.open.load(Ordering::Acquire) {
                    *self
                        .last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = error.to_string();
                    let interval =
                        u64::try_from(Self::TRIAL_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
                    self.next_trial
                        .store(self.now_nanos().saturating_add(interval), Ordering::Relaxed);
                    self.open.store(true, Ordering::Release);
                    self.opened.notify_one();
                }
            }
            // A refusal says the backend answered: it is not down.
            Err(_) => self.in_a_row.store(0, Ordering::Relaxed),
        }
    }

    /// Whether calls are being refused.
    pub fn is_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The failure that opened it.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Returns once the breaker is open (at once if it is): the store's probe waits here.
    pub async fn opened(&self) {
        while !self.is_open() {
            self.opened.notified().await;
        }
    }

    /// The backend answers again: calls go through.
    pub fn close(&self) {
        use std::sync::atomic::Ordering;
        self.in_a_row.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Result<(), KvError> {
        Err(KvError::Unavailable {
            store: "s".into(),
            message: "connection refused".into(),
        })
    }

    #[test]
    fn opens_after_the_threshold_of_transient_failures_in_a_row_and_closes_when_told() {
        let breaker = CircuitBreaker::new("s", 3);
        breaker.record(&down());
        breaker.record(&down());
        breaker.record(&Ok(()));
        breaker.record(&down());
        breaker.record(&down());
        assert!(
            breaker.admit().is_ok(),
            "a success in between resets the count"
        );
        breaker.record(&down());
        let refused = breaker.admit().expect_err("open");
        assert_eq!(
            refused.to_string(),
            "key/value store `s` is unavailable (transient, retry later): failing fast until \
             the store answers again; last error: key/value store `s` is unavailable \
             (transient, retry later): connection refused"
        );
        breaker.close();
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn while_open_one_check_is_due_each_interval_and_its_success_closes_it() {
        let breaker = CircuitBreaker::new("s", 1);
        assert!(!breaker.take_trial(), "no check while closed");
        breaker.record(&down());
        assert!(!breaker.take_trial(), "no check before the interval");
        std::thread::sleep(CircuitBreaker::TRIAL_INTERVAL);
        assert!(breaker.take_trial(), "the check");
        assert!(!breaker.take_trial(), "one check per interval");
        assert!(breaker.admit().is_err(), "calls still fail fast meanwhile");
        breaker.record(&Ok(()));
        assert!(!breaker.is_open());
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn refusals_do_not_open_it() {
        let breaker = CircuitBreaker::new("s", 1);
        breaker.record::<()>(&Err(KvError::Refused {
            store: "s".into(),
            message: "WRONGTYPE".into(),
        }));
        assert!(!breaker.is_open());
    }
}
