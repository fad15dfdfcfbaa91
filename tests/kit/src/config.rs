//! A component's `config:` block from YAML text, decoded the way the engine decodes it, at the
//! path `config` (an error names a field as `config.size`): what each crate's tests of its
//! config struct need.
//!
//! ```
//! use otap_df_core::config::{ComponentConfig, ConfigError};
//!
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Options {
//!     size: u32,
//! }
//!
//! fn decode(config: &ComponentConfig<'_>) -> Result<Options, ConfigError> {
//!     config.decode()
//! }
//!
//! assert_eq!(otap_df_tests::config::decode("{ size: 3 }", decode).size, 3);
//! let error = otap_df_tests::config::try_decode("{ sise: 3 }", decode).unwrap_err();
//! assert!(error.contains("unknown field `sise`"), "{error}");
//! ```

use otap_df_core::config::{ComponentConfig, ConfigError, PositionIndex, YamlPath};

/// Decodes `yaml` as a `config:` block with `decode` (a config struct's own decoder, or
/// `|config| config.decode()`); the error rendered as the engine reports it.
///
/// # Panics
/// When `yaml` is not YAML: a test's text is fixed.
pub fn try_decode<T>(
    yaml: &str,
    decode: impl FnOnce(&ComponentConfig<'_>) -> Result<T, ConfigError>,
) -> Result<T, String> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml)
        .unwrap_or_else(|error| panic!("the test's config is not YAML ({error}):\n{yaml}"));
    let path = YamlPath::root().key("config");
    let positions = PositionIndex::default();
    decode(&ComponentConfig::new(&value, &path, &positions)).map_err(|error| error.to_string())
}

/// [`try_decode`] of a block the test holds valid.
///
/// # Panics
/// When `yaml` is not YAML or does not decode, with the error.
pub fn decode<T>(
    yaml: &str,
    decode: impl FnOnce(&ComponentConfig<'_>) -> Result<T, ConfigError>,
) -> T {
    try_decode(yaml, decode).unwrap_or_else(|error| panic!("invalid test config: {error}\n{yaml}"))
}
