//! Sums of node counters: a node's instances added up, and what a pipeline instance held when
//! it was aborted.

use super::records::{NodeStats, NodeTotals};
use crate::config::ComponentKind;
use crate::node::CounterSnapshot;
use crate::resolve::PipelinePlan;

/// Adds a node instance's counts to its node's sums in `totals` (a new entry at the end the
/// first time).
pub(super) fn add_to(totals: &mut Vec<NodeTotals>, stats: &NodeStats) {
    let counts = stats.counters.snapshot();
    let named = stats.counters.named_snapshot();
    match totals
        .iter_mut()
        .find(|t| t.pipeline == stats.pipeline && t.node == stats.node)
    {
        Some(total) => {
            total.counts += counts;
            for (name, value) in named {
                match total.named.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, sum)) => *sum += value,
                    None => total.named.push((name, value)),
                }
            }
        }
        None => totals.push(NodeTotals {
            pipeline: stats.pipeline.clone(),
            node: stats.node.clone(),
            counts,
            named,
        }),
    }
}

/// What one pipeline instance's nodes held when they were aborted, from their counters
/// (`counts` by node id): per node, what reached it (its upstream nodes' `out`) and it did
/// not take in (queued), plus what it took in and neither passed on, dropped nor failed
/// (held). Receivers hold nothing acknowledged.
pub(in crate::runtime) fn lost_in(
    plan: &PipelinePlan,
    counts: impl Fn(&str) -> CounterSnapshot,
) -> u64 {
    let mut lost = 0;
    for node in &plan.nodes {
        let own = counts(&node.id);
        let reached: u64 = plan
            .edges
            .iter()
            .filter(|(_, to)| *to == node.id)
            .map(|(from, _)| counts(from).records_out)
            .sum();
        let queued = reached.saturating_sub(own.records_in);
        let held = if node.factory.kind() == ComponentKind::Receiver {
            0
        } else {
            own.records_in
                .saturating_sub(own.records_out + own.records_dropped + own.records_failed)
        };
        lost += queued + held;
    }
    lost
}
