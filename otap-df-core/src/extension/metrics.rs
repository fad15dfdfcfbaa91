//! An extension instance's own counters and gauges, as nodes have theirs: looked up once by
//! name when the instance is built, then one atomic operation per event.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The counters and gauges of one extension instance, readable from any thread (the engine's
/// telemetry, the admin endpoint's `/metrics` and `/status`).
#[derive(Debug, Default)]
pub struct ExtensionMetrics {
    counters: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    gauges: Mutex<Vec<(&'static str, Arc<AtomicI64>)>>,
}

/// The values of an instance's metrics at one moment, in first-use order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionMetricsSnapshot {
    /// Counters (only ever increase): `reloads`, `renewals`, `calls`, ...
    pub counters: Vec<(&'static str, u64)>,
    /// Gauges (current values): `entries`, `token_expiry_unix_seconds`, ...
    pub gauges: Vec<(&'static str, i64)>,
}

impl ExtensionMetrics {
    /// Counter `name`, created at zero on first use. Keep the `Arc`: adding to it is then one
    /// atomic operation (`fetch_add(1, Relaxed)`).
    pub fn counter(&self, name: &'static str) -> Arc<AtomicU64> {
        find_or_insert(&self.counters, name)
    }

    /// Gauge `name`, created at zero on first use; `store` sets it.
    pub fn gauge(&self, name: &'static str) -> Arc<AtomicI64> {
        find_or_insert(&self.gauges, name)
    }

    /// The current values.
    pub fn snapshot(&self) -> ExtensionMetricsSnapshot {
        ExtensionMetricsSnapshot {
            counters: read(&self.counters, |v: &AtomicU64| v.load(Ordering::Relaxed)),
            gauges: read(&self.gauges, |v: &AtomicI64| v.load(Ordering::Relaxed)),
        }
    }
}

fn find_or_insert<T: Default>(
    list: &Mutex<Vec<(&'static str, Arc<T>)>>,
    name: &'static str,
) -> Arc<T> {
    let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, value)) = list.iter().find(|(n, _)| *n == name) {
        return value.clone();
    }
    let value = Arc::new(T::default());
    list.push((name, value.clone()));
    value
}

fn read<T, V>(
    list: &Mutex<Vec<(&'static str, Arc<T>)>>,
    value: impl Fn(&T) -> V,
) -> Vec<(&'static str, V)> {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(name, v)| (*name, value(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_metric_and_the_snapshot_keeps_first_use_order() {
        let metrics = ExtensionMetrics::default();
        let reloads = metrics.counter("reloads");
        metrics.counter("failures").fetch_add(2, Ordering::Relaxed);
        reloads.fetch_add(1, Ordering::Relaxed);
        metrics.counter("reloads").fetch_add(1, Ordering::Relaxed);
        metrics.gauge("entries").store(-3, Ordering::Relaxed);
        assert_eq!(
            metrics.snapshot(),
            ExtensionMetricsSnapshot {
                counters: vec![("reloads", 2), ("failures", 2)],
                gauges: vec![("entries", -3)],
            }
        );
    }
}
