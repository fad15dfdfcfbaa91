//! `config:` of `extension:disk_queue`.

use std::path::PathBuf;
use std::time::Duration;

use otap_df_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

/// The smallest `max_bytes`: 1 MiB.
pub const MIN_BYTES: u64 = 1 << 20;
/// The largest `max_bytes`: 16 TiB.
pub const MAX_BYTES: u64 = 1 << 44;
/// The smallest `segment_bytes`: 64 KiB.
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;
/// The largest `segment_bytes`: 1 GiB.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// The longest `commit_interval`: 1 s.
pub const MAX_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// `config:` of `extension:disk_queue`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskQueueConfig {
    /// The folder the queues are kept in, one folder each; created when missing (its parent
    /// must exist). Anything in it that is not a queue's is refused, never overwritten.
    pub directory: PathBuf,
    /// The most bytes the queues take on disk together (default 1 GiB; 1 MiB–16 TiB): an
    /// append that would go past it is refused (the exporter's receiver answers `429`).
    #[serde(default = "DiskQueueConfig::default_max_bytes")]
    pub max_bytes: u64,
    /// The size a segment file is closed at (default 16 MiB; 64 KiB–1 GiB): the space of
    /// delivered entries comes back a whole segment at a time, when every entry in it is
    /// acknowledged.
    #[serde(default = "DiskQueueConfig::default_segment_bytes")]
    pub segment_bytes: u64,
    /// How long the disk thread gathers appends before it syncs them together (default `0s`:
    /// it syncs as soon as it has written what is waiting, so appends that arrive during a
    /// sync share the next one; up to 1 s). An append is acknowledged only after its sync.
    #[serde(
        default = "DiskQueueConfig::default_commit_interval",
        with = "humantime_serde"
    )]
    pub commit_interval: Duration,
}

impl DiskQueueConfig {
    fn default_max_bytes() -> u64 {
        1 << 30
    }

    fn default_segment_bytes() -> u64 {
        16 << 20
    }

    fn default_commit_interval() -> Duration {
        Duration::ZERO
    }

    /// A config for the folder `directory`, every option at its default.
    pub fn at(directory: impl Into<PathBuf>) -> Self {
        Self {
            directory: directory.into(),
            max_bytes: Self::default_max_bytes(),
            segment_bytes: Self::default_segment_bytes(),
            commit_interval: Self::default_commit_interval(),
        }
    }

    /// Decodes and checks `config` (errors located at the option), without touching the
    /// file system beyond asking whether the folder's parent exists.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if !(MIN_BYTES..=MAX_BYTES).contains(&decoded.max_bytes) {
            return Err(config.invalid(
                "max_bytes",
                format!("`max_bytes` must be between {MIN_BYTES} (1 MiB) and {MAX_BYTES} (16 TiB)"),
            ));
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&decoded.segment_bytes) {
            return Err(config.invalid(
                "segment_bytes",
                format!(
                    "`segment_bytes` must be between {MIN_SEGMENT_BYTES} (64 KiB) and \
                     {MAX_SEGMENT_BYTES} (1 GiB)"
                ),
            ));
        }
        if decoded.segment_bytes > decoded.max_bytes {
            return Err(config.invalid(
                "segment_bytes",
                "`segment_bytes` must not be more than `max_bytes`",
            ));
        }
        if decoded.commit_interval > MAX_COMMIT_INTERVAL {
            return Err(config.invalid(
                "commit_interval",
                "`commit_interval` must be between 0s and 1s",
            ));
        }
        if decoded.directory.as_os_str().is_empty() {
            return Err(config.invalid("directory", "`directory` must name a folder"));
        }
        let parent = match decoded.directory.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !decoded.directory.is_dir() && !parent.is_dir() {
            return Err(config.invalid(
                "directory",
                format!(
                    "neither `{}` nor its parent `{}` exists; create one of them",
                    decoded.directory.display(),
                    parent.display()
                ),
            ));
        }
        Ok(decoded)
    }
}
