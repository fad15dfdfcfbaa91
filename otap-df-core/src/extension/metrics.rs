//! An extension instance's own counters and gauges, as nodes have theirs: looked up once by
//! name when the instance is built, then one atomic operation per event.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The counters and gauges of one extension instance, readable from any thread (the engine's
/// telemetry, the admin endpoint's `/metrics` and `/status`).
#[derive(Debug, Default)]
pub struct ExtensionMetrics {
    counters: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    sharded: Mutex<Vec<(&'static str, Arc<ShardedCounter>)>>,
    gauges: Mutex<Vec<(&'static str, Arc<AtomicI64>)>>,
}

/// Shards of a [`ShardedCounter`]: one per worker thread up to this many cores.
const SHARDS: usize = 16;

/// A counter that threads add to without sharing a cache line: each thread adds to its own
/// shard (threads are given shards in turn, so the engine's workers, one per core, each have
/// one up to 16 cores), and reading sums them. For what every core counts per request — a
/// shared extension's decisions — where one `AtomicU64` would move between the cores at each
/// add (BENCHMARKS.md: `bearer_auth`'s decision with two threads deciding at once, 125 ns
/// with shared counters, 40 ns with sharded ones).
#[derive(Debug, Default)]
pub struct ShardedCounter {
    shards: [Shard; SHARDS],
}

/// One shard on a cache-line pair of its own (adjacent lines are fetched together).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

impl ShardedCounter {
    /// Adds `n` to this thread's shard: one uncontended atomic add.
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of the shards.
    pub fn get(&self) -> u64 {
        self.shards.iter().fold(0u64, |sum, shard| {
            sum.wrapping_add(shard.0.load(Ordering::Relaxed))
        })
    }
}

/// This thread's shard, given on first use.
fn shard() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
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

    /// Counter `name` as a [`ShardedCounter`], created at zero on first use: for counting on
    /// every core per request. Give a name to one kind of counter only.
    pub fn sharded_counter(&self, name: &'static str) -> Arc<ShardedCounter> {
        find_or_insert(&self.sharded, name)
    }

    /// Gauge `name`, created at zero on first use; `store` sets it.
    pub fn gauge(&self, name: &'static str) -> Arc<AtomicI64> {
        find_or_insert(&self.gauges, name)
    }

    /// The current values: the plain counters, then the sharded ones, each in first-use
    /// order.
    pub fn snapshot(&self) -> ExtensionMetricsSnapshot {
        let mut counters = read(&self.counters, |v: &AtomicU64| v.load(Ordering::Relaxed));
        counters.extend(read(&self.sharded, ShardedCounter::get));
        ExtensionMetricsSnapshot {
            counters,
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

    #[test]
    fn a_sharded_counter_sums_what_every_thread_added() {
        let metrics = ExtensionMetrics::default();
        metrics.counter("reloads").fetch_add(1, Ordering::Relaxed);
        let decisions = metrics.sharded_counter("decisions");
        // More threads than shards: some share one, and nothing is lost.
        std::thread::scope(|scope| {
            for thread in 0..(SHARDS as u64 + 4) {
                let decisions = &decisions;
                scope.spawn(move || {
                    for _ in 0..1000 {
                        decisions.add(1);
                    }
                    decisions.add(thread);
                });
            }
        });
        let threads = SHARDS as u64 + 4;
        let expected = threads * 1000 + threads * (threads - 1) / 2;
        assert_eq!(decisions.get(), expected);
        assert!(Arc::ptr_eq(
            &decisions,
            &metrics.sharded_counter("decisions")
        ));
        assert_eq!(
            metrics.snapshot().counters,
            vec![("reloads", 1), ("decisions", expected)]
        );
    }
}
