//! `config:` of `extension:wasm`: the module, the capabilities it provides, the value handed
//! to it at start, and its limits. Decoding checks the options alone; the module itself is
//! read, compiled and checked against them by [`crate::module`] (at validation too).

use std::path::PathBuf;

use otap_df_core::capability::CapabilityId;
use otap_df_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

/// The options of `extension:wasm`. See the crate README.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WasmConfig {
    /// The module: a `.wasm` binary, or a `.wat` text (read as text when the name ends in
    /// `.wat`). A relative path is read from the engine's working directory.
    pub module: PathBuf,
    /// The capabilities the module provides (each needs its exports, see the README):
    /// `bearer_token_authorizer`, `key_value_store`, `bearer_token_provider`.
    pub provides: Vec<String>,
    /// Handed to the guest's `otap_start` as JSON, once per instance; absent: `null`.
    #[serde(default)]
    pub config: serde_json::Value,
    /// The header that carries the credential an authorizer decides on, and the token a
    /// provider's consumers send.
    #[serde(default = "defaults::header")]
    pub header: String,
    /// The scheme before the credential (`Bearer`); empty for a bare credential.
    #[serde(default = "defaults::scheme")]
    pub scheme: String,
    /// What one instance may use.
    #[serde(default)]
    pub limits: Limits,
    /// Where compiled modules are kept across restarts, by the module's SHA-256 and the
    /// engine's build; `null` keeps them in memory only. Default: `$XDG_CACHE_HOME/otap-df/wasm`,
    /// else `$HOME/.cache/otap-df/wasm` (none without either). The folder must be writable by
    /// this user alone: what is in it runs as compiled code.
    #[serde(default = "defaults::compile_cache")]
    pub compile_cache: Option<PathBuf>,
}

/// `limits:` of `extension:wasm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fuel one call may burn (about one unit per WebAssembly instruction); a call that runs
    /// out traps, and the request is denied.
    #[serde(default = "defaults::fuel_per_call")]
    pub fuel_per_call: u64,
    /// Bytes of linear memory one instance may grow to; a guest that asks for more traps.
    #[serde(default = "defaults::max_memory_bytes")]
    pub max_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel_per_call: defaults::fuel_per_call(),
            max_memory_bytes: defaults::max_memory_bytes(),
        }
    }
}

mod defaults {
    use std::path::PathBuf;

    pub fn header() -> String {
        "authorization".to_owned()
    }

    pub fn scheme() -> String {
        "Bearer".to_owned()
    }

    /// Ten million instructions: a few milliseconds, hundreds of times what a token lookup
    /// needs.
    pub fn fuel_per_call() -> u64 {
        10_000_000
    }

    /// 16 MiB.
    pub fn max_memory_bytes() -> usize {
        16 << 20
    }

    pub fn compile_cache() -> Option<PathBuf> {
        let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(cache) => PathBuf::from(cache),
            None => {
                PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache")
            }
        };
        Some(base.join("otap-df").join("wasm"))
    }
}

/// The capabilities a module can provide, in the order the README documents them.
pub const PROVIDABLE: &[CapabilityId] = &[
    CapabilityId::BearerTokenAuthorizer,
    CapabilityId::KeyValueStore,
    CapabilityId::BearerTokenProvider,
];

/// The least `fuel_per_call`: below it no guest can do anything useful.
pub const MIN_FUEL_PER_CALL: u64 = 1_000;

/// The most `max_memory_bytes`: 4 GiB, all a 32-bit memory can address.
pub const MAX_MEMORY_BYTES: usize = 4 << 30;

impl WasmConfig {
    /// Decodes and checks the options (the module is not read).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded.capabilities(config)?;
        let Limits {
            fuel_per_call,
            max_memory_bytes,
        } = decoded.limits;
        if fuel_per_call < MIN_FUEL_PER_CALL {
            return Err(config.invalid(
                "limits.fuel_per_call",
                format!("`limits.fuel_per_call` must be at least {MIN_FUEL_PER_CALL}"),
            ));
        }
        if !(65_536..=MAX_MEMORY_BYTES).contains(&max_memory_bytes) {
            return Err(config.invalid(
                "limits.max_memory_bytes",
                "`limits.max_memory_bytes` must be between 65536 (one WebAssembly page) and \
                 4294967296 (4 GiB)",
            ));
        }
        if decoded.header.is_empty() {
            return Err(config.invalid("header", "`header` must name a header"));
        }
        Ok(decoded)
    }

    /// The capabilities `provides` names, each once and each one a module can provide.
    pub fn capabilities(
        &self,
        config: &ComponentConfig<'_>,
    ) -> Result<Vec<CapabilityId>, ConfigError> {
        let names: Vec<&str> = PROVIDABLE.iter().map(|c| c.name()).collect();
        if self.provides.is_empty() {
            return Err(config.invalid(
                "provides",
                format!(
                    "`provides` names no capability; a module can provide: {}",
                    names.join(", ")
                ),
            ));
        }
        let mut capabilities = Vec::with_capacity(self.provides.len());
        for (index, name) in self.provides.iter().enumerate() {
            let field = format!("provides[{index}]");
            let capability = CapabilityId::from_name(name)
                .filter(|c| PROVIDABLE.contains(c))
                .ok_or_else(|| {
                    config.invalid(
                        &field,
                        format!(
                            "`{name}` is not a capability a WebAssembly module can provide; \
                             one can provide: {}",
                            names.join(", ")
                        ),
                    )
                })?;
            if capabilities.contains(&capability) {
                return Err(config.invalid(&field, format!("`{name}` is named twice")));
            }
            capabilities.push(capability);
        }
        Ok(capabilities)
    }
}
