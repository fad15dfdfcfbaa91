//! `config:` of `extension:disk_kv`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use otap_df_core::capability::key_value;
use otap_df_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

/// The smallest `max_bytes`: 1 MiB.
pub const MIN_BYTES: u64 = 1 << 20;
/// The largest `max_bytes`: 1 TiB.
pub const MAX_BYTES: u64 = 1 << 40;

/// `config:` of `extension:disk_kv`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskKvConfig {
    /// The store's file, created when missing (its folder must exist). A file that is not a
    /// store of this kind is refused, never overwritten.
    pub path: PathBuf,
    /// The most bytes of keys and values the store holds (default 1 GiB; 1 MiB–1 TiB). A
    /// write that would go past it, once expired entries are dropped, is refused.
    #[serde(default = "DiskKvConfig::default_max_bytes")]
    pub max_bytes: u64,
    /// Time-to-live of entries written without one (default: none).
    #[serde(default, with = "humantime_serde")]
    pub default_ttl: Option<Duration>,
    /// How often expired entries are dropped from the file (default 1m; 1s–1d).
    #[serde(
        default = "DiskKvConfig::default_sweep_interval",
        with = "humantime_serde"
    )]
    pub sweep_interval: Duration,
}

impl DiskKvConfig {
    fn default_max_bytes() -> u64 {
        1 << 30
    }

    fn default_sweep_interval() -> Duration {
        Duration::from_secs(60)
    }

    /// A config for the file at `path`, every option at its default.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: Self::default_max_bytes(),
            default_ttl: None,
            sweep_interval: Self::default_sweep_interval(),
        }
    }

    /// Decodes and checks `config` (errors located at the option), without touching the
    /// file system beyond asking whether the file's folder exists.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if !(MIN_BYTES..=MAX_BYTES).contains(&decoded.max_bytes) {
            return Err(config.invalid(
                "max_bytes",
                format!("`max_bytes` must be between {MIN_BYTES} (1 MiB) and {MAX_BYTES} (1 TiB)"),
            ));
        }
        if let Some(reason) = decoded
            .default_ttl
            .and_then(|ttl| key_value::ttl_out_of_range("default_ttl", ttl))
        {
            return Err(config.invalid("default_ttl", format!("{reason}; omit it for no expiry")));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&decoded.sweep_interval)
        {
            return Err(config.invalid(
                "sweep_interval",
                "`sweep_interval` must be between 1s and 1d",
            ));
        }
        if decoded.path.as_os_str().is_empty() || decoded.path.file_name().is_none() {
            return Err(config.invalid("path", "`path` must name a file"));
        }
        let folder = folder_of(&decoded.path);
        if !folder.is_dir() {
            return Err(config.invalid(
                "path",
                format!(
                    "the folder `{}` of `path` does not exist; create it, or name a file in \
                     one that does",
                    folder.display()
                ),
            ));
        }
        Ok(decoded)
    }
}

/// The folder `path` is in (`.` for a bare file name).
pub(crate) fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
