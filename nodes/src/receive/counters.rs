//! A receiver's own counters: requests, refusals by reason, connections, admission.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use otap_df_core::node::NodeCounters;

/// The receiver's own counters (requests; refusals by reason; connections).
pub(crate) struct Counters {
    pub(crate) requests: Arc<AtomicU64>,
    pub(crate) accepted: Arc<AtomicU64>,
    pub(crate) auth_missing: Arc<AtomicU64>,
    pub(crate) auth_invalid: Arc<AtomicU64>,
    pub(crate) auth_expired: Arc<AtomicU64>,
    pub(crate) auth_forbidden: Arc<AtomicU64>,
    pub(crate) auth_unavailable: Arc<AtomicU64>,
    pub(crate) bad_request: Arc<AtomicU64>,
    pub(crate) unsupported: Arc<AtomicU64>,
    pub(crate) too_large: Arc<AtomicU64>,
    pub(crate) not_found: Arc<AtomicU64>,
    pub(crate) pipeline_full: Arc<AtomicU64>,
    pub(crate) pipeline_closed: Arc<AtomicU64>,
    pub(crate) body_timeout: Arc<AtomicU64>,
    pub(crate) deadline_exceeded: Arc<AtomicU64>,
    pub(crate) bytes_in_flight: Arc<AtomicU64>,
    pub(crate) queue_full: Arc<AtomicU64>,
    pub(crate) not_kept: Arc<AtomicU64>,
    pub(crate) connections_accepted: Arc<AtomicU64>,
    pub(crate) connections_rejected: Arc<AtomicU64>,
    pub(crate) connections_shed: Arc<AtomicU64>,
    pub(crate) idle_closed: Arc<AtomicU64>,
    pub(crate) handed_over: Arc<AtomicU64>,
    pub(crate) accept_errors: Arc<AtomicU64>,
    pub(crate) waited: Arc<AtomicU64>,
    pub(crate) read: Arc<AtomicU64>,
    pub(crate) counters: Arc<NodeCounters>,
}

impl Counters {
    pub(crate) fn new(counters: &Arc<NodeCounters>) -> Self {
        Self {
            requests: counters.named("requests"),
            accepted: counters.named("accepted"),
            auth_missing: counters.named("refused.auth_missing"),
            auth_invalid: counters.named("refused.auth_invalid"),
            auth_expired: counters.named("refused.auth_expired"),
            auth_forbidden: counters.named("refused.auth_forbidden"),
            auth_unavailable: counters.named("refused.auth_unavailable"),
            bad_request: counters.named("refused.bad_request"),
            unsupported: counters.named("refused.unsupported_media_type"),
            too_large: counters.named("refused.too_large"),
            not_found: counters.named("refused.not_found"),
            pipeline_full: counters.named("refused.pipeline_full"),
            pipeline_closed: counters.named("refused.pipeline_closed"),
            body_timeout: counters.named("refused.body_timeout"),
            deadline_exceeded: counters.named("refused.deadline_exceeded"),
            bytes_in_flight: counters.named("refused.bytes_in_flight"),
            queue_full: counters.named("refused.queue_full"),
            not_kept: counters.named("refused.not_kept"),
            connections_accepted: counters.named("connections.accepted"),
            connections_rejected: counters.named("connections.rejected"),
            connections_shed: counters.named("connections.shed"),
            idle_closed: counters.named("connections.idle_closed"),
            handed_over: counters.named("connections.handed_over"),
            accept_errors: counters.named("connections.accept_errors"),
            waited: counters.named("admission.waited"),
            read: counters.named("bodies_read"),
            counters: counters.clone(),
        }
    }
}

/// One more.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
