//! Types of the durable queue capability.

use std::time::Duration;

use bytes::Bytes;

/// One stored entry of a queue, as a consumer claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Its id in its queue: ids grow in the order entries were appended.
    pub id: u64,
    /// What was appended.
    pub bytes: Bytes,
}

/// What a queue holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Entries stored and not acknowledged (claimed ones included).
    pub entries: u64,
    /// Bytes the queue takes on disk, what acknowledged entries still take until their
    /// space is reclaimed included.
    pub bytes: u64,
    /// How long the oldest entry not acknowledged has been stored; `None` when none is.
    pub oldest: Option<Duration>,
}

/// A durable queue call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The store is at its byte cap: the entry was not appended. Transient: room comes back
    /// as entries are delivered; a producer answers its sender "come back later".
    #[error("durable queue `{queue}` of `{store}` is full ({max_bytes} bytes): {message}")]
    Full {
        /// The extension id of the store.
        store: String,
        /// The queue.
        queue: String,
        /// The store's cap.
        max_bytes: u64,
        /// What to do about it.
        message: String,
    },
    /// The store could not do it (a write or `fsync` failed, a file could not be read):
    /// what the call was about is not stored.
    #[error("durable queue `{queue}` of `{store}` failed: {message}")]
    Failed {
        /// The extension id of the store.
        store: String,
        /// The queue.
        queue: String,
        /// What went wrong, naming the file.
        message: String,
    },
    /// The store is shut down.
    #[error("durable queue store `{store}` is closed")]
    Closed {
        /// The extension id of the store.
        store: String,
    },
}
